"""The shell that wires ingest to the ledger: commit a cycle's events atomically, log them
from what was committed, and rebuild ingest state from the ledger after a restart."""

from __future__ import annotations

import logging

from ingest.breaker import BreakerRegistry
from ingest.logs import LOGGER, log_events
from ingest.settings import IngestSettings
from ingest.snapshot import PriceCache, Snapshot
from ledger.clock import Clock
from ledger.recorded import RecordedEvent
from ledger.store import EventStore


def record_snapshot(
    store: EventStore,
    snapshot: Snapshot,
    *,
    run_id: str | None = None,
    logger: logging.Logger = LOGGER,
) -> list[RecordedEvent]:
    """Append every event of a cycle in one transaction, then log the committed events."""
    key = f"snapshot/{run_id or '-'}/{snapshot.snapshot_id}"
    head_before = store.head()
    positions = [p for batch in store.append_many(
        snapshot.batches(), run_id=run_id, idempotency_key=key) for p in batch]
    if not positions:
        return []
    committed = list(store.read_all(positions[0], positions[-1]))
    if positions[0] > head_before:  # a replayed commit was logged the first time
        log_events(committed, logger)
    return committed


def restore_ingest_state(
    store: EventStore, settings: IngestSettings, clock: Clock
) -> tuple[BreakerRegistry, PriceCache]:
    """Rebuild breakers and last good prices from the ledger (after a restart)."""
    breakers = BreakerRegistry(settings.breaker, clock)
    cache = PriceCache()
    for recorded in store.read_all():
        breakers.apply(recorded.event)
        cache.apply(recorded.event, recorded.recorded_at)
    return breakers, cache
