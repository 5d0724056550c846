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
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cache import CacheEntry, OhlcvCache, fetch_ohlcv_cached
from ingest.ccxt_source import CcxtSource
from ingest.logs import log_committed
from ingest.settings import IngestSettings
from ingest.venues import CcxtVenue, MarketSpec, PaperVenue, Venue
from ledger import events
from ledger.clock import Clock, SystemClock
from ledger.errors import InputError, ProviderError, StoreConnectionLost
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.redact import register_secret
from ledger.store import EventStore, StreamAppend, group_appends
from projections import portfolio
from projections.alerting import AlertEngine
from projections.portfolio import PortfolioState
from projections.runs import RunRecord, list_runs, run_stream
from tally.run import context
from tally.run.backtest import (
    RunSummary,
    alert_engine,
    finish_run,
    market_specs,
    notifier_for,
    record_resume,
    single_quote,
    starting_cash,
)
from tally.run.cycle_loop import Collaborators, CycleLoop
from tally.run.lifecycle import (
    SPOOL_FULL,
    RunLease,
    StoppedRun,
    StopSignal,
    progress_of,
    record_stop,
    recording_the_end,
)
from tally.run.settings import RunnerSettings, RunSettings
from tally.run.spool import LedgerLink, Spool, SpooledAppend, SpoolFull
from tally.run.strategy import load_strategy

if TYPE_CHECKING:
    from tally.reload import ConfigReloader

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
        for name in ("apiKey", "secret", "password"):  # masked wherever they would show
            if config.get(name):
                register_secret(config[name])
    return factory(config)


def _venue(
    mode: str, markets: dict[str, MarketSpec], quote: str, exchange: Any, books: PortfolioState
) -> Venue:
    if mode != "paper":
        return CcxtVenue(exchange)
    # A paper account holds what its books hold (the deposit, or what a predecessor left).
    return PaperVenue(name="paper", markets=markets, balances=paper_balances(books))


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


def apply_reload(loop: CycleLoop, reloader: ConfigReloader, cycle: int, interval_s: float) -> float:
    """Record what a changed configuration file brought (``ConfigChanged`` or
    ``ConfigRejected``, in the run) and apply a valid one; return the interval to wait."""
    found = reloader.poll()
    if found is None:
        return interval_s
    batch = [StreamAppend(f"config/{loop.run_id}", [found.event])]
    key = f"config/{loop.run_id}/{cycle}"
    if loop.link is not None:
        loop.link.append_many(batch, run_id=loop.run_id, idempotency_key=key, cycle=cycle)
    else:
        loop.store.append_many(batch, run_id=loop.run_id, idempotency_key=key)
    new = found.settings
    if new is None:
        return interval_s
    loop.validator = new.run.validator
    rules = list(new.run.alerts.rules)
    if not rules:
        loop.alerts = None
    elif loop.alerts is None:
        loop.alerts = AlertEngine(rules)
    else:
        loop.alerts.set_rules(rules)
    return new.run.live.interval_s


async def _cycles(
    loop: CycleLoop,
    first: int,
    cycles: int,
    interval_s: float,
    progress: Callable[[int, int], None] | None,
    lease: RunLease,
    stop: StopSignal | None,
    reloader: ConfigReloader | None = None,
) -> tuple[int, Decimal, bool]:
    """Run cycles ``first`` .. ``cycles - 1`` on the real clock; return (cycles done, equity
    at the start, whether the spool filled up).

    A requested stop ends the run after the cycle in hand, or cuts a wait between cycles
    short; the lease is renewed after each cycle and during the waits (not while the ledger
    is out: the spool stands for it, and the renewal would only wait on the ledger)."""
    books, link = loop.books, loop.link
    # Cash only (a paper run) needs no prices; held positions are valued at the first
    # snapshot's marks.
    equity_start = books.equity({}) if not any(books.positions.values()) else None
    done = first

    def beat() -> None:
        if link is None or not link.spooling:
            lease.beat(done)

    for cycle in range(first, cycles):
        try:
            with loop.store.unit_of_work() if link is None else nullcontext():
                await loop.cycle(cycle, loop.clock.now())
        except SpoolFull:
            return done, equity_start or Decimal(0), True
        done = cycle + 1
        beat()
        if equity_start is None:
            equity_start = books.equity(loop.marks)
        if progress is not None:
            progress(done, cycles)
        if done == cycles or (stop is not None and stop.requested):
            break
        if reloader is not None:  # a cycle boundary: a reloaded configuration applies here
            interval_s = apply_reload(loop, reloader, done, interval_s)
        waited = 0.0
        while waited < interval_s and not (stop is not None and stop.requested):
            step = min(WAIT_SLICE_S, interval_s - waited)
            await loop.clock.sleep(step)
            waited += step
            beat()
        if stop is not None and stop.requested:
            break
    if link is not None and link.spooling and not link.drain():
        raise StoreConnectionLost(
            f"the ledger is still out after the run's last cycle: {done} cycles are safe in "
            f"the spool {link.spool.path}",
            hint="run the same command again once the ledger answers: it drains the spool "
            "first, then finishes the run",
        )
    return done, books.equity(loop.marks) if equity_start is None else equity_start, False


def unfinished_live_run(
    store: EventStore, *, mode: str, config_hash: str, exchange: str, symbols: list[str]
) -> RunRecord | None:
    """The latest paper/live run of this configuration that never finished, if any: the
    run a restart carries on (refused if it records a catalog newer than this code's)."""
    found = None
    for record in list_runs(store).records():
        start, data = record.start, record.start.data
        if (
            record.finished is None
            and start.mode == mode
            and start.config_hash == config_hash
            and data.get("kind") == "live"
            and data.get("exchange") == exchange
            and data.get("symbols") == symbols
        ):
            found = record
    if found is not None:
        context.check_catalog(found.start)
    return found


def paper_balances(books: PortfolioState) -> dict[str, Decimal]:
    """A paper venue's balances for ``books``: every asset the account holds (the books keep
    base assets in ``cash`` too; ``positions`` are the same holdings per symbol)."""
    return {asset: amount for asset, amount in sorted(books.cash.items()) if amount}


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
    reloader: ConfigReloader | None = None,
) -> RunSummary | StoppedRun:
    """Run ``cycles`` cycles ``interval_s`` apart on ``clock`` (the system clock).

    The same configuration started again on a ledger that holds its run unfinished (stopped,
    failed, crashed, or stopped by a full spool) carries that run on: it drains the run's
    spool, rebuilds breakers, last good prices, order outcomes and nonces from the ledger,
    looks up orders left unknown, records ``RunResumed`` and runs the remaining cycles.
    SIGINT/SIGTERM (``stop``) end it after the cycle in hand with ``RunStopped``; a ledger
    outage sends cycles to the spool (no orders meanwhile) and past its limit stops the run.
    """
    clock = clock or SystemClock()
    runner = runner or RunnerSettings()
    store.clock = clock
    symbols = sorted(settings.live.symbols)
    quote = single_quote(
        symbols, "run.live.symbols", "list symbols of one quote asset in run.live.symbols"
    )
    source = CcxtSource(exchange, timeout_ms=ingest.fetch_timeout_ms)
    markets = market_specs(settings, symbols)
    strategy = load_strategy(settings.strategy.path, dict(settings.strategy.params))
    digest = context.config_hash(config)
    previous = unfinished_live_run(
        store, mode=mode, config_hash=digest, exchange=str(exchange.id), symbols=symbols
    )
    cache_events: list[tuple[str, events.Event]] = []
    warmup = await _warm_up(source, strategy, settings, symbols, cache_events.append)
    if previous is None:
        started = _started(settings, config, digest, mode, str(exchange.id), symbols, clock, warmup)
    else:
        started = previous.start
    run_id, account = started.run_id, started.account
    if warmup:
        OhlcvCache(settings.live.cache_dir).write_manifest(run_id, warmup)
    link = LedgerLink(
        store,
        Spool(runner.spool_dir / f"{run_id}.spool", runner.spool_limit_bytes),
        run_id,
        clock,
        retries=runner.store_retries,
        backoff_s=runner.store_retry_backoff_s,
    )
    lease = RunLease(store, run_id, runner, cycles)
    loop: CycleLoop | None = None
    try:
        if previous is None:
            lease.claim(0)
            books, first, done = _open_new(store, started, settings, mode, quote, cache_events)
            collaborators = Collaborators.fresh(ingest, clock)
        else:
            lease.claim(0)  # before the drain: no two processes drain one spool
            if not link.drain():
                raise StoreConnectionLost(
                    f"the ledger does not answer: run {run_id}'s spool "
                    f"{link.spool.path} cannot be drained yet",
                    hint="run again once the ledger answers; nothing in the spool is lost",
                )
            found = progress_of(store, run_id, account, previous.started.position)
            done, first = found.cycles_done, previous.started.position
            lease.beat(done, force=True)
            record_resume(store, run_id, found, extra=cache_events)
            books = portfolio.rebuild(store, account=account, quote=quote)
            collaborators = Collaborators.restored(
                store, ingest, clock, run_id=run_id, from_position=first
            )
        venue = _venue(mode, markets, quote, exchange, books)
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
            collaborators=collaborators,
            commit_cycles=1,
            link=link,
            catalog=started.catalog,  # a resumed run keeps the shape it started with
            # A resumed run's engine is rebuilt from what the ledger holds of it.
            alerts=alert_engine(settings.alerts, *((store, run_id, first) if previous else ())),
            notifier=notifier_for(settings, runner, store),
        )
        with recording_the_end(store, lease):
            done, equity_start, full = await _cycles(
                loop, done, cycles, interval_s, progress, lease, stop, reloader
            )
            if full:
                return _stop_spool_full(link, done, cycles)
            if done < cycles:
                assert stop is not None
                return record_stop(store, run_id, done, cycles, stop.reason)
            return finish_run(store, started, loop, first=first, equity_start=equity_start)
    finally:
        if loop is not None and loop.notifier is not None:
            loop.notifier.close()
        await source.close()


def _started(
    settings: RunSettings,
    config: dict[str, Any],
    digest: str,
    mode: str,
    exchange: str,
    symbols: list[str],
    clock: Clock,
    warmup: list[CacheEntry],
) -> events.RunStarted:
    """A new paper/live run: its id covers when it started (each start is a new run)."""
    data = _live_data(exchange, symbols, clock.now().isoformat(), warmup)
    run_id = context.run_id_for(digest, settings.seed, data)
    account = f"{settings.account}-{run_id[4:]}" if mode == "paper" else settings.account
    return events.RunStarted(
        run_id=run_id,
        mode=mode,
        seed=settings.seed,
        config=config,
        config_hash=digest,
        code_version=context.code_version(),
        account=account,
        environment=context.environment(),
        data=data,
        catalog=events.CATALOG,
    )


def _open_new(
    store: EventStore,
    started: events.RunStarted,
    settings: RunSettings,
    mode: str,
    quote: str,
    cache_events: list[tuple[str, events.Event]],
) -> tuple[PortfolioState, int, int]:
    """Record a new run's start (and a paper account's deposit); return (books, first
    position, cycles done)."""
    run_id, account = started.run_id, started.account
    books = PortfolioState(account=account, quote=quote)
    opening: list[events.Event] = []
    if mode == "paper":
        opening.append(
            events.FundsDeposited(
                account=account, asset=quote, amount=starting_cash(settings, quote)
            )
        )
    else:  # the account's own history, from the ledger
        books = portfolio.rebuild(store, account=account, quote=quote)
    appends = [
        StreamAppend(run_stream(run_id), [started], expected_version=0),
        *group_appends(cache_events),
    ]
    if opening:
        appends.append(StreamAppend(f"portfolio/{account}", opening))
    positions = store.append_many(appends, run_id=run_id, idempotency_key=f"run/{run_id}/start")
    for event, position in zip(opening, positions[-1] if opening else [], strict=False):
        portfolio.apply(books, event, position)
    return books, positions[0][0], 0


def _stop_spool_full(link: LedgerLink, done: int, planned: int) -> StoppedRun:
    """The ledger was out longer than the spool holds: the run's last word goes to the spool
    too (past the limit: it is small), and the run stops whole."""
    stopped = events.RunStopped(
        run_id=link.run_id,
        cycles_done=done,
        cycles_planned=planned,
        reason=SPOOL_FULL,
        detail=f"the ledger was out and the spool {link.spool.path} reached "
        f"{link.spool.limit_bytes} bytes"[:MESSAGE_LENGTH_MAX],
    )
    link.spool.add(
        SpooledAppend.of(
            f"run/{link.run_id}/stopped/{done}",
            -1,
            [StreamAppend(run_stream(link.run_id), [stopped], None)],
        ),
        over_limit=True,
    )
    log_committed([(stopped, None)])
    return StoppedRun(link.run_id, SPOOL_FULL, done, planned, 0)
