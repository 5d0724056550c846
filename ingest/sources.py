"""The `Source` protocol: what every market-data source offers (all async)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from ingest.market import Balance, Ticker


@runtime_checkable
class Source(Protocol):
    name: str

    async def fetch_ticker(self, symbol: str) -> Ticker:
        """The latest price of ``symbol``."""
        ...

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Candles: a frame with a UTC ``timestamp`` index and Decimal columns
        ``open, high, low, close, volume``."""
        ...

    async def fetch_balance(self) -> Balance:
        """The account's balances per asset."""
        ...
