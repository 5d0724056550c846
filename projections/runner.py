"""Fold any projection over the ledger: from its checkpoint, reading only the types it folds.

A projection is a pure fold (``initial`` and ``apply``) that names the event types it reads,
so the store filters in SQL and every row read is still hash-checked. One that can encode
its state names a checkpoint: a fold to the head saves it, and the next fold starts from it
and reads only the tail. A checkpoint made by another ``version`` of the fold is ignored
(the projection changed, so it rebuilds from zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ledger.recorded import RecordedEvent

if TYPE_CHECKING:
    from ledger.store import EventStore

S = TypeVar("S")


class Projection(Protocol[S]):
    """What the runner needs of a projection."""

    @property
    def types(self) -> tuple[str, ...]:
        """The event types ``apply`` reads (empty: every event)."""
        ...

    def initial(self) -> S:
        """The state before any event."""
        ...

    def apply(self, state: S, recorded: RecordedEvent) -> S:
        """Fold one event into ``state`` (no I/O, no clock) and return the state."""
        ...


class Checkpointed(Projection[S], Protocol[S]):
    """A projection whose state can be saved, so a restart folds only the tail."""

    checkpoint_name: str
    version: str  # changes whenever the fold changes: older checkpoints are then ignored

    def encode(self, state: S) -> bytes:
        """The state as bytes."""
        ...

    def decode(self, raw: bytes) -> S:
        """The state back from ``encode``'s bytes."""
        ...


@dataclass(frozen=True)
class Folded(Generic[S]):
    """A projection's state and the last position it reflects."""

    state: S
    position: int


def fold(
    store: EventStore,
    projection: Projection[S],
    *,
    to_position: int | None = None,
    where: Callable[[RecordedEvent], bool] | None = None,
    checkpoint: bool = True,
) -> Folded[S]:
    """Fold ``projection`` over the ledger up to ``to_position`` (the head when None).

    ``where`` keeps only some events (a run's own, say); a filtered fold never uses or saves
    a checkpoint, since the checkpoint holds the unfiltered state.
    """
    state, start = projection.initial(), 1
    saved_by = _checkpointed(projection) if checkpoint and where is None else None
    if saved_by is not None:
        saved = store.load_checkpoint(saved_by.checkpoint_name, saved_by.version)
        if saved is not None and (to_position is None or saved[0] <= to_position):
            state, start = saved_by.decode(saved[1]), saved[0] + 1
    apply = projection.apply
    found = store.query(types=projection.types, from_position=start, to_position=to_position)
    if where is None:
        for recorded in found:  # (the rebuild's hot loop: no filter to ask)
            state = apply(state, recorded)
    else:
        for recorded in found:
            if where(recorded):
                state = apply(state, recorded)
    head = store.head()
    last = head if to_position is None else min(to_position, head)
    if saved_by is not None and to_position is None and last >= start:
        store.save_checkpoint(
            saved_by.checkpoint_name, last, saved_by.version, saved_by.encode(state)
        )
    return Folded(state, max(last, start - 1))


def _checkpointed(projection: Projection[S]) -> Checkpointed[S] | None:
    if getattr(projection, "checkpoint_name", ""):
        return projection  # type: ignore[return-value]
    return None
