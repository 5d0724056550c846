"""The runs a ledger holds: each ``RunStarted`` with its ``RunFinished`` (if it finished)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger import events
from ledger.errors import InputError
from ledger.recorded import RecordedEvent
from projections.runner import fold

if TYPE_CHECKING:
    from ledger.store import EventStore


@dataclass(frozen=True)
class RunRecord:
    """A run's first and last records (``finished`` is None while it has not finished)."""

    started: RecordedEvent
    finished: RecordedEvent | None

    @property
    def start(self) -> events.RunStarted:
        event = self.started.event
        if not isinstance(event, events.RunStarted):  # pragma: no cover - the fold's doing
            raise TypeError("a run record starts with RunStarted")
        return event

    @property
    def finish(self) -> events.RunFinished | None:
        event = None if self.finished is None else self.finished.event
        return event if isinstance(event, events.RunFinished) else None


@dataclass
class Runs:
    """Runs by id, in the order they started."""

    started: dict[str, RecordedEvent] = field(default_factory=dict)
    finished: dict[str, RecordedEvent] = field(default_factory=dict)

    def records(self) -> list[RunRecord]:
        return [RunRecord(s, self.finished.get(run_id)) for run_id, s in self.started.items()]

    def get(self, run_id: str) -> RunRecord | None:
        started = self.started.get(run_id)
        return None if started is None else RunRecord(started, self.finished.get(run_id))


class RunsProjection:
    """``Runs`` folded from ``RunStarted`` and ``RunFinished``."""

    types = ("RunStarted", "RunFinished")

    def initial(self) -> Runs:
        return Runs()

    def apply(self, state: Runs, recorded: RecordedEvent) -> Runs:
        event = recorded.event
        if isinstance(event, events.RunStarted):
            state.started[event.run_id] = recorded
        elif isinstance(event, events.RunFinished):
            state.finished[event.run_id] = recorded
        return state


def list_runs(store: EventStore) -> Runs:
    """Every run in the ledger."""
    return fold(store, RunsProjection()).state


def finished_run(store: EventStore, run_id: str) -> RunRecord:
    """The run ``run_id``, which must have finished (there is nothing whole to show else)."""
    found = list_runs(store).get(run_id)
    if found is None:
        raise InputError(
            f"no run {run_id!r} in this ledger", hint="list runs with `tally runs`", run_id=run_id
        )
    if found.finished is None:
        raise InputError(
            f"run {run_id} never finished: there is nothing complete to compare",
            hint="record the run again into a fresh ledger",
            run_id=run_id,
        )
    return found
