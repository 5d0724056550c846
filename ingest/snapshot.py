"""One pricing snapshot per cycle: every symbol priced concurrently, none able to abort it.

Per symbol: primary source -> other sources (``SourceFailedOver``) -> last good price, marked
stale with its time, age and reason (``StalePriceUsed``), refused beyond ``stale_age_s_max``
-> ``SymbolSkipped``. ``DataRecovered`` when fresh data returns after a stale spell. The
snapshot is sealed with its fresh / stale / failed counts and the marks every later step of
the cycle must use.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple, Protocol, cast

from ingest.breaker import CLOSED, BreakerRegistry, CircuitBreaker
from ingest.market import Ticker
from ingest.retry import Failed, Fetched, call_with_retry, symbol_stream
from ingest.settings import IngestSettings
from ledger import events
from ledger.clock import Clock
from ledger.market import MESSAGE_LENGTH_MAX, step_rounder
from ledger.store import StreamAppend, group_appends

Status = Literal["fresh", "stale", "failed"]


class LazyRandom(random.Random):
    """A seeded RNG that seeds itself on first use: most fetches never retry, and seeding
    costs more than the fetch of a backtest. Same seed, same draws as ``Random(seed)``."""

    def __init__(self, seed: str) -> None:
        # Not Random.__init__: it seeds (with 0 here), which cost more than the fetch. What
        # it sets besides the seed is set here; every draw seeds first (random, getrandbits
        # and getstate are the ways in).
        self._pending: str | None = seed
        self.gauss_next = None

    def _seed_now(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.seed(pending)

    def random(self) -> float:
        self._seed_now()
        return super().random()

    def getrandbits(self, k: int) -> int:  # randrange, choice, ... go through here
        self._seed_now()
        return super().getrandbits(k)

    def getstate(self) -> tuple[Any, ...]:
        self._seed_now()
        return super().getstate()


class TickerSource(Protocol):
    name: str

    async def fetch_ticker(self, symbol: str) -> Ticker: ...


class LocalTickerSource(TickerSource, Protocol):
    """A source that can answer at once (``local``): a backtest's files without faults."""

    @property
    def local(self) -> bool: ...

    def ticker_now(self, symbol: str) -> Ticker: ...


NO_TIME = timedelta(0)


class LastGood(NamedTuple):  # (a tuple: made for every fresh mark of every cycle)
    price: Decimal
    as_of: datetime
    source: str


@dataclass
class PriceCache:
    """The last good price per symbol, and since when each symbol has been stale."""

    last: dict[str, LastGood] = field(default_factory=dict)
    stale_since: dict[str, datetime] = field(default_factory=dict)

    def apply(self, event: events.Event, recorded_at: datetime) -> None:
        """Rebuild from the ledger: sealed marks are good prices, stale spells are kept."""
        match event:
            case events.SnapshotSealed():
                for symbol, price in event.marks.items():
                    if symbol not in event.stale_symbols:
                        self.last[symbol] = LastGood(price, recorded_at, "ledger")
                        self.stale_since.pop(symbol, None)
            case events.StalePriceUsed():
                self.stale_since.setdefault(event.symbol, recorded_at)


class Mark(NamedTuple):  # (a tuple: made for every symbol of every cycle)
    symbol: str
    status: Status
    price: Decimal | None
    source: str | None
    reason: str = ""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    cycle: int
    marks: dict[str, Decimal]
    status: dict[str, Status]
    events: list[tuple[str, events.Event]]
    # The seal's counts (counted once, when sealed).
    fresh: int = 0
    stale: int = 0
    failed: int = 0

    def batches(self) -> list[StreamAppend]:
        """The cycle's events as appends, in the order they happened (one transaction)."""
        return group_appends(self.events)


class SnapshotTaker:
    """Price a list of symbols once per cycle through a chain of sources."""

    def __init__(
        self,
        sources: Sequence[TickerSource],
        *,
        settings: IngestSettings,
        clock: Clock,
        seed: int,
        breakers: BreakerRegistry | None = None,
        cache: PriceCache | None = None,
        price_steps: dict[str, Decimal] | None = None,
        stream: str = "snapshots/main",
        sequential: bool = False,
        catalog: int = events.CATALOG,
    ) -> None:
        if not sources:
            raise ValueError("a snapshot needs at least one source")
        self.sources = list(sources)
        self.settings = settings
        self.clock = clock
        self.seed = seed
        self.breakers = breakers or BreakerRegistry(settings.breaker, clock)
        self.cache = cache or PriceCache()
        self.price_steps = price_steps or {}
        self._rounders: dict[str, Callable[[Decimal], Decimal]] = {}  # per symbol, made once
        self.stream = stream
        # Sources that never suspend (local files, no injected latency or faults) are
        # priced one after another in this task: the same order and events as gather,
        # without a task per symbol.
        self.sequential = sequential
        # Catalog 1 records a FetchAttempted before every attempt's outcome.
        self.announce = catalog < 2
        # Catalog 3 records a local source's first-attempt successes in the seal. Only
        # local sources: their breakers never see a failure that counts, so when the
        # successes are counted (at the seal) cannot change a breaker's decisions.
        self.fold = catalog >= 3 and sequential

    async def take(self, symbols: Sequence[str], cycle: int) -> Snapshot:
        """Price every symbol, concurrently and bounded; always returns a sealed snapshot."""
        log: list[tuple[str, events.Event]] = []
        emit = _appender(log)
        gate = asyncio.Semaphore(self.settings.fetch_concurrency_max)
        started = self.clock.now()
        fetched: dict[str, str] = {}  # folded first-attempt successes: symbol -> source

        async def priced(symbol: str) -> tuple[Mark, timedelta]:
            begun = self.clock.now()
            try:
                mark = await self._price(symbol, cycle, emit, fetched)
            except Exception as e:  # one symbol never aborts the cycle
                mark = self._skipped(symbol, e, emit)
            return mark, self.clock.now() - begun

        async def one(symbol: str) -> tuple[Mark, timedelta]:
            async with gate:
                return await priced(symbol)

        ordered = sorted(dict.fromkeys(symbols))
        if not self.sequential:
            results = await asyncio.gather(*(one(s) for s in ordered))
        else:  # one at a time: the gate could never be full
            results = []
            quick = self._quick_source()
            for symbol in ordered:
                mark = None
                if quick is not None:
                    try:
                        mark = self._answered_at_once(*quick, symbol, emit, fetched)
                    except Exception as e:  # as priced() records it
                        mark = self._skipped(symbol, e, emit)
                # An answer at once takes no time (no latency, no retry); anything else goes
                # down the general path, which asks the source and records what happens.
                results.append((mark, NO_TIME) if mark is not None else await priced(symbol))
        self.clock.settle(max((elapsed for _, elapsed in results), default=NO_TIME))
        marks = {m.symbol: m.price for m, _ in results if m.price is not None}
        status = {m.symbol: m.status for m, _ in results}
        snapshot_id = f"{cycle}-{started.strftime('%Y%m%dT%H%M%S%fZ')}"
        stale = [s for s in ordered if status[s] == "stale"]
        failed = [s for s in ordered if status[s] == "failed"]
        sealed = events.SnapshotSealed(
            snapshot_id=snapshot_id,
            fresh=len(ordered) - len(stale) - len(failed),
            stale=len(stale),
            failed=len(failed),
            marks=marks,
            cycle=cycle,
            stale_symbols=stale,
            failed_symbols=failed,
            fetched=dict(sorted(fetched.items())),
        )
        emit(self.stream, sealed)
        # The folded successes count now, in the seal's order: as a rebuild applies them.
        for source, folded in events.fetched_by_source(sealed).items():
            self.breakers.get(source, "ticker").record_successes(folded, emit)
        return Snapshot(
            snapshot_id, cycle, marks, status, log, sealed.fresh, sealed.stale, sealed.failed
        )

    def _skipped(self, symbol: str, error: Exception, emit: _Emit) -> Mark:
        reason = f"unexpected {type(error).__name__}: {error}"[:MESSAGE_LENGTH_MAX]
        emit(symbol_stream(symbol), events.SymbolSkipped(symbol=symbol, reason=reason))
        return Mark(symbol, "failed", None, None, reason)

    async def _price(self, symbol: str, cycle: int, emit: _Emit, fetched: dict[str, str]) -> Mark:
        stream = symbol_stream(symbol)
        reasons: list[str] = []
        for index, source in enumerate(self.sources):
            rng = LazyRandom(f"{self.seed}:{cycle}:{symbol}:{source.name}")
            result = await call_with_retry(
                lambda source=source: source.fetch_ticker(symbol),  # type: ignore[misc]
                source=source.name,
                endpoint="ticker",
                symbol=symbol,
                policy=self.settings.retry,
                clock=self.clock,
                rng=rng,
                emit=emit,
                breaker=self.breakers.get(source.name, "ticker"),
                announce=self.announce,
                fold=self.fold and index == 0,  # one success folded per symbol
            )
            if isinstance(result, Fetched):
                if result.folded:
                    fetched[symbol] = source.name
                price = self._usable_price(result.value)
                if price is not None:
                    return self._fresh(symbol, price, source.name, emit)
                reasons.append(f"{source.name}: no usable price")
            elif isinstance(result, Failed):
                reasons.append(f"{source.name}: {result.error.error_class}")
            if index + 1 < len(self.sources):
                emit(
                    stream,
                    events.SourceFailedOver(
                        symbol=symbol,
                        from_source=source.name,
                        to_source=self.sources[index + 1].name,
                        reason=reasons[-1],
                    ),
                )
        return self._fallback(symbol, "; ".join(reasons), emit)

    def _quick_source(self) -> tuple[LocalTickerSource, CircuitBreaker] | None:
        """Catalog 3 with a local first source: that source and its ticker breaker, whose
        answers to a first attempt may be taken at once (``_answered_at_once``)."""
        source = self.sources[0]
        if not self.fold or not getattr(source, "local", False):
            return None
        return cast(LocalTickerSource, source), self.breakers.get(source.name, "ticker")

    def _answered_at_once(
        self,
        source: LocalTickerSource,
        breaker: CircuitBreaker,
        symbol: str,
        emit: _Emit,
        fetched: dict[str, str],
    ) -> Mark | None:
        """The local first source's answer to the first attempt, folded, as the general path
        would record it (the breaker closed lets the call through and records nothing; no
        announcement, no latency, no retry), without the retry machinery. None sends the
        symbol down the general path, which asks the source and records the failure, the
        fallback or the failover."""
        if breaker.state != CLOSED:
            return None
        try:
            ticker = source.ticker_now(symbol)
        except Exception:  # recorded by the general path
            return None
        price = self._usable_price(ticker)
        if price is None:
            return None
        fetched[symbol] = source.name
        return self._fresh(symbol, price, source.name, emit)

    def _usable_price(self, ticker: Ticker) -> Decimal | None:
        price = ticker.last
        if price is None and ticker.bid is not None and ticker.ask is not None:
            price = (ticker.bid + ticker.ask) / 2
        if price is None or price <= 0:
            return None
        rounder = self._rounders.get(ticker.symbol)
        if rounder is None:
            step = self.price_steps.get(ticker.symbol)
            if step is None:
                return price
            rounder = self._rounders[ticker.symbol] = step_rounder(step)
        return rounder(price)

    def _fresh(self, symbol: str, price: Decimal, source: str, emit: _Emit) -> Mark:
        now = self.clock.now()
        since = self.cache.stale_since.pop(symbol, None)
        if since is not None:
            emit(
                symbol_stream(symbol),
                events.DataRecovered(
                    symbol=symbol, source=source, stale_since=since, stale_s=_seconds(now - since)
                ),
            )
        self.cache.last[symbol] = LastGood(price, now, source)
        return Mark(symbol, "fresh", price, source)

    def _fallback(self, symbol: str, reason: str, emit: _Emit) -> Mark:
        now = self.clock.now()
        last = self.cache.last.get(symbol)
        if last is not None:
            age = now - last.as_of
            if age.total_seconds() <= self.settings.stale_age_s_max:
                self.cache.stale_since.setdefault(symbol, now)
                emit(
                    symbol_stream(symbol),
                    events.StalePriceUsed(
                        symbol=symbol,
                        price=last.price,
                        as_of=last.as_of,
                        age_s=_seconds(age),
                        reason=reason,
                    ),
                )
                return Mark(symbol, "stale", last.price, last.source, reason)
            reason = (
                f"{reason}; last good price is {_seconds(age)} s old, "
                f"over stale_age_s_max {self.settings.stale_age_s_max:g}"
            )
        else:
            reason = f"{reason}; no last good price"
        emit(symbol_stream(symbol), events.SymbolSkipped(symbol=symbol, reason=reason))
        return Mark(symbol, "failed", None, None, reason)


class _Emit(Protocol):
    def __call__(self, stream: str, event: events.Event) -> None: ...


def _appender(log: list[tuple[str, events.Event]]) -> _Emit:
    def emit(stream: str, event: events.Event) -> None:
        log.append((stream, event))

    return emit


def _seconds(delta: timedelta) -> Decimal:
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Decimal(micros) / Decimal(1_000_000)  # exact: 300 s is "300", 1.5 s is "1.5"
