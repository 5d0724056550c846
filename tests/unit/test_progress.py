"""Progress off a terminal: a plain line every few seconds with rate and ETA, never a
rate read off the first instant."""

from __future__ import annotations

import io

from tally.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_it_prints_a_line_every_few_seconds_with_rate_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = Progress("cycles", 1000, stream=out, clock=clock, line_every_s=5, terminal=False)
    bar.update(400)  # a resumed run: 400 done at once is no rate
    assert bar.rate() is None and out.getvalue() == ""
    for second in range(1, 11):
        clock.now += 1
        bar.update(400 + 50 * second)
    lines = out.getvalue().splitlines()
    assert lines == [
        "cycles: 650/1,000 (65.0%), 50/s, about 0:07 left",
        "cycles: 900/1,000 (90.0%), 50/s, about 0:02 left",
    ]
    bar.close()
    assert out.getvalue().splitlines()[-1] == "cycles: 900/1,000 (90.0%), 50/s, about 0:02 left"


def test_a_short_job_off_a_terminal_prints_nothing() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = Progress("verify", 10, stream=out, clock=clock, terminal=False)
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""


def test_on_a_terminal_rich_draws_the_bar_with_eta() -> None:
    out = io.StringIO()
    bar = Progress("cycles", 100, stream=out, terminal=True)
    bar.update(50)
    bar.close()
    text = out.getvalue()
    assert "cycles" in text and "50/100" in text and "ETA" in text
