"""The outside world -> events: sources, retries, breakers, fallback, snapshots.

The public names load on first use: ccxt and pandas cost ~0.7 s to import, and a command
such as `tally verify` that only reads the configuration must not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.breaker import BreakerRegistry, CircuitBreaker
    from ingest.ccxt_source import CcxtSource
    from ingest.feed import SequencedFeed
    from ingest.market import Balance, Ticker
    from ingest.settings import IngestSettings
    from ingest.simulated import ErrorBurst, SimulatedFaults, SimulatedSource, Window
    from ingest.snapshot import PriceCache, Snapshot, SnapshotTaker
    from ingest.sources import Source

_HOMES = {
    "BreakerRegistry": "ingest.breaker",
    "CircuitBreaker": "ingest.breaker",
    "CcxtSource": "ingest.ccxt_source",
    "SequencedFeed": "ingest.feed",
    "Balance": "ingest.market",
    "Ticker": "ingest.market",
    "IngestSettings": "ingest.settings",
    "ErrorBurst": "ingest.simulated",
    "SimulatedFaults": "ingest.simulated",
    "SimulatedSource": "ingest.simulated",
    "Window": "ingest.simulated",
    "PriceCache": "ingest.snapshot",
    "Snapshot": "ingest.snapshot",
    "SnapshotTaker": "ingest.snapshot",
    "Source": "ingest.sources",
}
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
