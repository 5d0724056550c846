"""The outside world -> events: sources, retries, breakers, fallback, snapshots."""

from ingest.breaker import BreakerRegistry, CircuitBreaker
from ingest.ccxt_source import CcxtSource
from ingest.feed import SequencedFeed
from ingest.market import Balance, Ticker
from ingest.settings import IngestSettings
from ingest.simulated import ErrorBurst, SimulatedFaults, SimulatedSource, Window
from ingest.snapshot import PriceCache, Snapshot, SnapshotTaker
from ingest.sources import Source

__all__ = [
    "Balance",
    "BreakerRegistry",
    "CcxtSource",
    "CircuitBreaker",
    "ErrorBurst",
    "IngestSettings",
    "PriceCache",
    "SequencedFeed",
    "SimulatedFaults",
    "SimulatedSource",
    "Snapshot",
    "SnapshotTaker",
    "Source",
    "Ticker",
    "Window",
]
