"""CcxtVenue through real ccxt code with recorded responses (../shared/data/ccxt)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from ingest.venues import CcxtVenue, OrderIntent
from tests.conftest import SHARED_DATA, shared_data
from tests.support.recorded_exchange import fixture_cases, offline_exchange


def cases(method: str) -> list[Any]:
    folder = SHARED_DATA / "ccxt"
    if not folder.exists():
        return [
            pytest.param(
                None,
                None,
                marks=pytest.mark.skip(reason=f"recorded ccxt responses not found at {folder}"),
            )
        ]
    return [
        pytest.param(ex, case, id=f"{ex}-{case['description'][:30]}")
        for ex in ("binance", "bitfinex", "bitstamp", "coinbase", "kraken")
        for case in fixture_cases(folder, ex, method)
    ]


def with_venue(exchange_id: str, case: dict[str, Any], call: Any) -> Any:
    async def go() -> Any:
        venue = CcxtVenue(offline_exchange(shared_data("ccxt"), exchange_id, case))
        try:
            return await call(venue)
        finally:
            await venue.exchange.close()

    return asyncio.run(go())


@pytest.mark.parametrize(("exchange_id", "case"), cases("createOrder"))
def test_create_order_carries_the_client_id_and_maps_the_answer(
    exchange_id: str, case: dict[str, Any]
) -> None:
    symbol, order_type, side, amount = case["input"][:4]
    intent = OrderIntent(
        account="main", symbol=symbol, side=side, qty=Decimal(str(amount)), order_type=order_type
    )
    order = with_venue(exchange_id, case, lambda v: v.submit(intent, "t-client-1"))
    assert order.client_order_id == "t-client-1"
    assert order.order_id == case["parsedResponse"]["id"]
    assert order.status == "open" and order.fill is None  # fills arrive as trades


@pytest.mark.parametrize(("exchange_id", "case"), cases("fetchMyTrades"))
def test_my_trades_are_exact_fills(exchange_id: str, case: dict[str, Any]) -> None:
    trades = with_venue(exchange_id, case, lambda v: v.fetch_my_trades(*case["input"][:3]))
    expected = case["parsedResponse"]
    assert len(trades) == len(expected) > 0
    for trade, want in zip(trades, expected, strict=True):
        assert (trade.symbol, trade.side, trade.order_id) == (
            want["symbol"],
            want["side"],
            want["order"],
        )
        assert trade.fill.qty == Decimal(str(want["amount"]))
        assert trade.fill.price == Decimal(str(want["price"]))
        assert trade.fill.fee == Decimal(str(want["fee"]["cost"]))
        assert trade.fill.fee_asset == want["fee"]["currency"]
