"""A simulated market: seeded prices for any number of symbols, and seeded faults.

Everything is a function of the seed, the symbol and the simulated time, so the same run
gives the same prices and the same failures. Faults name ccxt's exception classes and raise
exactly the error such an exception becomes (``simulated_error``), so they are classified as
a live exchange's would be, without importing ccxt.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from ingest.market import OHLCV_COLUMNS, Balance, Ticker, utc_from_ms
from ingest.provider_errors import simulated_error
from ledger.clock import Clock
from ledger.errors import ProviderError
from ledger.market import round_to_step

if TYPE_CHECKING:
    import pandas as pd

PRICE_STEP = Decimal("0.00000001")


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class ErrorBurst:
    """Every call in ``window`` (for ``symbols``, or all when empty) raises ``error_class``."""

    window: Window
    error_class: str = "RequestTimeout"
    symbols: frozenset[str] = frozenset()


@dataclass
class SimulatedFaults:
    latency_ms: int = 0  # every call takes this long (plus up to half again, seeded)
    failure_rate: float = 0.0  # share of calls that fail at random
    failure_classes: tuple[str, ...] = ("RequestTimeout", "ExchangeNotAvailable")
    malformed_rate: float = 0.0  # share of calls that return a ticker with no price
    bursts: list[ErrorBurst] = field(default_factory=list)
    outages: list[Window] = field(default_factory=list)  # the whole source is down
    frozen: dict[str, Window] = field(default_factory=dict)  # price stops moving
    always_failing: frozenset[str] = frozenset()  # these symbols fail every call


class SimulatedSource:
    """A `Source` with seeded prices and seeded faults, in-process and fast.

    Prices are a random walk of one step per ``interval_s`` from ``start``: the first price
    asked for costs one step per interval since ``start``, so start the market when the run
    starts (a start months before the clock means millions of steps).
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int,
        clock: Clock,
        start: datetime,
        faults: SimulatedFaults | None = None,
        interval_s: float = 60.0,
        volatility: float = 0.002,
        balances: dict[str, Decimal] | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self.clock = clock
        self.start = start
        self.faults = faults or SimulatedFaults()
        self.interval_s = interval_s
        self.volatility = volatility
        self.balances = balances or {}
        self._faults = FaultInjector(name, seed=seed, clock=clock, faults=self.faults)
        self._walks: dict[str, list[Decimal]] = {}

    def price_at(self, symbol: str, moment: datetime) -> Decimal:
        """The simulated price of ``symbol`` at ``moment`` (a seeded random walk)."""
        frozen = self.faults.frozen.get(symbol)
        if frozen is not None and moment in frozen:
            moment = frozen.start
        step = max(0, int((moment - self.start).total_seconds() // self.interval_s))
        walk = self._walks.get(symbol)
        if walk is None:
            rng = random.Random(f"{self.seed}:{symbol}:start")
            walk = self._walks[symbol] = [Decimal(rng.randint(1_000, 100_000)) / 100]
        while len(walk) <= step:
            rng = random.Random(f"{self.seed}:{symbol}:{len(walk)}")
            change = Decimal(repr(round(rng.gauss(0.0, self.volatility), 6)))
            walk.append(round_to_step(walk[-1] * (1 + change), PRICE_STEP))
        return walk[step]

    async def fetch_ticker(self, symbol: str) -> Ticker:
        now = await self._enter(symbol, "ticker")
        price = self.price_at(symbol, now)
        spread = round_to_step(price * Decimal("0.0005"), PRICE_STEP)
        return Ticker(
            symbol=symbol, last=price, bid=price - spread, ask=price + spread, timestamp=now
        )

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        now = await self._enter(symbol, "ohlcv")
        span = timedelta(seconds=self.interval_s)
        count = limit or 100
        first = now - span * count if since is None else utc_from_ms(since)
        times = [first + span * i for i in range(count)]
        rows = []
        for moment in times:
            opened, closed = self.price_at(symbol, moment), self.price_at(symbol, moment + span)
            rows.append((opened, max(opened, closed), min(opened, closed), closed, Decimal(0)))
        import pandas as pd  # (only here: a backtest never asks for candles this way)

        index = pd.DatetimeIndex(pd.to_datetime(times, utc=True), name="timestamp")
        return pd.DataFrame(rows, index=index, columns=list(OHLCV_COLUMNS))

    async def fetch_balance(self) -> Balance:
        await self._enter("", "balance")
        total = dict(sorted(self.balances.items()))
        return Balance(free=dict(total), used={k: Decimal(0) for k in total}, total=total)

    async def _enter(self, symbol: str, endpoint: str) -> datetime:
        return await self._faults.enter(symbol, endpoint)


class FaultInjector:
    """Seeded faults for any source: latency, outages, bursts, random failures, bad payloads.

    Whether call number n of (source, endpoint, symbol) fails is a function of the seed
    alone, so a rerun fails the same calls in the same way.
    """

    def __init__(self, name: str, *, seed: int, clock: Clock, faults: SimulatedFaults) -> None:
        self.name = name
        self.seed = seed
        self.clock = clock
        self.faults = faults
        self._calls: dict[str, int] = defaultdict(int)

    async def enter(self, symbol: str, endpoint: str) -> datetime:
        """Count the call, take the simulated latency, raise the fault due, if any."""
        self._calls[symbol] += 1
        rng = random.Random(f"{self.seed}:{self.name}:{endpoint}:{symbol}:{self._calls[symbol]}")
        faults = self.faults
        if faults.latency_ms:
            await self.clock.sleep(faults.latency_ms * (1 + rng.random() / 2) / 1000)
        now = self.clock.now()
        if any(now in window for window in faults.outages):
            raise self._fault(
                "ExchangeNotAvailable", f"{self.name} is down (simulated outage)", endpoint, symbol
            )
        for burst in faults.bursts:
            if now in burst.window and (not burst.symbols or symbol in burst.symbols):
                raise self._fault(
                    burst.error_class, f"{self.name}: simulated burst", endpoint, symbol
                )
        if symbol in faults.always_failing:
            raise self._fault(
                "RequestTimeout",
                f"{self.name}: {symbol} always times out (simulated)",
                endpoint,
                symbol,
            )
        if rng.random() < faults.failure_rate:
            error_class = faults.failure_classes[rng.randrange(len(faults.failure_classes))]
            raise self._fault(
                error_class, f"{self.name}: simulated {error_class}", endpoint, symbol
            )
        if rng.random() < faults.malformed_rate:
            raise ValueError(f"{self.name}: malformed payload (simulated)")
        return now

    def _fault(self, error_class: str, text: str, endpoint: str, symbol: str) -> ProviderError:
        return simulated_error(
            error_class, text, source=self.name, endpoint=endpoint, symbol=symbol
        )
