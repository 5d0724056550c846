"""``tally run --mode paper|live``: the same cycle loop on the real clock and real prices.

Paper: prices through ccxt, orders on the paper venue. Live: orders on the exchange through
``CcxtVenue``, allowed only with ``--live`` and keys from the environment
(``TALLY_API_KEY``, ``TALLY_API_SECRET``, optionally ``TALLY_API_PASSWORD``). Keys go to the
exchange object and nowhere else: not into the configuration, the events or the logs.

A paper or live run met the real world, so it is audited with ``replay``, not re-executed.
Each cycle commits on its own (no grouping): the real clock runs between cycles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingest.cache import CacheEntry, OhlcvCache, fetch_ohlcv_cached
from ingest.ccxt_source import CcxtSource
from ingest.settings import IngestSettings
from ingest.venues import CcxtVenue, MarketSpec, PaperVenue, Venue
from ledger import events
from ledger.clock import Clock, SystemClock
from ledger.errors import InputError, ProviderError
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.store import EventStore, StreamAppend, group_appends
from projections import portfolio
from projections.portfolio import PortfolioState
from tally.run import context
from tally.run.backtest import (
    RunSummary,
    finish_run,
    market_specs,
    single_quote,
    starting_cash,
)
from tally.run.cycle_loop import Collaborators, CycleLoop
from tally.run.lifecycle import (
    RunLease,
    StoppedRun,
    StopSignal,
    record_stop,
    recording_the_end,
)
from tally.run.settings import RunnerSettings, RunSettings
from tally.run.strategy import load_strategy

KEY_ENV = ("TALLY_API_KEY", "TALLY_API_SECRET")
PASSWORD_ENV = "TALLY_API_PASSWORD"
WAIT_SLICE_S = 0.25  # a wait between cycles checks for a stop and renews the lease this often


def exchange_from_environment(exchange_id: str, *, live: bool) -> Any:
    """An async ccxt exchange; with ``live``, its keys come from the environment."""
    import ccxt.async_support as ccxt_async

    factory = getattr(ccxt_async, exchange_id, None)
    if factory is None:
        raise InputError(
            f"ccxt has no exchange {exchange_id!r}",
            hint="set run.live.exchange to a ccxt id such as binance or kraken",
        )
    config: dict[str, Any] = {"enableRateLimit": True}
    if live:
        missing = [name for name in KEY_ENV if not os.environ.get(name)]
        if missing:
            raise InputError(
                f"live mode needs API keys in the environment: {missing} unset",
                hint="export TALLY_API_KEY and TALLY_API_SECRET (never put keys "
                "in the configuration file)",
            )
        config["apiKey"] = os.environ[KEY_ENV[0]]
        config["secret"] = os.environ[KEY_ENV[1]]
        if os.environ.get(PASSWORD_ENV):
            config["password"] = os.environ[PASSWORD_ENV]
    return factory(config)


def _venue(
    mode: str, settings: RunSettings, markets: dict[str, MarketSpec], quote: str, exchange: Any
) -> Venue:
    if mode != "paper":
        return CcxtVenue(exchange)
    return PaperVenue(
        name="paper", markets=markets, balances={quote: starting_cash(settings, quote)}
    )


def _live_data(
    exchange: str, symbols: list[str], started_at: str, warmup: list[CacheEntry]
) -> dict[str, Any]:
    """What RunStarted records about a live run's inputs."""
    return {
        "kind": "live",
        "exchange": exchange,
        "symbols": symbols,
        "started_at": started_at,
        "warmup": [
            {
                "name": Path(e.path).name,
                "symbol": e.symbol,
                "rows": e.rows,
                "sha256": e.sha256,
                "cached": not e.fetched,
            }
            for e in warmup
        ],
    }


async def _warm_up(
    source: CcxtSource, strategy: Any, settings: RunSettings, symbols: list[str], emit: Any
) -> list[CacheEntry]:
    """Recent candles through the parquet cache, shown to a strategy that has ``warm_up``
    (so it need not wait ``window`` cycles); a corrupt cache entry is recorded, refetched."""
    live = settings.live
    if live.warmup_candles == 0:
        return []
    cache = OhlcvCache(live.cache_dir)
    entries = []
    for symbol in symbols:
        try:
            frame, entry = await fetch_ohlcv_cached(
                source,
                cache,
                symbol,
                live.warmup_timeframe,
                limit=live.warmup_candles,
                emit=lambda stream, event: emit((stream, event)),
            )
        except ProviderError as error:  # no warm-up for this symbol: recorded, not fatal
            emit(
                (
                    f"symbol/{symbol}",
                    events.FetchFailed(
                        source=source.name,
                        endpoint="ohlcv",
                        symbol=symbol,
                        attempt=1,
                        error_class=error.error_class,
                        retryable=error.retryable,
                        message=error.message[:MESSAGE_LENGTH_MAX],
                        latency_ms=0,
                    ),
                )
            )
            continue
        entries.append(entry)
        warm = getattr(strategy, "warm_up", None)
        if callable(warm):
            warm(symbol, list(frame["close"]))
    return entries


def priced_nothing(summary: RunSummary) -> bool:
    """Whether a run that ran cycles had every mark fail (the exchange was never reached)."""
    counts = summary.counts
    return counts["cycles"] > 0 and counts["fresh"] + counts["stale"] == 0


async def _cycles(
    loop: CycleLoop,
    cycles: int,
    interval_s: float,
    progress: Callable[[int, int], None] | None,
    lease: RunLease,
    stop: StopSignal | None,
) -> tuple[int, Decimal]:
    """Run the cycles on the real clock; return (cycles done, equity at the start).

    A requested stop ends the run after the cycle in hand, or cuts a wait between cycles
    short; the lease is renewed after each cycle and during the waits."""
    books = loop.books
    # Cash only (a paper run) needs no prices; held positions are valued at the first
    # snapshot's marks.
    equity_start = books.equity({}) if not any(books.positions.values()) else None
    done = 0
    for cycle in range(cycles):
        with loop.store.unit_of_work():
            await loop.cycle(cycle, loop.clock.now())
        done = cycle + 1
        lease.beat(done)
        if equity_start is None:
            equity_start = books.equity(loop.marks)
        if progress is not None:
            progress(done, cycles)
        if done == cycles or (stop is not None and stop.requested):
            break
        waited = 0.0
        while waited < interval_s and not (stop is not None and stop.requested):
            step = min(WAIT_SLICE_S, interval_s - waited)
            await loop.clock.sleep(step)
            waited += step
            lease.beat(done)
        if stop is not None and stop.requested:
            break
    return done, books.equity(loop.marks) if equity_start is None else equity_start


async def run_live(
    store: EventStore,
    settings: RunSettings,
    ingest: IngestSettings,
    *,
    config: dict[str, Any],
    exchange: Any,
    mode: str,
    cycles: int,
    interval_s: float,
    clock: Clock | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: RunnerSettings | None = None,
    stop: StopSignal | None = None,
) -> RunSummary | StoppedRun:
    """Run ``cycles`` cycles ``interval_s`` apart on ``clock`` (the system clock).

    SIGINT/SIGTERM (``stop``) end it after the cycle in hand with ``RunStopped``."""
    clock = clock or SystemClock()
    store.clock = clock
    symbols = sorted(settings.live.symbols)
    quote = single_quote(
        symbols, "run.live.symbols", "list symbols of one quote asset in run.live.symbols"
    )
    source = CcxtSource(exchange, timeout_ms=ingest.fetch_timeout_ms)
    markets = market_specs(settings, symbols)
    venue = _venue(mode, settings, markets, quote, exchange)
    started_at = clock.now()
    strategy = load_strategy(settings.strategy.path, dict(settings.strategy.params))
    cache_events: list[tuple[str, events.Event]] = []
    warmup = await _warm_up(source, strategy, settings, symbols, cache_events.append)
    digest = context.config_hash(config)
    data = _live_data(str(exchange.id), symbols, started_at.isoformat(), warmup)
    run_id = context.run_id_for(digest, settings.seed, data)
    if warmup:
        OhlcvCache(settings.live.cache_dir).write_manifest(run_id, warmup)
    account = f"{settings.account}-{run_id[4:]}" if mode == "paper" else settings.account
    started = events.RunStarted(
        run_id=run_id,
        mode=mode,
        seed=settings.seed,
        config=config,
        config_hash=digest,
        code_version=context.code_version(),
        account=account,
        environment=context.environment(),
        data=data,
    )
    books = PortfolioState(account=account, quote=quote)
    opening: list[events.Event] = []
    if mode == "paper":
        opening.append(
            events.FundsDeposited(
                account=account, asset=quote, amount=settings.starting_cash[quote]
            )
        )
    else:  # the account's own history, from the ledger
        books = portfolio.rebuild(store, account=account, quote=quote)
    appends = [
        StreamAppend(f"run/{run_id}", [started], expected_version=0),
        *group_appends(cache_events),
    ]
    if opening:
        appends.append(StreamAppend(f"portfolio/{account}", opening))
    positions = store.append_many(appends, run_id=run_id, idempotency_key=f"run/{run_id}/start")
    first = positions[0][0]
    for event, position in zip(opening, positions[-1] if opening else [], strict=False):
        portfolio.apply(books, event, position)
    loop = CycleLoop(
        store=store,
        run_id=run_id,
        account=account,
        quote=quote,
        symbols=symbols,
        markets=markets,
        sources=[source],
        venue=venue,
        strategy=strategy,
        clock=clock,
        seed=settings.seed,
        ingest=ingest,
        validator=settings.validator,
        books=books,
        collaborators=Collaborators.fresh(ingest, clock),
        commit_cycles=1,
    )
    lease = RunLease(store, run_id, runner or RunnerSettings(), cycles)
    lease.claim(0)
    try:
        with recording_the_end(store, lease):
            done, equity_start = await _cycles(loop, cycles, interval_s, progress, lease, stop)
            if done < cycles:
                assert stop is not None
                return record_stop(store, run_id, done, cycles, stop.reason)
            return finish_run(store, started, loop, first=first, equity_start=equity_start)
    finally:
        await source.close()
