"""Injected clocks: domain code asks a clock for the time and for sleeps, never the OS.

A simulated run uses ``SimulatedClock``: time moves only when the run says so (or sleeps),
so a backtest sleeps in zero wall time while still recording the delays it chose.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

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
    def now(self) -> datetime:
        """Return the current time, timezone-aware, UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; a simulated clock advances instead of waiting."""
        ...


class SystemClock:
    """The real clock, for live and paper runs."""

    def now(self) -> datetime:
        return EPOCH + timedelta(microseconds=time.time_ns() // 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """A clock that only moves when told to: deterministic, for backtests and tests."""

    def __init__(self, start: datetime, *, tick: timedelta = timedelta(0)) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        # Each now() call may advance by ``tick`` so that events get distinct times.
        self._tick = tick

    def now(self) -> datetime:
        current = self._now
        self._now += self._tick
        return current

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a clock never goes backwards")
        self._now += delta

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError("a clock never goes backwards")
        self._now = moment

    async def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))
        # Yield to the loop as a real sleep would, so concurrent tasks interleave the same way.
        await asyncio.sleep(0)
