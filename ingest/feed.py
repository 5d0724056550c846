"""Sequenced feeds (trade ids, order-book update ids): duplicates dropped, gaps and late
arrivals recorded, in bounded memory.

A message whose sequence is missing may still arrive late: while it is within
``reorder_window_max`` of the newest sequence it counts as out of order when it comes. Only
once the feed has moved further on is it declared a gap, one ``FeedGapDetected`` per run of
missing sequences. A swapped pair is therefore one out-of-order arrival, not a gap as well.
Memory holds only the sequences still missing inside the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ledger import events

Emit = Callable[[str, events.Event], None]


@dataclass
class FeedCounters:
    accepted: int = 0
    duplicates: int = 0
    gaps: int = 0
    missing: int = 0
    out_of_order: int = 0


@dataclass
class SequencedFeed:
    feed: str
    reorder_window_max: int
    emit: Emit
    stream: str = ""
    counters: FeedCounters = field(default_factory=FeedCounters)
    high: int | None = None
    _pending: set[int] = field(default_factory=set)  # missing, still inside the window

    def __post_init__(self) -> None:
        self.stream = self.stream or f"feed/{self.feed}"

    def accept(self, sequence: int) -> bool:
        """Take one message; return True when it should be processed (not a duplicate)."""
        if self.high is None:
            self.high = sequence
        elif sequence > self.high:
            self._pending.update(range(self.high + 1, sequence))
            self.high = sequence
            self._declare_gaps(older_than=sequence - self.reorder_window_max)
        elif sequence in self._pending:
            self._pending.discard(sequence)
            self.counters.out_of_order += 1
            self.emit(
                self.stream,
                events.FeedOutOfOrderReceived(feed=self.feed, sequence=sequence, after=self.high),
            )
        else:
            reason = (
                "duplicate"
                if sequence > self.high - self.reorder_window_max
                else "older than the reorder window"
            )
            self.counters.duplicates += 1
            self.emit(
                self.stream,
                events.FeedDuplicateDropped(feed=self.feed, sequence=sequence, reason=reason),
            )
            return False
        self.counters.accepted += 1
        return True

    def close(self) -> None:
        """End of the feed: whatever is still missing is a gap."""
        if self.high is not None:
            self._declare_gaps(older_than=self.high + 1)

    def _declare_gaps(self, *, older_than: int) -> None:
        due = sorted(s for s in self._pending if s < older_than)
        if not due:
            return
        # A run of missing sequences is one gap: declare it whole, even the part of it that
        # is not yet past the window (the window's edge moves one message at a time).
        while due[-1] + 1 in self._pending and due[-1] + 1 not in due:
            due.append(due[-1] + 1)
        self._pending.difference_update(due)
        start = previous = due[0]
        for sequence in [*due[1:], None]:
            if sequence is not None and sequence == previous + 1:
                previous = sequence
                continue
            count = previous - start + 1
            self.counters.gaps += 1
            self.counters.missing += count
            self.emit(
                self.stream,
                events.FeedGapDetected(
                    feed=self.feed, expected=start, received=previous + 1, missing=count
                ),
            )
            if sequence is not None:
                start = previous = sequence
