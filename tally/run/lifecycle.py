"""A run's life outside its events: stop signals, its lease and heartbeat, and what an
earlier start of it left in the ledger.

- ``StopSignal``: the first SIGINT or SIGTERM asks the loop to stop after the cycle in hand
  (it commits whole, then ``RunStopped`` is recorded); a second one stops at once by raising
  ``StopNow`` wherever the run is, so the open transaction rolls back whole.
- ``RunLease``: the claim that one process records this run now, renewed every
  ``runner.heartbeat_s`` from the loop (a row update, never an event).
- ``progress_of``: how many whole cycles of a run the ledger holds, and how it ended.
- ``record_stop`` and ``recording_the_end``: ``RunStopped`` for a signal, a second signal
  or an error, the same for a backtest and a paper or live run.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from ingest.logs import log_committed
from ledger import events
from ledger.errors import StoreUnavailable, TallyError
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.redact import redact
from ledger.store import EventStore
from ledger.store.leases import Lease
from projections.runs import run_stream

if TYPE_CHECKING:  # `tally runs` imports this module: not the run's settings models
    from tally.run.settings import RunnerSettings

OUTCOMES = ("ValidationPassed", "PortfolioReconciled", "CycleDiscarded")
SPOOL_FULL = "spool_full"  # a RunStopped reason: the ledger was out longer than the spool holds
# The shell's convention for signals (128 + signal); 75 is sysexits' EX_TEMPFAIL: the same
# command, run again once the ledger is back, carries on.
EXIT_STOPPED = {"SIGINT": 130, "SIGTERM": 143, SPOOL_FULL: 75}
EXIT_STOPPED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopNow(BaseException):
    """Raised by a second stop signal: leave at once (open transactions roll back whole)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StopSignal:
    """Whether the operator asked the run to stop, and with which signal."""

    reason: str = ""

    @property
    def requested(self) -> bool:
        return bool(self.reason)

    def request(self, reason: str) -> None:
        if self.reason:
            raise StopNow(reason)
        self.reason = reason


@contextmanager
def stop_on_signals(*, then_ignore: bool = False) -> Iterator[StopSignal]:
    """Catch SIGINT and SIGTERM for the duration of a run (main thread only).

    ``then_ignore``: afterwards ignore them instead of restoring the previous handlers,
    for a process that exits next (a signal that lands while it prints its summary would
    otherwise kill it with a traceback and a misleading exit code)."""
    stop = StopSignal()

    def handler(number: int, _frame: FrameType | None) -> None:
        stop.request(signal.Signals(number).name)

    previous = {number: signal.signal(number, handler) for number in EXIT_STOPPED_SIGNALS}
    try:
        yield stop
    finally:
        for number, before in previous.items():
            signal.signal(number, signal.SIG_IGN if then_ignore else before)


def process_gone(lease: Lease) -> bool:
    """Whether a lease's process is known to be dead: it ran on this host and its pid is
    gone. (A pid reused by another process keeps the lease until its expiry: safe side.)"""
    if lease.host != socket.gethostname():
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _now_us() -> int:
    # The wall clock, on purpose: a lease is about the process, never part of an event.
    return time.time_ns() // 1000


@dataclass
class RunLease:
    """This process's claim on a run, renewed at most every ``heartbeat_s``."""

    store: EventStore
    run_id: str
    settings: RunnerSettings
    cycles_planned: int
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    done: int = 0
    _beaten: float = 0.0

    def claim(self, done: int = 0) -> None:
        """Take the run; ``RunBusy`` (with the holder's pid and host) if another runs it."""
        now = _now_us()
        self.done = done
        self.store.leases.claim(
            Lease(
                self.run_id,
                self.owner,
                os.getpid(),
                socket.gethostname(),
                "running",
                now,
                now + int(self.settings.heartbeat_expiry_s * 1e6),
                done,
                self.cycles_planned,
            ),
            now,
            lapsed=process_gone,
        )
        self._beaten = time.monotonic()

    def beat(self, done: int, *, force: bool = False) -> None:
        """Note ``done`` cycles (never fewer than noted: a resumed run replays from 0) and
        renew the lease if ``heartbeat_s`` has passed since the last renewal."""
        self.done = max(self.done, done)
        done = self.done
        if not force and time.monotonic() - self._beaten < self.settings.heartbeat_s:
            return
        now = _now_us()
        expires = now + int(self.settings.heartbeat_expiry_s * 1e6)
        try:
            self.store.leases.renew(self.run_id, self.owner, now, expires, done)
        except StoreUnavailable as error:
            if not error.transient:
                raise
            # The ledger is out for a moment: the run goes on (its cycles go to the spool),
            # and the renewal is tried again one heartbeat later, not at every wait slice.
        self._beaten = time.monotonic()

    def release(self) -> None:
        """Give the run up: it finished, stopped or failed (its events say which).

        Best effort: when the ledger is what failed, the claim lapses at its expiry."""
        with suppress(TallyError):
            self.store.leases.release(self.run_id, self.owner, _now_us(), self.done)


@dataclass(frozen=True)
class RunProgress:
    """What the ledger holds of a run: whole cycles committed and how its last start ended."""

    cycles_done: int
    stopped: events.RunStopped | None  # the last RunStopped after the last (re)start


def progress_of(
    store: EventStore, run_id: str, account: str, from_position: int = 1
) -> RunProgress:
    """Count the run's committed cycles (one outcome event each) and find its last stop;
    ``from_position``, the run's ``RunStarted``, skips the runs before it."""
    done = 0
    found = store.query(stream=f"portfolio/{account}", types=OUTCOMES, from_position=from_position)
    for recorded in found:
        if recorded.run_id == run_id:
            done = max(done, int(getattr(recorded.event, "cycle", -1)) + 1)
    stopped: events.RunStopped | None = None
    for recorded in store.read(run_stream(run_id)):
        event: Any = recorded.event
        if isinstance(event, events.RunStopped):
            stopped = event
        elif isinstance(event, events.RunResumed):
            stopped = None
    return RunProgress(done, stopped)


@dataclass(frozen=True)
class StoppedRun:
    """A run that stopped before its last cycle, whole and resumable."""

    run_id: str
    reason: str  # SIGINT, SIGTERM
    cycles_done: int
    cycles_planned: int
    last_position: int

    def as_dict(self) -> dict[str, Any]:
        return {"status": "stopped", **self.__dict__}

    def render(self) -> str:
        if self.reason == SPOOL_FULL:
            return "\n".join(
                [
                    f"run {self.run_id} stopped after {self.cycles_done:,} of "
                    f"{self.cycles_planned:,} cycles: the ledger was out longer than the "
                    "spool holds (runner.spool_limit_bytes)",
                    "  every cycle since the outage is safe in the spool, fsync'd",
                    "  run the same command again once the ledger answers: it drains the "
                    "spool first, then carries on",
                ]
            )
        return "\n".join(
            [
                f"run {self.run_id} stopped by {self.reason} after "
                f"{self.cycles_done:,} of {self.cycles_planned:,} cycles",
                f"  every committed cycle is whole; the ledger ends at position "
                f"{self.last_position:,}",
                "  run the same command again to resume it from there",
            ]
        )


def record_stop(
    store: EventStore, run_id: str, done: int, planned: int, reason: str, detail: str = ""
) -> StoppedRun:
    """Append ``RunStopped`` (best effort for a failure: the ledger may be what failed)."""
    stopped = events.RunStopped(
        run_id=run_id,
        cycles_done=done,
        cycles_planned=planned,
        reason=reason,
        detail=redact(detail)[:MESSAGE_LENGTH_MAX],
    )
    try:
        last = store.append(run_stream(run_id), [stopped], expected_version=None, run_id=run_id)[0]
    except TallyError:
        if reason != "error":
            raise
        last = 0  # not recorded: the run shows as interrupted, which is as true
    if last:
        log_committed([(stopped, last)])
    return StoppedRun(run_id, reason, done, planned, last)


@contextmanager
def recording_the_end(store: EventStore, lease: RunLease) -> Iterator[None]:
    """Run the block under ``lease`` and record how it ends when it does not end well:
    ``RunStopped`` for a second stop signal or an error (then re-raised). The lease is
    released however it ends."""
    run_id, planned = lease.run_id, lease.cycles_planned
    try:
        yield
    except StopNow as now:
        record_stop(
            store, run_id, lease.done, planned, now.reason, "stopped at once by a second signal"
        )
        raise
    except Exception as error:
        record_stop(store, run_id, lease.done, planned, "error", f"{type(error).__name__}: {error}")
        raise
    finally:
        lease.release()
