"""The portfolio rebuilt from a real ledger, on both backends."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from ledger import events
from ledger.clock import SimulatedClock
from ledger.errors import CacheCorruptionError
from ledger.store import EventStore
from projections import portfolio, reports

D = Decimal


def test_rebuild_to_any_position_from_the_ledger(store: EventStore) -> None:
    store.append(
        "portfolio/main",
        [
            events.FundsDeposited(account="main", asset="USDT", amount=D("1000")),
            events.TradeExecuted(
                account="main",
                symbol="ETH/USDT",
                side="buy",
                qty=D("2"),
                price=D("100"),
                order_id="o1",
                trade_id="t1",
            ),
            events.FeeCharged(account="main", trade_id="t1", asset="USDT", amount=D("0.20")),
        ],
        expected_version=0,
    )
    store.append(
        "portfolio/other",
        [
            events.FundsDeposited(account="other", asset="USDT", amount=D("5")),
        ],
        expected_version=0,
    )
    store.append(
        "symbol/ETH/USDT",
        [
            events.SnapshotSealed(
                snapshot_id="s", fresh=1, stale=0, failed=0, marks={"ETH/USDT": D("110")}
            ),
        ],
        expected_version=0,
    )
    state = portfolio.rebuild(store, account="main")
    assert state.cash["USDT"] == D("799.80") and state.positions["ETH/USDT"] == D(2)
    assert state.fees_paid == {"USDT": D("0.20")}
    assert state.equity({"ETH/USDT": D("110")}) == D("1019.80")
    assert state.position == 5
    early = portfolio.rebuild(store, account="main", to_position=1)
    assert early.cash == {"USDT": D("1000")} and not early.positions
    assert portfolio.rebuild(store, account="other").cash == {"USDT": D("5")}


def test_a_checkpointed_restart_folds_only_the_tail(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append(
        "p",
        [events.FundsDeposited(account="main", asset="USDT", amount=D("100"))],
        expected_version=0,
    )
    first = portfolio.rebuild(store)  # full, and saves a checkpoint at position 1
    store.append(
        "p",
        [events.FundsDeposited(account="main", asset="USDT", amount=D(i)) for i in range(1, 6)],
        expected_version=1,
    )
    folded: list[int] = []
    real_apply = portfolio.apply

    def counting(
        state: portfolio.PortfolioState, event: events.Event, position: int = 0
    ) -> portfolio.PortfolioState:
        folded.append(position)
        return real_apply(state, event, position)

    monkeypatch.setattr(portfolio, "apply", counting)
    second = portfolio.rebuild(store)
    assert folded == [2, 3, 4, 5, 6]  # only the tail
    assert second.cash["USDT"] == first.cash["USDT"] + 15
    assert second == portfolio.rebuild(store, checkpoint=False)  # same as a full replay
    folded.clear()
    monkeypatch.setattr(portfolio, "CODE_VERSION", "portfolio/2")  # the fold changed
    assert portfolio.rebuild(store) == second
    assert folded == [1, 2, 3, 4, 5, 6]  # rebuilt from zero


def test_a_checkpoint_of_another_chain_is_not_used(store: EventStore) -> None:
    store.append(
        "p",
        [events.FundsDeposited(account="main", asset="USDT", amount=D("100"))],
        expected_version=0,
    )
    portfolio.rebuild(store)
    with store.engine.begin() as conn:  # the checkpoint now claims another chain
        conn.execute(text("UPDATE checkpoints SET chain_hash = :h"), {"h": b"\x01" * 32})
    assert store.load_checkpoint("portfolio/main", portfolio.CODE_VERSION) is None
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE checkpoints SET state = :s"), {"s": b"{}"})
    with pytest.raises(CacheCorruptionError):
        store.load_checkpoint("portfolio/main", portfolio.CODE_VERSION)


def test_equity_per_time_step_is_valued_at_each_snapshot(
    store: EventStore, clock: SimulatedClock
) -> None:
    def sealed(cycle: int, price: str, stale: int = 0) -> events.SnapshotSealed:
        return events.SnapshotSealed(
            snapshot_id=str(cycle),
            fresh=1 - stale,
            stale=stale,
            failed=0,
            marks={"ETH/USDT": D(price)},
            cycle=cycle,
        )

    steps = [
        [events.FundsDeposited(account="main", asset="USDT", amount=D("1000")), sealed(0, "100")],
        [
            sealed(1, "110"),  # the cycle's trades are recorded after its snapshot
            events.TradeExecuted(
                account="main",
                symbol="ETH/USDT",
                side="buy",
                qty=D("2"),
                price=D("100"),
                order_id="o",
                trade_id="t",
            ),
            events.FeeCharged(account="main", trade_id="t", asset="USDT", amount=D("0.2")),
        ],
        [
            sealed(2, "90", stale=1),
            events.PortfolioReconciled(
                account="main", cycle=2, diff={}, adjustments={"USDT": D("-0.01")}
            ),
        ],
    ]
    for version, step in enumerate(steps):
        store.append("p", step, expected_version=[0, 2, 5][version])
        clock.advance(timedelta(minutes=5))
    series = reports.load_series(store, "main")
    frame = series.frame()
    assert list(frame.columns) == list(reports.COLUMNS)
    # Half-open candles: the row at a price time holds the money *before* it; a trade at
    # that instant counts from the next row. Step 0's row is skipped (nothing held before
    # the deposit); the reconciliation after the last prices gets one closing row.
    stamps = list(frame["timestamp"])
    assert stamps[1] - stamps[0] >= timedelta(minutes=5) and stamps[2] >= stamps[1]
    assert list(frame["equity"]) == [D("1000"), D("979.8"), D("979.79")]
    assert list(frame["positions_value"]) == [D(0), D("180"), D("180")]
    assert list(frame["fees"]) == [D(0), D("0.2"), D("0.2")]
    assert list(frame["cash"]) == [D("1000"), D("799.8"), D("799.79")]
    assert series.reconciled == [stamps[2]] and series.stale == [stamps[1]]
    csv = reports.to_csv(series).splitlines()
    assert csv[0] == "timestamp,equity,cash,positions_value,realized_pnl,fees"
    assert csv[2].endswith(",979.8,799.8,180,0,0.2")
