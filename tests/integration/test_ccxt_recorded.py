"""Every recorded ticker, OHLCV and balance response in ../shared/data/ccxt goes through
CcxtSource (real ccxt request building, signing and parsing) and comes out equal to ccxt's
recorded parsed result, as exact Decimals."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from ingest.ccxt_source import CcxtSource
from tests.conftest import SHARED_DATA, shared_data
from tests.support.recorded_exchange import fixture_cases, offline_exchange

EXCHANGES = ["binance", "bitfinex", "bitstamp", "coinbase", "kraken"]


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
        pytest.param(exchange, case, id=f"{exchange}-{case['description'][:40]}")
        for exchange in EXCHANGES
        for case in fixture_cases(folder, exchange, method)
    ]


def exact(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def run(exchange_id: str, case: dict[str, Any], call: Any) -> Any:
    async def go() -> Any:
        source = CcxtSource(offline_exchange(shared_data("ccxt"), exchange_id, case))
        try:
            return await call(source)
        finally:
            await source.close()

    return asyncio.run(go())


def split_params(args: list[Any], positional: int) -> tuple[list[Any], dict[str, Any]]:
    params = (
        args[positional] if len(args) > positional and isinstance(args[positional], dict) else {}
    )
    return list(args[:positional]) + [None] * (positional - len(args[:positional])), params


@pytest.mark.smoke
@pytest.mark.parametrize(("exchange_id", "case"), cases("fetchTicker"))
def test_recorded_tickers_parse_to_exact_decimals(exchange_id: str, case: dict[str, Any]) -> None:
    (symbol,), params = split_params(case["input"], 1)
    ticker = run(exchange_id, case, lambda s: s.fetch_ticker(symbol, params))
    parsed = case["parsedResponse"]
    assert ticker.symbol == parsed["symbol"]
    for field in ("last", "bid", "ask"):
        assert getattr(ticker, field) == exact(parsed[field]), field
        assert getattr(ticker, field) is None or isinstance(getattr(ticker, field), Decimal)
    assert int(ticker.timestamp.timestamp() * 1000) == parsed["timestamp"]


@pytest.mark.parametrize(("exchange_id", "case"), cases("fetchOHLCV"))
def test_recorded_candles_parse_to_exact_decimals(exchange_id: str, case: dict[str, Any]) -> None:
    (symbol, timeframe, since, limit), params = split_params(case["input"], 4)
    frame = run(exchange_id, case, lambda s: s.fetch_ohlcv(symbol, timeframe, since, limit, params))
    expected = case["parsedResponse"]
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert len(frame) == len(expected) > 0
    for (stamp, row), want in zip(frame.iterrows(), expected, strict=True):
        assert int(stamp.timestamp() * 1000) == want[0]
        assert [row[c] for c in frame.columns] == [exact(v) for v in want[1:6]]
        assert all(isinstance(row[c], Decimal) for c in frame.columns)


@pytest.mark.parametrize(("exchange_id", "case"), cases("fetchBalance"))
def test_recorded_balances_parse_to_exact_decimals(exchange_id: str, case: dict[str, Any]) -> None:
    _, params = split_params(case["input"], 0)
    balance = run(exchange_id, case, lambda s: s.fetch_balance(params))
    parsed = case["parsedResponse"]
    for part in ("free", "used", "total"):
        want = {k: exact(v) for k, v in (parsed.get(part) or {}).items() if v is not None}
        assert getattr(balance, part) == want, part
