"""Injected clocks: domain code asks a clock for the time and for sleeps, never the OS.

A simulated run uses ``SimulatedClock``: time moves only when the run says so (or sleeps),
so a backtest sleeps in zero wall time while still recording the delays it chose.
"""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ledger.market import TIME_MAX, TIME_MIN

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Return ``moment`` as whole microseconds since the Unix epoch (UTC)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Tally only handles timezone-aware UTC times")
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Return the UTC datetime ``micros`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=micros)


class Clock(Protocol):
    """What domain code asks for the time and for sleeps."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; a simulated clock advances instead of waiting."""
        ...

    def settle(self, elapsed: timedelta) -> None:
        """Concurrent work that took ``elapsed`` has finished (moves a simulated clock)."""
        ...


class SystemClock:
    """The real clock, for live and paper runs."""

    def now(self) -> datetime:
        """The operating system's time, UTC, to the microsecond."""
        # (timedelta's arguments by position: its keywords cost a third of this call.)
        return EPOCH + timedelta(0, 0, time.time_ns() // 1000)

    async def sleep(self, seconds: float) -> None:
        """Wait for real."""
        import asyncio  # here: a command that never sleeps does not pay for asyncio

        await asyncio.sleep(seconds)

    def settle(self, elapsed: timedelta) -> None:
        """Real time has already passed."""


# Time a task has spent sleeping on a simulated clock. Each asyncio task runs in a copy of
# its parent's context, so concurrent tasks sleep independently, as they would in real time.
_task_offset: ContextVar[timedelta] = ContextVar("tally_simulated_offset", default=timedelta(0))


class SimulatedClock:
    """A clock that only moves when told to: deterministic, for backtests and tests.

    Sleeps take no wall time. A sleeping task sees its own time move on; concurrent tasks
    do not see each other's sleeps, so N tasks that each sleep 1 s take 1 s, not N s. When
    they are done, ``settle`` moves the clock on by the longest of them.
    """

    def __init__(self, start: datetime, *, tick: timedelta = timedelta(0)) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        # Each now() call may advance by ``tick`` so that events get distinct times.
        self._tick = tick

    def now(self) -> datetime:
        """The simulated time (this task's, sleeps included); moves on by ``tick``."""
        # (The common case adds nothing: no sleep in this task, no tick. A backtest reads
        # the clock about fifty times a cycle.)
        offset = _task_offset.get()
        current = self._now + offset if offset else self._now
        if self._tick:
            self._now += self._tick
        return current

    def advance(self, delta: timedelta) -> None:
        """Move the time on by ``delta`` (never back)."""
        if delta < timedelta(0):
            raise ValueError("a clock never goes backwards")
        self._now += delta

    def set(self, moment: datetime) -> None:
        """Move the time on to ``moment`` (never back)."""
        if moment < self._now:
            raise ValueError("a clock never goes backwards")
        self._now = moment

    async def sleep(self, seconds: float) -> None:
        """Sleep in zero wall time: only this task's view of the time moves on."""
        if seconds < 0:
            raise ValueError("cannot sleep a negative time")
        import asyncio

        _task_offset.set(_task_offset.get() + timedelta(seconds=seconds))
        # Yield to the loop as a real sleep would, so concurrent tasks interleave.
        await asyncio.sleep(0)

    def settle(self, elapsed: timedelta) -> None:
        """Concurrent work took ``elapsed``: move the shared time on by it."""
        self.advance(elapsed)


_EPOCH_MS = re.compile(r"\d{9,16}")


def parse_time(text: str) -> datetime:
    """Parse ISO-8601 (UTC when no zone is given) or epoch milliseconds into a UTC time
    within the ledger's times (``ledger.market.TIME_MIN`` .. ``TIME_MAX``).

    Raises ``ValueError`` saying why for anything else, including a number that looks like
    epoch seconds (ambiguous: refused, never read as 1970).
    """
    text = text.strip()
    try:
        if _EPOCH_MS.fullmatch(text):
            stamp = int(text)
            if stamp < _SECONDS_LOOK_MAX:
                raise ValueError(
                    f"{text} looks like epoch seconds; give epoch milliseconds or ISO-8601"
                )
            moment = datetime.fromtimestamp(stamp / 1000, tz=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (OverflowError, OSError) as e:  # past what datetime can hold at all
        raise ValueError(f"{text!r} is out of range") from e
    if not TIME_MIN <= moment < TIME_MAX:
        raise ValueError(f"{text} is outside {TIME_MIN.date()} .. {TIME_MAX.date()} (exclusive)")
    return moment


# Below this, a number reads as plausibly seconds (to year 5138) as milliseconds (to 1973).
_SECONDS_LOOK_MAX = 100_000_000_000
