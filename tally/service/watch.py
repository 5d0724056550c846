"""The service's live fold of the ledger, and the signal that wakes its subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

from projections.monitor import MONITOR_TYPES, MonitorState

if TYPE_CHECKING:
    from ledger.store import EventStore


class LedgerWatch:
    """``MonitorState`` kept current: each ``refresh`` folds only what was appended since."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state = MonitorState()
        self.head = 0  # the last position folded (the state's own position is its last event's)
        self._lock = threading.Lock()

    def refresh(self) -> MonitorState:
        with self._lock:
            head = self.store.head()
            if head > self.head:
                for recorded in self.store.query(
                    types=MONITOR_TYPES, from_position=self.head + 1, to_position=head
                ):
                    self.state.apply(recorded)
                self.head = head
            return self.state


def monitor_of(store: EventStore) -> MonitorState:
    """A one-off fold of the whole ledger (what `tally health` and `tally monitor` read)."""
    return LedgerWatch(store).refresh()


class HeadSignal:
    """Wakes every waiting subscription when this service appended (thread-safe notify)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._event = loop, asyncio.Event()

    def notify(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        fired, self._event = self._event, asyncio.Event()
        if fired is not None:
            fired.set()

    async def wait(self, timeout_s: float) -> None:
        """Until the next notify, or ``timeout_s`` (another process may have appended)."""
        event = self._event
        if event is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
