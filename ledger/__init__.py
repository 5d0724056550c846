"""Tally's core: an event-sourced, hash-chained ledger for crypto trading systems.

The core imports nothing of ours outside itself. ``open_store`` and the other store names
load on first use: the store needs SQLAlchemy, and code that only builds events must not
pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger import errors, events
    from ledger.recorded import RecordedEvent
    from ledger.store import EventStore, init_store, open_store

__all__ = ["EventStore", "RecordedEvent", "errors", "events", "init_store", "open_store"]
__version__ = "0.1.0"

_MODULES = ("errors", "events")
_HOMES = {
    "EventStore": "ledger.store",
    "init_store": "ledger.store",
    "open_store": "ledger.store",
    "RecordedEvent": "ledger.recorded",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"ledger.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
