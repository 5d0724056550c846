"""Cycles over simulated sources: the four seed scenarios, breakers, and property tests."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.breaker import CLOSED, HALF_OPEN, OPEN, BreakerRegistry
from ingest.logs import log_line
from ingest.retry import backoff_ms
from ingest.settings import BreakerSettings, IngestSettings, RetrySettings
from ingest.simulated import ErrorBurst, SimulatedFaults, SimulatedSource, Window
from ingest.snapshot import LazyRandom, Snapshot, SnapshotTaker
from ledger import events
from ledger.clock import SimulatedClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = IngestSettings()


def window(start_s: float, end_s: float) -> Window:
    return Window(T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s))


def taker(
    clock: SimulatedClock,
    *faults: SimulatedFaults,
    settings: IngestSettings = SETTINGS,
    seed: int = 7,
    catalog: int = events.CATALOG,
) -> SnapshotTaker:
    sources = [
        SimulatedSource(f"s{i}", seed=seed + i, clock=clock, start=T0, faults=f)
        for i, f in enumerate(faults)
    ]
    return SnapshotTaker(sources, settings=settings, clock=clock, seed=seed, catalog=catalog)


def cycle(t: SnapshotTaker, symbols: list[str], number: int = 0) -> Snapshot:
    return asyncio.run(t.take(symbols, number))


def types(snapshot: Snapshot, symbol: str) -> list[str]:
    return [type(e).__name__ for s, e in snapshot.events if s == f"symbol/{symbol}"]


def test_a_transient_error_then_success_is_fresh() -> None:
    clock = SimulatedClock(T0)
    faults = SimulatedFaults(bursts=[ErrorBurst(window(0, 0.05), "RequestTimeout")])
    snapshot = cycle(taker(clock, faults), ["BTC/USD"])
    assert snapshot.status == {"BTC/USD": "fresh"}
    assert types(snapshot, "BTC/USD") == ["FetchFailed", "RetryScheduled", "FetchSucceeded"]
    assert [e.attempt for s, e in snapshot.events if isinstance(e, events.FetchSucceeded)] == [2]
    assert clock.now() > T0  # the cycle took its backoff, in simulated time


def test_a_run_of_catalog_1_announces_every_attempt() -> None:
    """Runs recorded before catalog 2 re-execute in their own shape: the same events, with
    a FetchAttempted before each outcome, at the same simulated times."""
    faults = SimulatedFaults(bursts=[ErrorBurst(window(0, 0.05), "RequestTimeout")])
    clocks = SimulatedClock(T0), SimulatedClock(T0)
    shapes = []
    for clock, catalog in zip(clocks, (2, 1), strict=True):
        shapes.append(cycle(taker(clock, faults, catalog=catalog), ["BTC/USD"]))
    compact, announced = shapes
    assert types(announced, "BTC/USD") == [
        "FetchAttempted",
        "FetchFailed",
        "RetryScheduled",
        "FetchAttempted",
        "FetchSucceeded",
    ]
    assert [e for _, e in announced.events if not isinstance(e, events.FetchAttempted)] == [
        e for _, e in compact.events
    ]
    assert clocks[0].now() == clocks[1].now()


def test_a_persistent_outage_falls_back_to_the_last_good_price_marked_stale() -> None:
    clock = SimulatedClock(T0)
    t = taker(clock, SimulatedFaults(outages=[window(60, 10_000)]))
    first = cycle(t, ["BTC/USD"], 0)
    clock.advance(timedelta(seconds=60))
    second = cycle(t, ["BTC/USD"], 1)
    assert second.status == {"BTC/USD": "stale"}
    assert second.marks["BTC/USD"] == first.marks["BTC/USD"]
    stale = [e for _, e in second.events if isinstance(e, events.StalePriceUsed)]
    assert len(stale) == 1 and stale[0].age_s >= 60 and "ExchangeNotAvailable" in stale[0].reason


def test_total_failure_without_a_cached_price_skips_the_symbol() -> None:
    clock = SimulatedClock(T0)
    snapshot = cycle(
        taker(
            clock,
            SimulatedFaults(always_failing=frozenset({"BTC/USD"})),
            SimulatedFaults(always_failing=frozenset({"BTC/USD"})),
        ),
        ["BTC/USD"],
    )
    assert snapshot.status == {"BTC/USD": "failed"} and snapshot.marks == {}
    assert "SourceFailedOver" in types(snapshot, "BTC/USD")
    assert types(snapshot, "BTC/USD")[-1] == "SymbolSkipped"


@pytest.mark.smoke
def test_all_scenarios_in_one_cycle_seal_one_snapshot() -> None:
    clock = SimulatedClock(T0)
    faults = SimulatedFaults(
        bursts=[ErrorBurst(window(60, 60.05), "RequestTimeout", frozenset({"AAA/USD"}))],
        outages=[],
        always_failing=frozenset({"ZZZ/USD"}),
    )
    t = taker(clock, faults)
    cycle(t, ["AAA/USD", "BBB/USD"], 0)  # prices to fall back on, except for ZZZ
    clock.advance(timedelta(seconds=60))
    t.sources[0].faults.bursts.append(  # type: ignore[attr-defined]
        ErrorBurst(window(60, 10_000), "ExchangeNotAvailable", frozenset({"BBB/USD"}))
    )
    snapshot = cycle(t, ["AAA/USD", "BBB/USD", "CCC/USD", "ZZZ/USD"], 1)
    assert snapshot.status == {
        "AAA/USD": "fresh",
        "BBB/USD": "stale",
        "CCC/USD": "fresh",
        "ZZZ/USD": "failed",
    }
    sealed = [e for _, e in snapshot.events if isinstance(e, events.SnapshotSealed)]
    assert len(sealed) == 1 and (sealed[0].fresh, sealed[0].stale, sealed[0].failed) == (2, 1, 1)
    assert sealed[0].marks == snapshot.marks and "ZZZ/USD" not in sealed[0].marks
    assert snapshot.events[-1][1] is sealed[0]  # sealed last: every mark of the cycle is in it


def test_fresh_data_after_a_stale_spell_is_a_recovery() -> None:
    clock = SimulatedClock(T0)
    t = taker(clock, SimulatedFaults(outages=[window(60, 120)]))
    for number in range(3):
        last = cycle(t, ["BTC/USD"], number)
        clock.advance(timedelta(seconds=60))
    recovered = [e for _, e in last.events if isinstance(e, events.DataRecovered)]
    assert len(recovered) == 1 and recovered[0].stale_s >= 60


def test_a_stale_price_older_than_the_limit_is_refused() -> None:
    clock = SimulatedClock(T0)
    settings = IngestSettings(stale_age_s_max=30)
    t = taker(clock, SimulatedFaults(outages=[window(60, 10_000)]), settings=settings)
    cycle(t, ["BTC/USD"], 0)
    clock.advance(timedelta(seconds=60))
    snapshot = cycle(t, ["BTC/USD"], 1)
    assert snapshot.status == {"BTC/USD": "failed"}
    skipped = [e for _, e in snapshot.events if isinstance(e, events.SymbolSkipped)]
    assert "stale_age_s_max" in skipped[0].reason


def test_symbols_are_fetched_concurrently_so_a_cycle_costs_one_retry_budget() -> None:
    clock = SimulatedClock(T0)
    symbols = [f"S{i:03}/USD" for i in range(50)]
    t = taker(clock, SimulatedFaults(always_failing=frozenset(symbols[:10]), latency_ms=10))
    cycle(t, symbols)
    # One failing symbol takes ~0.3 s of backoff; fifty in a row would take ~3 s.
    assert timedelta(0) < clock.now() - T0 < timedelta(seconds=0.6)


@pytest.mark.smoke
def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetrySettings(backoff_ms_base=100, backoff_ms_cap=1000, backoff_jitter_ratio=0.2)
    rng = random.Random(3)
    for attempt, nominal in ((1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)):
        delay = backoff_ms(attempt, policy, rng)
        assert 0.8 * nominal <= delay <= 1.2 * nominal
    assert [backoff_ms(1, policy, random.Random(5)) for _ in range(2)] == [
        backoff_ms(1, policy, random.Random(5))
    ] * 2


# --- breakers ------------------------------------------------------------------------------

BREAKER = BreakerSettings(
    failures_consecutive_max=3,
    failure_rate_max=0.5,
    window_calls=10,
    calls_min=4,
    open_s=30,
    half_open_calls_max=1,
    successes_to_close=2,
)


def outcome(ok: bool, *, retryable: bool = True) -> events.Event:
    if ok:
        return events.FetchSucceeded(
            source="x", endpoint="ticker", symbol="S", attempt=1, latency_ms=1
        )
    return events.FetchFailed(
        source="x",
        endpoint="ticker",
        symbol="S",
        attempt=1,
        error_class="RequestTimeout",
        retryable=retryable,
        message="m",
    )


@pytest.mark.smoke
def test_breaker_opens_refuses_half_opens_and_closes() -> None:
    clock = SimulatedClock(T0)
    registry = BreakerRegistry(BREAKER, clock)
    breaker = registry.get("x", "ticker")
    log: list[events.Event] = []

    def emit(_stream: str, event: events.Event) -> None:
        log.append(event)

    for _ in range(3):
        assert breaker.allow("S", emit)
        breaker.record(outcome(False), "S", emit)
    assert breaker.state == OPEN
    opened = [e for e in log if isinstance(e, events.CircuitOpened)]
    assert len(opened) == 1 and opened[0].consecutive_failures == 3
    assert not breaker.allow("S", emit)  # refused without touching the source
    assert isinstance(log[-1], events.CallRejected)
    clock.advance(timedelta(seconds=30))
    assert breaker.allow("S", emit) and breaker.state == HALF_OPEN
    assert not breaker.allow("S", emit)  # only one trial call at a time
    breaker.record(outcome(True), "S", emit)
    assert breaker.allow("S", emit)
    breaker.record(outcome(True), "S", emit)
    assert breaker.state == CLOSED and isinstance(log[-1], events.CircuitClosed)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("call"), st.booleans()),  # a success or a retryable failure
            st.tuples(st.just("wait"), st.integers(0, 40)),  # seconds, then ask to call
            st.tuples(st.just("seal"), st.integers(0, 25)),  # folded successes at a seal
        ),
        max_size=40,
    )
)
# Opened by three failures, half-open after the wait: the seal's first two successes close
# it (a CircuitClosed in the middle of the seal's successes), the rest count closed.
@example(steps=[("call", 0), ("call", 0), ("call", 0), ("wait", 31), ("seal", 5), ("call", 0)])
def test_a_seals_successes_count_at_once_exactly_as_one_by_one(
    steps: list[tuple[str, int]],
) -> None:
    """Two breakers take the same history; at each seal one records the folded successes
    one ``FetchSucceeded`` at a time (as it used to), the other ``record_successes`` at once.
    Their states, and every event they emit, stay the same in every state."""
    clock = SimulatedClock(T0)
    one_by_one = BreakerRegistry(BREAKER, clock).get("x", "ticker")
    at_once = BreakerRegistry(BREAKER, clock).get("x", "ticker")
    logs: tuple[list[events.Event], list[events.Event]] = ([], [])
    emits = [lambda _s, e, log=log: log.append(e) for log in logs]
    for kind, value in steps:
        if kind == "wait":
            clock.advance(timedelta(seconds=value))
            for breaker, emit in zip((one_by_one, at_once), emits, strict=True):
                breaker.allow("S", emit)
        elif kind == "call":
            for breaker, emit in zip((one_by_one, at_once), emits, strict=True):
                breaker.record(outcome(bool(value)), "S", emit)
        else:
            symbols = [f"S{i:02d}" for i in range(value)]
            for symbol in symbols:
                success = events.FetchSucceeded(
                    source="x", endpoint="ticker", symbol=symbol, attempt=1, latency_ms=0
                )
                one_by_one.record(success, symbol, emits[0])
            at_once.record_successes(symbols, emits[1])
        assert at_once.snapshot() == one_by_one.snapshot()
        assert logs[1] == logs[0]


@pytest.mark.parametrize("state", [CLOSED, OPEN, HALF_OPEN])
def test_a_rebuild_counts_a_seals_successes_per_source(state: str) -> None:
    clock = SimulatedClock(T0)
    sealed = events.SnapshotSealed(
        snapshot_id="1",
        fresh=3,
        stale=0,
        failed=0,
        marks={},
        cycle=1,
        fetched={"A/B": "files", "C/D": "other", "E/F": "files"},
    )
    history: list[events.Event] = [outcome(False), outcome(True)]
    if state != CLOSED:
        until = T0 + timedelta(seconds=30)
        history.append(
            events.CircuitOpened(
                breaker="files:ticker",
                reason="test",
                consecutive_failures=1,
                window_calls=2,
                window_failures=1,
                open_until=until,
            )
        )
    if state == HALF_OPEN:
        history.append(events.CircuitHalfOpened(breaker="files:ticker", open_s=Decimal(30)))
    rebuilt, one_by_one = BreakerRegistry(BREAKER, clock), BreakerRegistry(BREAKER, clock)
    for event in history:
        rebuilt.apply(event)
        one_by_one.apply(event)
    rebuilt.apply(sealed)
    for success in events.sealed_fetches(sealed):
        one_by_one.get(success.source, success.endpoint).apply(success)
    assert [(n, b.snapshot()) for n, b in rebuilt] == [(n, b.snapshot()) for n, b in one_by_one]
    files = rebuilt.get("files", "ticker")
    assert files.state == state and files.counts.successes == 2
    assert files.trial_successes == (2 if state == HALF_OPEN else 0)


def test_failure_rate_opens_the_breaker_only_past_the_minimum_calls() -> None:
    breaker = BreakerRegistry(BREAKER, SimulatedClock(T0)).get("x", "ticker")
    sink: list[events.Event] = []
    for ok in (False, True, False, True, False):
        breaker.record(outcome(ok), "S", lambda _s, e: sink.append(e))
    assert breaker.state == OPEN  # 3 of 5 failed, at least 4 calls seen
    opened = next(e for e in sink if isinstance(e, events.CircuitOpened))
    assert "3 of the last 5" in opened.reason


def test_non_retryable_failures_do_not_trip_a_breaker() -> None:
    breaker = BreakerRegistry(BREAKER, SimulatedClock(T0)).get("x", "ticker")
    for _ in range(10):
        breaker.record(outcome(False, retryable=False), "S", lambda _s, _e: None)
    assert breaker.state == CLOSED


def test_breaker_guard_and_decorator() -> None:
    from ledger.errors import ProviderError

    clock = SimulatedClock(T0)
    breaker = BreakerRegistry(BREAKER, clock).get("x", "ticker")
    sink: list[events.Event] = []

    @breaker.protect(lambda _s, e: sink.append(e), source="x", endpoint="ticker")
    async def flaky() -> str:
        raise ProviderError("down", error_class="ExchangeNotAvailable", retryable=True)

    for _ in range(3):
        with pytest.raises(ProviderError, match="down"):
            asyncio.run(flaky())
    with pytest.raises(ProviderError, match="is open"):
        asyncio.run(flaky())
    assert [type(e).__name__ for e in sink][-2:] == ["CircuitOpened", "CallRejected"]


def replayed(snapshots: list[Snapshot], clock: SimulatedClock) -> BreakerRegistry:
    return BreakerRegistry(SETTINGS.breaker, clock).rebuild(
        e for snap in snapshots for _, e in snap.events
    )


faults_strategy = st.builds(
    SimulatedFaults,
    latency_ms=st.integers(0, 50),
    failure_rate=st.floats(0, 1),
    malformed_rate=st.floats(0, 0.5),
    outages=st.lists(
        st.tuples(st.integers(0, 200), st.integers(1, 200)).map(
            lambda p: window(p[0], p[0] + p[1])
        ),
        max_size=2,
    ),
    always_failing=st.frozensets(st.sampled_from(["A/USD", "B/USD", "C/USD"]), max_size=2),
)


@pytest.mark.slow
@settings(
    max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    primary=faults_strategy,
    backup=faults_strategy,
    cycles=st.integers(1, 5),
    seed=st.integers(0, 10),
)
def test_any_fault_plan_seals_every_cycle_and_replays_the_breakers(
    primary: SimulatedFaults, backup: SimulatedFaults, cycles: int, seed: int
) -> None:
    clock = SimulatedClock(T0)
    t = taker(clock, primary, backup, seed=seed)
    symbols = ["A/USD", "B/USD", "C/USD", "D/USD"]
    snapshots = []
    for number in range(cycles):
        snapshot = cycle(t, symbols, number)
        snapshots.append(snapshot)
        sealed = [e for _, e in snapshot.events if isinstance(e, events.SnapshotSealed)]
        assert len(sealed) == 1
        assert set(snapshot.status) == set(symbols)  # each exactly one of the three
        assert sealed[0].fresh + sealed[0].stale + sealed[0].failed == len(symbols)
        assert set(sealed[0].marks) == {s for s, v in snapshot.status.items() if v != "failed"}
        clock.advance(timedelta(seconds=45))
    rebuilt = replayed(snapshots, clock)
    assert {n: b.snapshot() for n, b in rebuilt} == {n: b.snapshot() for n, b in t.breakers}


def test_the_same_seed_gives_the_same_events() -> None:
    def run() -> list[tuple[str, events.Event]]:
        clock = SimulatedClock(T0)
        t = taker(
            clock,
            SimulatedFaults(failure_rate=0.4, latency_ms=20),
            SimulatedFaults(failure_rate=0.2),
        )
        out = []
        for number in range(3):
            out += cycle(t, ["A/USD", "B/USD", "C/USD"], number).events
            clock.advance(timedelta(seconds=60))
        return out

    assert run() == run()


@pytest.mark.smoke
def test_log_markers_come_from_events() -> None:
    cases = {
        "DATA_RETRY": events.RetryScheduled(
            source="x", endpoint="ticker", symbol="S", attempt=1, delay_ms=100
        ),
        "DATA_FAILURE": outcome(False),
        "STALE_PRICING_USED": events.StalePriceUsed(
            symbol="S", price=Decimal(1), as_of=T0, age_s=Decimal(5), reason="down"
        ),
        "DATA_SKIP": events.SymbolSkipped(symbol="S", reason="no price"),
        "DATA_RECOVERY": events.DataRecovered(
            symbol="S", source="x", stale_since=T0, stale_s=Decimal(60)
        ),
        "SNAPSHOT_9-x_PARTIAL": events.SnapshotSealed(
            snapshot_id="9-x", fresh=1, stale=1, failed=0
        ),
        "CIRCUIT_OPEN": events.CircuitOpened(
            breaker="x:ticker",
            reason="r",
            consecutive_failures=3,
            window_calls=3,
            window_failures=3,
            open_until=T0,
        ),
        "CIRCUIT_CLOSED": events.CircuitClosed(breaker="x:ticker", trial_successes=2),
    }
    for marker, event in cases.items():
        line = log_line(event, 7)
        assert line is not None and line[1].startswith(marker) and "position=7" in line[1]
    assert log_line(events.SnapshotSealed(snapshot_id="1", fresh=3, stale=0, failed=0), 7) is None
    assert log_line(outcome(False), 7)[0] == logging.WARNING  # type: ignore[index]


def test_simulated_candles_start_at_since_and_keep_the_contract() -> None:
    from ingest.contracts import check_ohlcv

    clock = SimulatedClock(T0 + timedelta(hours=2))
    source = SimulatedSource("sim", seed=5, clock=clock, start=T0, interval_s=300)
    since_ms = int((T0 + timedelta(minutes=30)).timestamp() * 1000)
    frame = asyncio.run(source.fetch_ohlcv("BTC/USD", "5m", since=since_ms, limit=12))
    assert len(frame) == 12 and frame.index[0] == T0 + timedelta(minutes=30)
    assert (frame.index[1] - frame.index[0]) == timedelta(minutes=5)
    assert frame["open"].iloc[0] == source.price_at("BTC/USD", T0 + timedelta(minutes=30))
    assert frame["close"].iloc[0] == frame["open"].iloc[1]  # each candle closes the last
    assert check_ohlcv(frame) == []


def test_a_lazy_rng_draws_exactly_what_a_seeded_one_draws() -> None:
    # It skips Random's own seeding at construction: every way to a draw must seed first.
    seed = "7:12:BTC/USDT:candles"
    for draw in (
        lambda r: [r.random() for _ in range(3)],
        lambda r: [r.randrange(1000) for _ in range(3)],
        lambda r: [r.gauss(0, 1), r.uniform(1, 2), r.choice("abcdef")],
        lambda r: r.getstate(),
    ):
        assert draw(LazyRandom(seed)) == draw(random.Random(seed))
    assert LazyRandom(seed).random() != LazyRandom(seed + "x").random()
