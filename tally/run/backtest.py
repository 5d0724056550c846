"""``tally run`` in backtest mode: inputs -> ``RunStarted`` -> cycles -> ``RunFinished``.

The same configuration, seed and data give the same run id, the same events and the same
fingerprint, on any ledger and either backend. Running it again into a ledger that already
holds it finds the finished run and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from ingest.candles import (
    CandleSet,
    CandleSource,
    generate_sample,
    hash_files,
    load_priced_candles,
    ohlcv_files,
    select_candles,
)
from ingest.logs import log_committed
from ingest.settings import IngestSettings
from ingest.simulated import ErrorBurst, SimulatedFaults, Window
from ingest.venues import MarketSpec, PaperVenue
from ledger import events
from ledger.clock import SimulatedClock
from ledger.errors import InputError
from ledger.market import MESSAGE_LENGTH_MAX, split_symbol
from ledger.recorded import RecordedEvent
from ledger.store import EventStore, StreamAppend, group_appends
from projections import portfolio
from projections.alerting import AlertEngine, AlertSettings
from projections.monitor import MONITOR_TYPES
from projections.portfolio import PortfolioState
from projections.runs import find_run, run_stream
from tally.amounts import asset_steps, show
from tally.run import context
from tally.run.collector import fewer_collections
from tally.run.cycle_loop import Collaborators, CycleLoop
from tally.run.lifecycle import (
    RunLease,
    RunProgress,
    StoppedRun,
    StopSignal,
    progress_of,
    record_stop,
    recording_the_end,
)
from tally.run.notify import Notifier
from tally.run.settings import FaultSettings, RunnerSettings, RunSettings, market_steps
from tally.run.strategy import Strategy, load_strategy


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    account: str
    mode: str
    seed: int
    counts: dict[str, int]
    equity_start: Decimal
    equity_end: Decimal
    quote: str
    fingerprint: str
    events: int
    first_position: int
    last_position: int
    already_recorded: bool = False
    quote_step: Decimal | None = None  # the quote asset's precision, for display

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.__dict__.items()}

    def render(self) -> str:
        c = self.counts
        marks = c["fresh"] + c["stale"] + c["failed"]
        lines = [
            f"run {self.run_id} ({self.mode}, seed {self.seed}, account {self.account})"
            + (" - already in this ledger, nothing new recorded" if self.already_recorded else ""),
            f"  cycles           {c['cycles']:,}",
            f"  trades           {c['trades']:,}  (orders rejected {c['orders_rejected']:,})",
            f"  marks            {marks:,}: fresh {c['fresh']:,}, stale {c['stale']:,}, "
            f"failed {c['failed']:,}  (retries {c['retries']:,})",
            f"  validations      passed {c['passed']:,}, reconciled {c['reconciled']:,}, "
            f"discarded {c['discarded']:,}",
            f"  equity           {show(self.equity_start, self.quote_step)} -> "
            f"{show(self.equity_end, self.quote_step)} {self.quote}",
            f"  events           {self.events:,}  (positions {self.first_position:,}.."
            f"{self.last_position:,})",
            f"  fingerprint      {self.fingerprint}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Inputs:
    candles: CandleSet
    data: dict[str, Any]  # what RunStarted records about them
    faults: bool


@dataclass(frozen=True)
class Selection:
    """freqtrade's ``--timerange`` and ``--pairs``: a part of the data, recorded in the run."""

    timerange: str | None = None  # YYYYMMDD-YYYYMMDD, either end optional
    pairs: tuple[str, ...] = ()

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        if not self.timerange:
            return None, None
        start, sep, stop = self.timerange.partition("-")
        if not sep:
            raise InputError(
                f"--timerange {self.timerange!r} has no '-'",
                hint="write it as freqtrade does: 20180110-20180120, 20180110- or -20180120",
            )
        return _day(start, "start"), _day(stop, "end")

    def recorded(self) -> dict[str, Any]:
        """What ``RunStarted.data`` holds of it (nothing when nothing was selected)."""
        out: dict[str, Any] = {}
        if self.timerange:
            out["timerange"] = self.timerange
        if self.pairs:
            out["pairs"] = list(self.pairs)
        return out


def _day(text: str, end: str) -> datetime | None:
    if not text:
        return None
    try:
        if len(text) == 8:
            return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)
        if len(text) == 10 and text.isdigit():  # epoch seconds, as freqtrade also takes
            return datetime.fromtimestamp(int(text), UTC)
    except ValueError:
        pass
    raise InputError(
        f"--timerange: the {end} {text!r} is not a date YYYYMMDD (or epoch seconds)",
        hint="e.g. --timerange 20180110-20180120",
    )


def prepare_inputs(
    settings: RunSettings,
    data_dir: Path | None,
    faults: bool | None,
    price_steps: Mapping[str, Decimal] | None = None,
    selection: Selection = Selection(),
    compact: bool = True,
) -> Inputs:
    """Load ``data_dir`` or generate the sample; faults default on for the sample only.

    Files are rounded to each market's price step (``run.markets``, or ``price_steps``:
    a recorded run's own), so float noise in a file never reaches a mark; ``{}`` leaves
    them as written (runs recorded before the steps were)."""
    if data_dir is None:
        spec = settings.sample
        candles = generate_sample(
            seed=settings.seed,
            start=spec.start,
            days=spec.days,
            timeframe=spec.timeframe,
            symbols=tuple(spec.symbols),
            missing_share=spec.missing_share,
            compact=compact,  # a run prices with closes only; a chart wants whole candles
        )
        if selection.recorded():
            candles = select_candles(candles, selection.pairs, *selection.bounds())
        data = {
            "kind": "generated",
            "sample": msgspec.to_builtins(spec.model_dump()),
            "files": candles.manifest,
            **selection.recorded(),
        }
        return Inputs(candles, data, True if faults is None else faults)
    candles = _files_as_priced(settings, data_dir, price_steps, selection)
    data = {
        "kind": "files",
        "folder": str(data_dir.resolve()),
        "files": candles.manifest,
        **selection.recorded(),
    }
    return Inputs(candles, data, False if faults is None else faults)


# The last folder prepared in this process, by everything that shapes it: the files'
# names and contents, the selection, the steps. A sweep's points and a repro check read the
# same files again (about 0.15 s for the seven real ones); the run uses the cached candles
# as they are (nothing changes a CandleSet once made). One entry, so memory stays that of
# one data set.
_PREPARED: dict[tuple[Any, ...], CandleSet] = {}


def _files_as_priced(
    settings: RunSettings,
    data_dir: Path,
    price_steps: Mapping[str, Decimal] | None,
    selection: Selection,
) -> CandleSet:
    """The folder's candles, selected, rounded to the steps and, beyond
    ``WHOLE_CANDLES_MAX``, cut down to their closes (``load_priced_candles``; cached, see
    _PREPARED)."""
    files = ohlcv_files(data_dir)
    digests = hash_files(files)  # for the key; each file's bytes are checked when parsed
    contents = tuple((path.name, digests[path]) for path, _, _ in files)
    if price_steps is None:  # the markets' steps (a recorded run passes its own)
        symbols = [s for _, s, _ in files if not selection.pairs or s in selection.pairs]
        specs = market_specs(settings, symbols)
        price_steps = {symbol: spec.price_step for symbol, spec in specs.items()}
    key = (contents, selection, tuple(sorted(price_steps.items())))
    cached = _PREPARED.get(key)
    if cached is not None:
        return cached
    _PREPARED.clear()  # before loading: one data set in memory at a time
    candles = load_priced_candles(files, digests, price_steps, selection.pairs, *selection.bounds())
    _PREPARED[key] = candles
    return candles


def inputs_from_record(
    started: events.RunStarted,
    settings: RunSettings,
    data_dir: Path | None,
    *,
    compact: bool = True,
) -> Inputs:
    """Rebuild a recorded run's inputs and check them against its manifest."""
    data = started.data
    faults = bool(data.get("faults", False))
    selection = Selection(data.get("timerange"), tuple(data.get("pairs", ())))
    if data.get("kind") == "generated":
        fresh = prepare_inputs(settings, None, faults, selection=selection, compact=compact)
    else:
        folder = data_dir or Path(str(data.get("folder", "")))
        steps = {
            str(f["symbol"]): Decimal(str(f["price_step"]))
            for f in data.get("files", [])
            if "price_step" in f
        }
        fresh = prepare_inputs(settings, folder, faults, steps, selection)
    recorded = {f["name"]: f for f in data.get("files", [])}
    for entry in fresh.candles.manifest:
        before = recorded.get(entry["name"])
        if before is None or before["sha256"] != entry["sha256"]:
            raise InputError(
                f"input {entry['name']} is not the file run {started.run_id} used "
                f"(sha256 {entry['sha256'][:16]}..., recorded "
                f"{(before or {}).get('sha256', 'nothing')[:16]}...)",
                hint="point --data at the original files; a run reproduces only from its own data",
                file=entry["name"],
            )
    missing = sorted(set(recorded) - {e["name"] for e in fresh.candles.manifest})
    if missing:
        raise InputError(
            f"inputs of run {started.run_id} are missing: {missing}",
            hint="point --data at the folder the run used",
        )
    return Inputs(fresh.candles, {**data, "files": fresh.candles.manifest}, faults)


def single_quote(symbols: list[str], where: str, hint: str) -> str:
    """The one quote asset of ``symbols`` (a run values everything in it)."""
    quotes = sorted({split_symbol(s)[1] for s in symbols})
    if len(quotes) != 1:
        raise InputError(f"a run trades against one quote asset; {where} has {quotes}", hint=hint)
    return quotes[0]


def starting_cash(settings: RunSettings, quote: str) -> Decimal:
    cash = settings.starting_cash.get(quote)
    if cash is None:
        raise InputError(
            f"no starting cash for {quote}",
            hint=f"set run.starting_cash.{quote} in the configuration",
        )
    return cash


def market_specs(settings: RunSettings, symbols: list[str]) -> dict[str, MarketSpec]:
    specs = {}
    for symbol in symbols:
        steps = market_steps(settings.markets, symbol)
        specs[symbol] = MarketSpec(
            symbol,
            steps.price_step,
            steps.qty_step,
            steps.fee_step,
            steps.maker_bps,
            steps.taker_bps,
        )
    return specs


def simulated_faults(config: FaultSettings, times: list[datetime]) -> SimulatedFaults:
    bursts = []
    for outage in config.outages:
        if outage.start_cycle >= len(times):
            continue
        end = min(outage.start_cycle + outage.cycles, len(times) - 1)
        window = Window(
            times[outage.start_cycle],
            times[end]
            if end > outage.start_cycle
            else times[outage.start_cycle] + (times[1] - times[0]),
        )
        bursts.append(ErrorBurst(window, outage.error_class, frozenset(outage.symbols)))
    return SimulatedFaults(
        latency_ms=config.latency_ms,
        failure_rate=config.failure_rate,
        malformed_rate=config.malformed_rate,
        bursts=bursts,
    )


def summary_from_ledger(started: RecordedEvent, finished: RecordedEvent) -> RunSummary:
    begin, end = started.event, finished.event
    assert isinstance(begin, events.RunStarted) and isinstance(end, events.RunFinished)
    s = end.summary
    return RunSummary(
        begin.run_id,
        begin.account,
        begin.mode,
        begin.seed,
        s["counts"],
        Decimal(s["equity_start"]),
        Decimal(s["equity_end"]),
        s["quote"],
        end.fingerprint,
        s["events"],
        started.position,
        finished.position,
        already_recorded=True,
        quote_step=asset_steps(begin.config.get("run", {}).get("markets", {})).get(s["quote"]),
    )


@dataclass(frozen=True)
class BacktestPlan:
    """Everything a backtest needs, checked, before anything is written."""

    settings: RunSettings
    ingest: IngestSettings
    candles: CandleSet
    quote: str
    cash: Decimal
    markets: dict[str, MarketSpec]
    times: list[datetime]
    strategy: Strategy
    faults: SimulatedFaults | None
    started: events.RunStarted
    replay: bool  # re-executing a recorded run (``repro check``), never resuming one


def plan_backtest(
    settings: RunSettings,
    ingest: IngestSettings,
    *,
    config: dict[str, Any],
    data_dir: Path | None = None,
    faults: bool | None = None,
    replay_of: events.RunStarted | None = None,
    selection: Selection = Selection(),
) -> BacktestPlan:
    """Load and check the data, the markets, the cash and the strategy: a plan that fails
    here has written nothing, not even a ledger file."""
    if replay_of is not None:
        context.check_catalog(replay_of)
        inputs = inputs_from_record(replay_of, settings, data_dir)
    else:
        inputs = prepare_inputs(settings, data_dir, faults, selection=selection)
    candles = inputs.candles
    symbols = candles.symbols
    quote = single_quote(symbols, "the data", "split the files into one folder per quote asset")
    times = candles.cycle_times()
    if replay_of is not None:
        started = replay_of
    else:
        digest = context.config_hash(config)
        data = {**inputs.data, "faults": inputs.faults}
        run_id = context.run_id_for(digest, settings.seed, data)
        started = events.RunStarted(
            run_id=run_id,
            mode="backtest",
            seed=settings.seed,
            config=config,
            config_hash=digest,
            code_version=context.code_version(),
            account=f"{settings.account}-{run_id[4:]}",
            environment=context.environment(),
            data=data,
            catalog=events.CATALOG,
        )
    return BacktestPlan(
        settings=settings,
        ingest=ingest,
        candles=candles,
        quote=quote,
        cash=starting_cash(settings, quote),
        markets=market_specs(settings, symbols),
        times=times,
        strategy=load_strategy(settings.strategy.path, dict(settings.strategy.params)),
        faults=simulated_faults(settings.faults, times) if inputs.faults else None,
        started=started,
        replay=replay_of is not None,
    )


def run_backtest(
    store: EventStore,
    settings: RunSettings,
    ingest: IngestSettings,
    *,
    config: dict[str, Any],
    data_dir: Path | None = None,
    faults: bool | None = None,
    replay_of: events.RunStarted | None = None,
    progress: Callable[[int, int], None] | None = None,
    runner: RunnerSettings | None = None,
    stop: StopSignal | None = None,
) -> RunSummary | StoppedRun:
    """Plan and execute a backtest; ``replay_of`` re-executes a recorded run verbatim."""
    plan = plan_backtest(
        settings, ingest, config=config, data_dir=data_dir, faults=faults, replay_of=replay_of
    )
    return execute_backtest(store, plan, progress=progress, runner=runner, stop=stop)


def execute_backtest(
    store: EventStore,
    plan: BacktestPlan,
    *,
    progress: Callable[[int, int], None] | None = None,
    runner: RunnerSettings | None = None,
    stop: StopSignal | None = None,
) -> RunSummary | StoppedRun:
    """Record a planned backtest into ``store``.

    A ledger that holds the run unfinished (stopped, failed or crashed) resumes it:
    ``RunResumed``, then every cycle runs again, the committed ones replaying by idempotency
    key (checked against what is stored, never doubled), and the rest are appended. With
    ``stop`` requested the run ends after the cycle in hand and returns a ``StoppedRun``.
    """
    settings, ingest, times = plan.settings, plan.ingest, plan.times
    quote, cash, markets, candles = plan.quote, plan.cash, plan.markets, plan.candles
    symbols, strategy, fault_plan = candles.symbols, plan.strategy, plan.faults
    started_event = plan.started
    run_id, account = started_event.run_id, started_event.account
    resume: RunProgress | None = None
    if not plan.replay:
        found = find_run(store, run_id)
        if found is not None and found.finished is not None:
            return summary_from_ledger(found.started, found.finished)
        if found is not None:  # an earlier start of the same inputs: resume it
            started_event = found.start  # as recorded (where it first ran, too)
            context.check_catalog(started_event)
            resume = progress_of(store, run_id, account, found.started.position)

    # 2. The run, under its lease.
    lease = RunLease(store, run_id, runner or RunnerSettings(), len(times))
    lease.claim(resume.cycles_done if resume else 0)
    with recording_the_end(store, lease):
        clock = SimulatedClock(times[0])
        store.clock = clock
        source = CandleSource(candles, clock=clock, seed=started_event.seed, faults=fault_plan)
        venue = PaperVenue(name="paper", markets=markets, balances={quote: cash})
        deposit = events.FundsDeposited(account=account, asset=quote, amount=cash)
        positions = store.append_many(
            [
                StreamAppend(run_stream(run_id), [started_event], expected_version=0),
                StreamAppend(f"portfolio/{account}", [deposit], expected_version=0),
            ],
            run_id=run_id,
            idempotency_key=f"run/{run_id}/start",
        )
        first = positions[0][0]
        if resume is not None:
            # Stamped at the last committed cycle's time: recorded times follow positions.
            store.clock = SimulatedClock(times[max(resume.cycles_done - 1, 0)])
            record_resume(store, run_id, resume)
            store.clock = clock
        books = PortfolioState(account=account, quote=quote)
        portfolio.apply(books, deposit, positions[1][0])
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
            seed=started_event.seed,
            ingest=ingest,
            validator=settings.validator,
            books=books,
            collaborators=Collaborators.fresh(ingest, clock),
            commit_cycles=settings.commit_cycles,
            progress=(lambda n: progress(n, len(times))) if progress else None,
            resume_from=lease.done,
            alerts=alert_engine(settings.alerts),
            notifier=notifier_for(settings, runner, store),
            # Files without injected faults never suspend a fetch (no latency, no sleeps).
            sequential_fetches=fault_plan is None,
            catalog=started_event.catalog,
        )
        try:
            with fewer_collections():
                asyncio.run(loop.run(times, stop=stop, after_commit=lease.beat))
        finally:
            if loop.notifier is not None:
                loop.notifier.close()
        if stop is not None and stop.requested:
            return record_stop(store, run_id, lease.done, len(times), stop.reason)
        return finish_run(store, started_event, loop, first=first, equity_start=cash)


def alert_engine(
    settings: AlertSettings,
    store: EventStore | None = None,
    run_id: str | None = None,
    from_position: int = 1,
) -> AlertEngine | None:
    """The run's alert engine (None without rules); with ``store``, rebuilt from what the
    ledger holds of ``run_id`` (a paper or live run resumes where it was)."""
    if not settings.rules:
        return None
    engine = AlertEngine(list(settings.rules))
    if store is not None:
        for recorded in store.query(types=MONITOR_TYPES, from_position=from_position):
            if recorded.run_id == run_id:
                engine.observe(recorded.event, recorded.recorded_at)
    return engine


def notifier_for(
    settings: RunSettings, runner: RunnerSettings | None, store: EventStore
) -> Notifier | None:
    """The run's alert sinks, when it has rules and a sink is configured."""
    sinks = (runner or RunnerSettings()).notify
    if not settings.alerts.rules or not (sinks.webhook_url or sinks.command):
        return None
    return Notifier(sinks, store)


def record_resume(
    store: EventStore,
    run_id: str,
    found: RunProgress,
    extra: Sequence[tuple[str, events.Event]] = (),
) -> None:
    """Append ``RunResumed`` with what the ledger held of the run (and ``extra`` events of
    the restart, such as a live run's warm-up fetches, in the same transaction)."""
    stop = found.stopped
    previously = "interrupted"
    if stop is not None:
        previously = f"stopped ({stop.reason}{': ' + stop.detail if stop.detail else ''})"
    resumed = events.RunResumed(
        run_id=run_id,
        cycles_done=found.cycles_done,
        last_position=store.head(),
        previously=previously[:MESSAGE_LENGTH_MAX],
    )
    # expected_version None: the lease makes this process the run's only writer.
    at = store.append_many(
        [StreamAppend(run_stream(run_id), [resumed], None), *group_appends(extra)], run_id=run_id
    )
    log_committed([(resumed, at[0][0])])


def finish_run(
    store: EventStore,
    started: events.RunStarted,
    loop: CycleLoop,
    *,
    first: int,
    equity_start: Decimal,
    status: str = "completed",
) -> RunSummary:
    """Fingerprint the run's events, append ``RunFinished``, return the summary."""
    run_id = started.run_id
    equity_end = loop.books.equity(loop.marks)
    # Our own rows, just written: the chain was checked when each batch was appended.
    forms = (form for _, form in context.run_records(store.raw_records(first), run_id))
    fingerprint, count = context.fingerprint(forms)
    summary = {
        "counts": loop.counts.as_dict(),
        "equity_start": str(equity_start),
        "equity_end": str(equity_end),
        "quote": loop.quote,
        "events": count + 1,
    }
    finished = events.RunFinished(
        run_id=run_id,
        cycles=loop.counts.cycles,
        status=status,
        summary=summary,
        fingerprint=fingerprint,
    )
    last = store.append(
        run_stream(run_id),
        [finished],
        expected_version=None,
        run_id=run_id,
        idempotency_key=f"run/{run_id}/finish",
    )[0]
    return RunSummary(
        run_id,
        loop.account,
        started.mode,
        started.seed,
        loop.counts.as_dict(),
        equity_start,
        equity_end,
        loop.quote,
        fingerprint,
        count + 1,
        first,
        last,
        quote_step=next((m.fee_step for m in loop.markets.values()), None),
    )
