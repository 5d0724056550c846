"""Progress of long work on stderr: a rich bar with rate and ETA on a terminal; elsewhere (a
log file, CI, a pipe) one plain line every few seconds, so a long job still says how far it
is without filling the log with redraws.

The rate is the mean since the start, shown once there is something to measure: the first
update of a job that resumes thousands of done cycles at once must not read "41,076,197/s".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LINE_EVERY_S = 5.0  # the non-terminal fallback: one line this often, at most
RATE_AFTER_S = 0.5  # no rate (nor ETA) before this much time has passed


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        line_every_s: float = LINE_EVERY_S,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._clock = clock
        self._every = line_every_s
        self._total = max(total, 1)
        self._started = clock()
        self._first: int | None = None  # done at the first update: the rate counts from it
        self._done = 0
        self._last_line = self._started
        self._lines = 0
        self._bar: Any = None
        self._task: Any = None
        is_terminal = self.stream.isatty() if terminal is None else terminal
        if is_terminal:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self._task = self._bar.add_task(self.label, total=self._total, rate="")
        self._bar.start()

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = max(value, 1)
        if self._bar is not None:
            self._bar.update(self._task, total=self._total)

    def rate(self) -> float | None:
        """Items a second since the first update, once there is enough time to tell."""
        elapsed = self._clock() - self._started
        if self._first is None or elapsed < RATE_AFTER_S:
            return None
        return (self._done - self._first) / elapsed

    def eta_s(self) -> float | None:
        rate = self.rate()
        if not rate:
            return None
        return max(self._total - self._done, 0) / rate

    def update(self, done: int) -> None:
        if self._first is None:
            self._first = done
            self._started = self._clock()
        self._done = done
        rate = self.rate()
        if self._bar is not None:
            shown = f"{rate:,.0f}/s" if rate is not None else ""
            self._bar.update(self._task, completed=done, rate=shown)
            return
        now = self._clock()
        if now - self._last_line >= self._every:
            self._last_line = now
            self._write_line()

    def _write_line(self) -> None:
        self._lines += 1
        share = min(self._done / self._total, 1.0)
        rate, eta = self.rate(), self.eta_s()
        text = f"{self.label}: {self._done:,}/{self._total:,} ({share:.1%})"
        if rate is not None:
            text += f", {rate:,.0f}/s"
        if eta is not None:
            text += f", about {_duration(eta)} left"
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._lines:  # a job long enough to have said something says where it ended
            self._write_line()


def _duration(seconds: float) -> str:
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
