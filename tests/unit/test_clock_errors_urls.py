from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ledger.clock import SimulatedClock, SystemClock, from_micros, to_micros
from ledger.errors import (
    EXIT_INTEGRITY,
    EXIT_USAGE,
    ChainIntegrityError,
    ConcurrencyError,
    ConfigError,
    SchemaOutdated,
)
from ledger.store.backend import parse_url

pytestmark = pytest.mark.smoke
START = datetime(2026, 1, 1, tzinfo=UTC)


def test_simulated_clock_moves_only_when_told() -> None:
    clock = SimulatedClock(START)
    assert clock.now() == clock.now() == START
    clock.advance(timedelta(seconds=5))
    assert clock.now() == START + timedelta(seconds=5)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        clock.set(START)


def test_concurrent_simulated_sleeps_overlap_and_take_no_wall_time() -> None:
    clock = SimulatedClock(START)

    async def job(seconds: float) -> timedelta:
        before = clock.now()
        await clock.sleep(seconds)
        await clock.sleep(seconds)
        return clock.now() - before

    async def cycle() -> list[timedelta]:
        return list(await asyncio.gather(job(1800), job(30)))

    elapsed = asyncio.run(cycle())
    assert elapsed == [timedelta(hours=1), timedelta(minutes=1)]
    assert clock.now() == START  # each task slept on its own time
    clock.settle(max(elapsed))
    assert clock.now() == START + timedelta(hours=1)  # one hour, not one hour and a minute


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        SimulatedClock(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        to_micros(datetime(2026, 1, 1))


def test_micros_round_trip() -> None:
    moment = datetime(2026, 11, 22, 6, 0, 0, 123456, tzinfo=UTC)
    assert from_micros(to_micros(moment)) == moment
    assert SystemClock().now().tzinfo is UTC


def test_errors_render_message_context_and_hint() -> None:
    error = ConcurrencyError("portfolio/main", 3, 5)
    text = error.render()
    assert "portfolio/main" in text and "expected" in text and "hint:" in text
    assert error.exit_code == EXIT_USAGE
    broken = ChainIntegrityError("broken", position=7, kind="row_missing")
    assert broken.exit_code == EXIT_INTEGRITY
    assert "position: 7" in broken.render()
    assert "tally init" in SchemaOutdated("x").hint


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("sqlite:///tally.db", "sqlite"),
        ("postgresql://u:p@127.0.0.1/db", "postgresql+psycopg"),
        ("postgres://u@127.0.0.1/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
    ],
)
def test_supported_urls_are_normalised(raw: str, driver: str) -> None:
    assert parse_url(raw).drivername == driver


@pytest.mark.parametrize(
    "raw", ["sqlit:///x.db", "mysql://u@h/db", "not a url", "sqlite://", "sqlite:///:memory:"]
)
def test_unusable_urls_are_config_errors(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(raw)
    assert "sqlite:///" in caught.value.hint
