"""The runs a ledger holds: each ``RunStarted`` with its ``RunFinished`` (if it finished)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger import events
from ledger.errors import InputError
from ledger.recorded import RecordedEvent
from projections.runner import fold

if TYPE_CHECKING:
    from ledger.store import EventStore
    from ledger.store.leases import Lease


@dataclass(frozen=True)
class RunRecord:
    """A run's first and last records (``finished`` is None while it has not finished);
    ``stopped`` is its last ``RunStopped`` since it last started or resumed."""

    started: RecordedEvent
    finished: RecordedEvent | None
    stopped: RecordedEvent | None = None

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

    @property
    def stop(self) -> events.RunStopped | None:
        event = None if self.stopped is None else self.stopped.event
        return event if isinstance(event, events.RunStopped) else None


@dataclass
class Runs:
    """Runs by id, in the order they started."""

    started: dict[str, RecordedEvent] = field(default_factory=dict)
    finished: dict[str, RecordedEvent] = field(default_factory=dict)
    stopped: dict[str, RecordedEvent] = field(default_factory=dict)

    def records(self) -> list[RunRecord]:
        return [self._record(run_id, s) for run_id, s in self.started.items()]

    def get(self, run_id: str) -> RunRecord | None:
        started = self.started.get(run_id)
        return None if started is None else self._record(run_id, started)

    def _record(self, run_id: str, started: RecordedEvent) -> RunRecord:
        return RunRecord(started, self.finished.get(run_id), self.stopped.get(run_id))


class RunsProjection:
    """``Runs`` folded from ``RunStarted``, ``RunStopped``, ``RunResumed``, ``RunFinished``."""

    types = ("RunStarted", "RunStopped", "RunResumed", "RunFinished")

    def initial(self) -> Runs:
        return Runs()

    def apply(self, state: Runs, recorded: RecordedEvent) -> Runs:
        event = recorded.event
        if isinstance(event, events.RunStarted):
            state.started[event.run_id] = recorded
        elif isinstance(event, events.RunFinished):
            state.finished[event.run_id] = recorded
        elif isinstance(event, events.RunStopped):
            state.stopped[event.run_id] = recorded
        elif isinstance(event, events.RunResumed):
            state.stopped.pop(event.run_id, None)
        return state


def list_runs(store: EventStore) -> Runs:
    """Every run in the ledger."""
    return fold(store, RunsProjection()).state


def run_stream(run_id: str) -> str:
    """The stream every run appends its ``RunStarted`` (at version 1), ``RunStopped``,
    ``RunResumed`` and ``RunFinished`` to."""
    return f"run/{run_id}"


def find_run(store: EventStore, run_id: str) -> RunRecord | None:
    """The run ``run_id`` (None when the ledger does not hold it), from its own stream: a
    few rows found by the stream index, however many runs the ledger holds (``list_runs``
    reads every run's records)."""
    runs, projection = Runs(), RunsProjection()
    for recorded in store.read(run_stream(run_id)):
        projection.apply(runs, recorded)
    return runs.get(run_id)


def run_span(store: EventStore, run_id: str) -> tuple[int, int | None]:
    """The positions of ``run_id``'s ``RunStarted`` and ``RunFinished`` (None while it has
    not finished): every event of the run lies between them. (1, None) for a run the ledger
    does not hold.

    A run's first event is its ``RunStarted`` (its fingerprint is taken from there on) and
    its last is ``RunFinished``, so a read of one run reads its own stretch of a ledger of
    many runs.
    """
    found = find_run(store, run_id)
    if found is None:
        return 1, None
    return found.started.position, None if found.finished is None else found.finished.position


def run_events(
    store: EventStore,
    types: Sequence[str],
    run_id: str | None,
    span: tuple[int, int | None] | None = None,
) -> Iterable[RecordedEvent]:
    """The ledger's events of ``types``; with ``run_id``, only that run's, read from its
    ``span`` (see ``run_span``, which finds it when not given)."""
    if run_id is None:
        return store.query(types=types)
    first, last = span or run_span(store, run_id)
    found = store.query(types=types, from_position=first, to_position=last)
    return (r for r in found if r.run_id == run_id)


def finished_run(store: EventStore, run_id: str) -> RunRecord:
    """The run ``run_id``, which must have finished (there is nothing whole to show else)."""
    found = find_run(store, run_id)
    if found is None:
        raise InputError(
            f"no run {run_id!r} in this ledger", hint="list runs with `tally runs`", run_id=run_id
        )
    if found.finished is None:
        raise InputError(
            f"run {run_id} has not finished: there is nothing complete to compare",
            hint="finish it first: run the command that started it again to resume it",
            run_id=run_id,
        )
    return found


def run_state(record: RunRecord, lease: Lease | None, now_us: int) -> RunState:
    """What a run is doing now, from its events and its lease.

    finished (``RunFinished``); running (a live lease); stopped or failed (its last start
    ended with ``RunStopped``: a signal, or an error); interrupted (none of these: its
    process died without a word, and its lease, if any, lapsed).
    """
    finish, stop = record.finish, record.stop
    if finish is not None:
        return RunState("finished", finish.cycles, finish.cycles)
    if lease is not None and lease.live(now_us):
        return RunState("running", lease.cycles_done, lease.cycles_planned)
    if stop is not None:
        state = "failed" if stop.reason == "error" else "stopped"
        return RunState(state, stop.cycles_done, stop.cycles_planned, stop.reason, stop.detail)
    if lease is not None:
        return RunState("interrupted", lease.cycles_done, lease.cycles_planned)
    return RunState("interrupted", None, None)


@dataclass(frozen=True)
class RunState:
    """A run's state, with cycles done of cycles planned where known."""

    state: str
    cycles_done: int | None
    cycles_planned: int | None
    reason: str = ""
    detail: str = ""
