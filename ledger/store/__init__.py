"""The event store: open an initialised ledger, or create and upgrade one."""

from __future__ import annotations

from ledger.clock import Clock
from ledger.recorded import RecordedEvent, StoreStats
from ledger.store.backend import open_backend
from ledger.store.append import StreamAppend, group_appends
from ledger.store.event_store import EventStore
from ledger.store.migrate import check_schema, upgrade

__all__ = [
    "EventStore",
    "RecordedEvent",
    "StoreStats",
    "StreamAppend",
    "group_appends",
    "init_store",
    "open_store",
]


def open_store(url: str, *, clock: Clock | None = None, durable: bool = True) -> EventStore:
    """Open the ledger at ``url``; never creates or changes a schema.

    Raises ``SchemaOutdated`` (hint: run ``tally init``) for an uninitialised or outdated
    database and ``StoreUnavailable`` when the database cannot be reached or read.
    """
    backend = open_backend(url, durable=durable)
    engine = backend.engine(create=False)
    try:
        with backend.guard(), engine.connect() as conn:
            check_schema(conn, backend.display_url)
    except BaseException:
        engine.dispose()
        raise
    return EventStore(backend, engine, clock=clock)


def init_store(url: str) -> tuple[str | None, str]:
    """Create the ledger at ``url`` or upgrade it to the latest schema; safe to repeat."""
    return upgrade(open_backend(url))
