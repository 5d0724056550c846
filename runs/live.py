"""``tally run --mode paper|live``: the same cycle loop on the real clock and real prices.

Paper: prices through ccxt, orders on the paper venue. Live: orders on the exchange through
``CcxtVenue``, allowed only with ``--live`` and keys from the environment
(``TALLY_API_KEY``, ``TALLY_API_SECRET``, optionally ``TALLY_API_PASSWORD``). Keys go to the
exchange object and nowhere else: not into the configuration, the events or the logs.

A paper or live run met the real world, so it is audited with ``replay``, not re-executed.
Each cycle commits on its own (no grouping): the real clock runs between cycles.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from ingest.ccxt_source import CcxtSource
from ingest.settings import IngestSettings
from ingest.venues import CcxtVenue, MarketSpec, PaperVenue, Venue
from ledger import events
from ledger.clock import Clock, SystemClock
from ledger.errors import InputError
from ledger.store import EventStore, StreamAppend
from projections import portfolio
from projections.portfolio import PortfolioState, split_symbol
from runs import context
from runs.engine import CycleLoop
from runs.job import RunSummary, finish_run, market_specs
from runs.settings import RunSettings
from runs.strategy import load_strategy

KEY_ENV = ("TALLY_API_KEY", "TALLY_API_SECRET")
PASSWORD_ENV = "TALLY_API_PASSWORD"


def exchange_from_environment(exchange_id: str, *, live: bool) -> Any:
    """An async ccxt exchange; with ``live``, its keys come from the environment."""
    import ccxt.async_support as ccxt_async

    factory = getattr(ccxt_async, exchange_id, None)
    if factory is None:
        raise InputError(f"ccxt has no exchange {exchange_id!r}",
                         hint="set run.live.exchange to a ccxt id such as binance or kraken")
    config: dict[str, Any] = {"enableRateLimit": True}
    if live:
        missing = [name for name in KEY_ENV if not os.environ.get(name)]
        if missing:
            raise InputError(f"live mode needs API keys in the environment: {missing} unset",
                             hint="export TALLY_API_KEY and TALLY_API_SECRET (never put keys "
                                  "in the configuration file)")
        config["apiKey"] = os.environ[KEY_ENV[0]]
        config["secret"] = os.environ[KEY_ENV[1]]
        if os.environ.get(PASSWORD_ENV):
            config["password"] = os.environ[PASSWORD_ENV]
    return factory(config)


def _venue(mode: str, settings: RunSettings, markets: dict[str, MarketSpec], quote: str,
           exchange: Any) -> Venue:
    if mode != "paper":
        return CcxtVenue(exchange)
    cash = settings.starting_cash.get(quote)
    if cash is None:
        raise InputError(f"no starting cash for {quote}",
                         hint=f"set run.starting_cash.{quote} in the configuration")
    return PaperVenue(name="paper", markets=markets, balances={quote: cash})


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
) -> RunSummary:
    """Run ``cycles`` cycles ``interval_s`` apart on ``clock`` (the system clock)."""
    clock = clock or SystemClock()
    store.clock = clock
    symbols = sorted(settings.live.symbols)
    quotes = sorted({split_symbol(s)[1] for s in symbols})
    if len(quotes) != 1:
        raise InputError(f"a run trades against one quote asset; run.live.symbols has {quotes}",
                         hint="list symbols of one quote asset in run.live.symbols")
    quote = quotes[0]
    source = CcxtSource(exchange, timeout_ms=ingest.fetch_timeout_ms)
    markets = market_specs(settings, symbols)
    venue = _venue(mode, settings, markets, quote, exchange)
    started_at = clock.now()
    digest = context.config_hash(config)
    data = {"kind": "live", "exchange": str(exchange.id), "symbols": symbols,
            "started_at": started_at.isoformat()}
    run_id = context.run_id_for(digest, settings.seed, data)
    account = f"{settings.account}-{run_id[4:]}" if mode == "paper" else settings.account
    started = events.RunStarted(
        run_id=run_id, mode=mode, seed=settings.seed, config=config, config_hash=digest,
        code_version=context.code_version(), account=account,
        environment=context.environment(), data=data)
    books = PortfolioState(account=account, quote=quote)
    opening: list[events.Event] = []
    if mode == "paper":
        opening.append(events.FundsDeposited(account=account, asset=quote,
                                             amount=settings.starting_cash[quote]))
    else:  # the account's own history, from the ledger
        books = portfolio.rebuild(store, account=account, quote=quote)
    appends = [StreamAppend(f"run/{run_id}", [started], expected_version=0)]
    if opening:
        appends.append(StreamAppend(f"portfolio/{account}", opening))
    positions = store.append_many(appends, run_id=run_id,
                                  idempotency_key=f"run/{run_id}/start")
    first = positions[0][0]
    for event, position in zip(opening, positions[-1] if opening else [], strict=False):
        portfolio.apply(books, event, position)
    # Cash only (a paper run) needs no prices; held positions are valued after the first
    # snapshot.
    has_positions = any(books.positions.values())
    equity_start = books.equity({}) if not has_positions else None
    loop = CycleLoop(
        store=store, run_id=run_id, account=account, quote=quote, symbols=symbols,
        markets=markets, sources=[source], venue=venue,
        strategy=load_strategy(settings.strategy.path, dict(settings.strategy.params)),
        clock=clock, seed=settings.seed, ingest=ingest, validator=settings.validator,
        books=books, commit_cycles=1)
    status = "completed"
    try:
        for cycle in range(cycles):
            with store.unit_of_work():
                await loop.cycle(cycle, clock.now())
            if equity_start is None:
                equity_start = books.equity(loop.marks)
            if progress is not None:
                progress(cycle + 1, cycles)
            if cycle + 1 < cycles:
                await clock.sleep(interval_s)
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
    finally:
        await source.close()
    if equity_start is None:
        equity_start = books.equity(loop.marks)
    return finish_run(store, started, loop, first=first, equity_start=equity_start,
                      status=status)
