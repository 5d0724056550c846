"""The portfolio rebuilt from a real ledger, on both backends."""

from __future__ import annotations

from decimal import Decimal

from ledger import events
from ledger.store import EventStore
from projections import portfolio

D = Decimal


def test_rebuild_to_any_position_from_the_ledger(store: EventStore) -> None:
    store.append("portfolio/main", [
        events.FundsDeposited(account="main", asset="USDT", amount=D("1000")),
        events.TradeExecuted(account="main", symbol="ETH/USDT", side="buy", qty=D("2"),
                             price=D("100"), order_id="o1", trade_id="t1"),
        events.FeeCharged(account="main", trade_id="t1", asset="USDT", amount=D("0.20")),
    ], expected_version=0)
    store.append("portfolio/other", [
        events.FundsDeposited(account="other", asset="USDT", amount=D("5")),
    ], expected_version=0)
    store.append("symbol/ETH/USDT", [
        events.SnapshotSealed(snapshot_id="s", fresh=1, stale=0, failed=0,
                              marks={"ETH/USDT": D("110")}),
    ], expected_version=0)
    state = portfolio.rebuild(store, account="main")
    assert state.cash["USDT"] == D("799.80") and state.positions["ETH/USDT"] == D(2)
    assert state.fees_paid == {"USDT": D("0.20")}
    assert state.equity({"ETH/USDT": D("110")}) == D("1019.80")
    assert state.position == 5
    early = portfolio.rebuild(store, account="main", to_position=1)
    assert early.cash == {"USDT": D("1000")} and not early.positions
    assert portfolio.rebuild(store, account="other").cash == {"USDT": D("5")}
