"""Tally: an event-sourced, hash-chained ledger for crypto trading systems."""

from ledger import errors, events
from ledger.store import EventStore, RecordedEvent, init_store, open_store

__all__ = ["EventStore", "RecordedEvent", "errors", "events", "init_store", "open_store"]
__version__ = "0.1.0"
