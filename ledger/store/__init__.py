"""The event store: open an initialised ledger, or create and upgrade one."""

from __future__ import annotations

from ledger.clock import Clock
from ledger.recorded import RecordedEvent, StoreStats
from ledger.store.append import Append, StreamAppend, group_appends
from ledger.store.backend import open_backend
from ledger.store.event_store import EventStore
from ledger.store.migrate import check_schema, upgrade
from ledger.store.settings import StoreSettings

__all__ = [
    "Append",
    "EventStore",
    "RecordedEvent",
    "StoreSettings",
    "StoreStats",
    "StreamAppend",
    "group_appends",
    "init_store",
    "open_store",
]


def open_store(
    url: str,
    *,
    clock: Clock | None = None,
    durable: bool | None = None,
    settings: StoreSettings | None = None,
) -> EventStore:
    """Open the ledger at ``url``; never creates or changes a schema.

    ``settings`` bounds every wait (locks, statements, the pool); ``durable`` overrides
    its ``durable`` (a scratch ledger needs no power-cut safety).

    Raises ``SchemaOutdated`` (hint: run ``tally init``) for an uninitialised or outdated
    database and ``StoreUnavailable`` when the database cannot be reached or read.
    """
    settings = settings or StoreSettings()
    if durable is not None:
        settings = settings.model_copy(update={"durable": durable})
    backend = open_backend(url, settings)
    engine = backend.engine(create=False)
    try:
        with backend.guard(), engine.connect() as conn:
            check_schema(conn, backend.display_url)
    except BaseException:
        engine.dispose()
        raise
    return EventStore(backend, engine, clock=clock)


def init_store(url: str, settings: StoreSettings | None = None) -> tuple[str | None, str]:
    """Create the ledger at ``url`` or upgrade it to the latest schema; safe to repeat."""
    return upgrade(open_backend(url, settings))
