"""Alert rules on the events' own clock: once per key, resolved when clear, cooled down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import events
from projections.alerting import AlertEngine, AlertRule

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def failed(error_class: str = "RequestTimeout") -> events.FetchFailed:
    return events.FetchFailed(
        source="s", endpoint="ticker", symbol="BTC/USDT", attempt=1,
        error_class=error_class, retryable=True, message="m",
    )  # fmt: skip


def sealed(stale: int = 0) -> events.SnapshotSealed:
    return events.SnapshotSealed(snapshot_id="x", fresh=4 - stale, stale=stale, failed=0)


def kinds(found: list[events.Event]) -> list[tuple[str, str, str]]:
    return [(type(e).__name__, e.rule, e.key) for e in found]  # type: ignore[attr-defined]


def test_an_error_count_fires_once_then_resolves_when_the_window_empties() -> None:
    engine = AlertEngine([AlertRule(name="burst", kind="error_count", threshold=3, window_s=60)])
    out: list[events.Event] = []
    for i in range(5):
        out += engine.observe(failed(), T0 + timedelta(seconds=i))
    assert kinds(out) == [("AlertRaised", "burst", "all")]  # once, though it kept holding
    assert kinds(engine.observe(sealed(), T0 + timedelta(seconds=70))) == [
        ("AlertResolved", "burst", "all")
    ]


def test_the_cooldown_holds_a_flapping_condition_back() -> None:
    rule = AlertRule(name="outage", kind="error_class", classes=["ExchangeNotAvailable"],
                     window_s=10, cooldown_s=300)  # fmt: skip
    engine = AlertEngine([rule])
    raised = engine.observe(failed("ExchangeNotAvailable"), T0)
    assert kinds(raised) == [("AlertRaised", "outage", "ExchangeNotAvailable")]
    assert engine.observe(failed("RequestTimeout"), T0 + timedelta(seconds=5)) == []  # other class
    assert kinds(engine.observe(sealed(), T0 + timedelta(seconds=20)))[0][0] == "AlertResolved"
    # Again within 5 minutes of the first raise: held back; after them: raised again.
    assert engine.observe(failed("ExchangeNotAvailable"), T0 + timedelta(seconds=60)) == []
    later = engine.observe(failed("ExchangeNotAvailable"), T0 + timedelta(seconds=400))
    assert kinds(later) == [("AlertRaised", "outage", "ExchangeNotAvailable")]


def test_breakers_stale_share_and_discarded_cycles_have_their_own_keys() -> None:
    engine = AlertEngine(
        [
            AlertRule(name="breaker", kind="breaker_open", severity="critical"),
            AlertRule(name="stale", kind="stale_share", threshold=0.5, snapshots=2),
            AlertRule(name="refused", kind="reconciliation_refused"),
            AlertRule(name="discarded", kind="cycle_discarded"),
        ]
    )
    opened = events.CircuitOpened(
        breaker="ccxt:ticker", reason="r", consecutive_failures=5, window_calls=5,
        window_failures=5, open_until=T0 + timedelta(seconds=30),
    )  # fmt: skip
    assert kinds(engine.observe(opened, T0)) == [("AlertRaised", "breaker", "ccxt:ticker")]
    assert engine.observe(sealed(stale=1), T0) == []  # 1 of 4
    found = engine.observe(sealed(stale=4), T0 + timedelta(seconds=1))  # 5 of 8
    assert ("AlertRaised", "stale", "all") in kinds(found)
    closed = events.CircuitClosed(breaker="ccxt:ticker", trial_successes=2)
    assert ("AlertResolved", "breaker", "ccxt:ticker") in kinds(engine.observe(closed, T0))
    refused = events.CycleDiscarded(
        account="a", cycle=7, reason="|equity diff| 5 is above the auto-reconcile limit 1", diff={}
    )
    assert set(kinds(engine.observe(refused, T0))) >= {
        ("AlertRaised", "refused", "cycle 7"), ("AlertRaised", "discarded", "cycle 7"),
    }  # fmt: skip


def test_an_engine_rebuilt_from_the_recorded_alerts_does_not_fire_twice() -> None:
    rule = AlertRule(name="burst", kind="error_count", threshold=1, window_s=60)
    raised = AlertEngine([rule]).observe(failed(), T0)
    assert len(raised) == 1
    rebuilt = AlertEngine([rule])  # a resumed run folds what the ledger holds
    assert rebuilt.observe(raised[0], T0) == []
    assert rebuilt.observe(failed(), T0 + timedelta(seconds=1)) == []  # it is firing already
    assert AlertEngine([rule]).observe(failed(), T0 + timedelta(seconds=1)) != []  # (unfolded)
