"""A `Source` over a ccxt exchange (async): explicit timeout and rate limit, Decimal results,
and ccxt's errors translated at this one boundary."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pandas as pd

from ingest.market import OHLCV_COLUMNS, Balance, Ticker, to_decimal, utc_from_ms
from ingest.provider_errors import provider_error

T = TypeVar("T")
DEFAULT_TIMEOUT_MS = 10_000


class CcxtSource:
    """Wrap an async ccxt exchange *instance* (the caller may build and configure it)."""

    def __init__(
        self,
        exchange: Any,
        name: str | None = None,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        rate_limit: bool = True,
    ) -> None:
        self.exchange = exchange
        self.name = name or str(exchange.id)
        exchange.timeout = timeout_ms
        exchange.enableRateLimit = rate_limit
        exchange.enableLastResponseHeaders = True  # to read Retry-After
        self._markets_lock = asyncio.Lock()

    async def load_markets(self) -> None:
        """Load markets once (skipped when the exchange already holds them)."""
        async with self._markets_lock:
            if not self.exchange.markets:
                await self.call("markets", None, self.exchange.load_markets)

    async def fetch_ticker(self, symbol: str, params: dict[str, Any] | None = None) -> Ticker:
        await self.load_markets()
        raw = await self.call(
            "ticker", symbol, lambda: self.exchange.fetch_ticker(symbol, params or {})
        )
        if not isinstance(raw, dict) or all(raw.get(k) is None for k in ("last", "bid", "ask")):
            # ccxt parses a malformed body into an empty ticker rather than raising.
            raise provider_error(
                ValueError("the response held no price (malformed or empty body)"),
                source=self.name,
                endpoint="ticker",
                symbol=symbol,
            )
        return Ticker(
            symbol=str(raw.get("symbol") or symbol),
            last=to_decimal(raw.get("last")),
            bid=to_decimal(raw.get("bid")),
            ask=to_decimal(raw.get("ask")),
            timestamp=None if raw.get("timestamp") is None else utc_from_ms(raw["timestamp"]),
        )

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        await self.load_markets()
        rows = await self.call(
            "ohlcv",
            symbol,
            lambda: self.exchange.fetch_ohlcv(symbol, timeframe, since, limit, params or {}),
        )
        if not isinstance(rows, list):
            raise provider_error(
                ValueError("the response held no candles (malformed body)"),
                source=self.name,
                endpoint="ohlcv",
                symbol=symbol,
            )
        return ohlcv_frame(rows)

    async def fetch_balance(self, params: dict[str, Any] | None = None) -> Balance:
        await self.load_markets()
        raw = await self.call("balance", None, lambda: self.exchange.fetch_balance(params or {}))
        return Balance(
            **{
                part: {
                    asset: amount
                    for asset, value in sorted((raw.get(part) or {}).items())
                    if (amount := to_decimal(value)) is not None
                }
                for part in ("free", "used", "total")
            }
        )

    async def close(self) -> None:
        await self.exchange.close()

    async def call(self, endpoint: str, symbol: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call``; translate whatever it raises at this boundary, with Retry-After."""
        try:
            return await call()
        except Exception as e:
            raise provider_error(
                e,
                source=self.name,
                endpoint=endpoint,
                symbol=symbol,
                retry_after_s=self._retry_after(),
            ) from e

    def _retry_after(self) -> float | None:
        # Read right after the failing response, with no await in between: the headers are
        # that response's, even with other requests in flight on the same exchange.
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    return max(float(value), 0.0)
                except (TypeError, ValueError):
                    return None  # an HTTP-date: ignored, the backoff applies
        return None


def ohlcv_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Turn ccxt OHLCV rows into a frame: UTC index ``timestamp``, Decimal columns."""
    index = pd.DatetimeIndex(
        pd.to_datetime([int(row[0]) for row in rows], unit="ms", utc=True), name="timestamp"
    )
    data = {
        column: [to_decimal(row[i + 1]) for row in rows] for i, column in enumerate(OHLCV_COLUMNS)
    }
    return pd.DataFrame(data, index=index, columns=list(OHLCV_COLUMNS))
