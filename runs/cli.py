"""The command-line handlers of the run family: run, replay, repro, diff, import, report."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from ledger import events
from ledger.atomic import atomic_write
from ledger.errors import EXIT_INTEGRITY, EXIT_OK, InputError
from ledger.progress import Progress
from ledger.settings import Settings
from ledger.store import EventStore, init_store, open_store
from runs import repro
from runs.imports import parse_time_arg
from runs.job import iter_runs, run_backtest


def with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    changes = {}
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
    if getattr(args, "mode", None) is not None:
        changes["mode"] = args.mode
    if not changes:
        return settings
    return settings.model_copy(update={"run": settings.run.model_copy(update=changes)})


def run_command(args: argparse.Namespace, settings: Settings, url: str) -> int:
    settings = with_overrides(settings, args)
    mode = settings.run.mode
    if mode == "live" and not args.live:
        raise InputError("live mode places real orders and needs --live",
                         hint="run `tally run --mode live --live` with keys in "
                              "TALLY_API_KEY / TALLY_API_SECRET; try --mode paper first")
    if mode != "backtest":
        return _run_live(args, settings, url, mode)
    init_store(url)  # create or upgrade: the main job works on a fresh machine
    with open_store(url, durable=settings.store.durable) as store:
        bar: Progress | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = Progress("cycles", total)
            bar.update(done)

        try:
            summary = run_backtest(store, settings.run, settings.ingest,
                                   config=settings.run_config(), data_dir=args.data,
                                   faults=args.faults, progress=progress)
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    else:
        print(summary.render())
    return EXIT_OK


# What the replay's views fold: errors, breakers and marks (the portfolio reads its own).
REPLAY_TYPES = ("FetchFailed", "FetchSucceeded", "OrderRejected", "CallRejected",
                "CircuitOpened", "CircuitHalfOpened", "CircuitClosed", "SnapshotSealed",
                "CandleImported")


def _account_of(store: EventStore, args: argparse.Namespace) -> tuple[str, str | None]:
    """(account, run id) from --run or --account (a run's account when --run is given)."""
    run_id = getattr(args, "run", None)
    if run_id:
        started = repro.started_of(store, run_id)
        return started.event.account, run_id  # type: ignore[union-attr]
    return args.account, None


def runs_command(store: EventStore, args: argparse.Namespace) -> int:
    rows = []
    for started, finished in iter_runs(store):
        begin = started.event
        assert isinstance(begin, events.RunStarted)
        end = finished.event if finished else None
        rows.append({
            "run_id": begin.run_id, "mode": begin.mode, "seed": begin.seed,
            "account": begin.account, "started_position": started.position,
            "finished_position": finished.position if finished else None,
            "cycles": end.cycles if isinstance(end, events.RunFinished) else None,
            "fingerprint": end.fingerprint if isinstance(end, events.RunFinished) else None,
        })
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print("no runs in this ledger (record one with `tally run`)")
    for row in rows:
        state = (f"finished at {row['finished_position']}, {row['cycles']} cycles, "
                 f"fingerprint {str(row['fingerprint'])[:16]}" if row["finished_position"]
                 else "never finished")
        print(f"{row['run_id']}  {row['mode']:<8} seed {row['seed']:<6} account "
              f"{row['account']:<20} started at {row['started_position']}, {state}")
    return EXIT_OK


def repro_command(store: EventStore, args: argparse.Namespace) -> int:
    bar = Progress("re-executing", 1)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done)

    try:
        result = repro.check(store, args.run_id, scratch_url=args.scratch_db,
                             data_dir=args.data, progress=progress)
    finally:
        bar.close()
    for note in result.notes:
        print(f"note: {note}")
    if result.reproduced:
        print(f"reproduced: {result.events:,} events, fingerprint {result.fingerprint}")
        return EXIT_OK
    print(f"NOT reproduced: run {result.run_id} ({result.events:,} events recorded)")
    if result.divergence is not None:
        print(result.divergence.render())
    print(f"fingerprint recorded {result.fingerprint}, re-executed "
          f"{result.replayed_fingerprint}")
    return EXIT_INTEGRITY


def diff_command(store: EventStore, args: argparse.Namespace) -> int:
    found = repro.diverge(store, args.run_a, args.run_b)
    if found.inputs:
        print("inputs differ:")
        for name, (left, right) in found.inputs.items():
            print(f"  {name}: {repro.show(left)} vs {repro.show(right)}")
    if found.divergence is None:
        print(f"runs {args.run_a} and {args.run_b} record the same events "
              f"({found.events_a:,}), apart from their own names")
    else:
        print(found.divergence.render(a=args.run_a, b=args.run_b))
    rows = found.equity
    if args.csv:
        lines = ["timestamp,equity_a,equity_b,delta"] + [
            ",".join("" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                     for v in row) for row in rows]
        _atomic_write(args.csv, "\n".join(lines) + "\n")
        print(f"equity over time written to {args.csv}")
    deltas = [row[3] for row in rows if row[3] is not None]
    if deltas:
        print(f"equity difference (A - B) over {len(rows):,} time steps: final {deltas[-1]}, "
              f"largest {max(deltas, key=abs)}")
        step = max(1, len(rows) // 10)
        print(f"{'time':<26} {'equity A':>18} {'equity B':>18} {'A - B':>16}")
        for i in sorted({*range(0, len(rows), step), len(rows) - 1}):
            moment, left, right, delta = rows[i]
            print(f"{moment.isoformat():<26} {left!s:>18} {right!s:>18} {delta!s:>16}")
    return EXIT_OK if found.divergence is None else EXIT_INTEGRITY


def replay_command(store: EventStore, args: argparse.Namespace) -> int:
    from projections import portfolio
    from projections.errors import BreakerBoard, ErrorTracker

    account, run_id = _account_of(store, args)
    head = store.head()
    if args.to is not None:
        if args.to < 1:
            raise InputError(f"--to must be a position >= 1, got {args.to}", value=args.to)
        position = min(args.to, head)
    elif args.at is not None:
        position = store.position_at(parse_time_arg(args.at, "--at"))
        if position == 0:
            raise InputError(f"the ledger holds nothing recorded at or before {args.at}",
                             hint="pick a later time; `tally events` shows recorded times")
    else:
        position = head
    state = portfolio.rebuild(store, account=account, to_position=position)
    errors, breakers = ErrorTracker(), BreakerBoard()
    marks: dict[str, Decimal] = {}
    last_time = None
    for recorded in store.query(types=REPLAY_TYPES, to_position=position):
        if run_id is not None and recorded.run_id != run_id:
            continue
        errors.apply(recorded)
        breakers.apply(recorded)
        event = recorded.event
        if isinstance(event, events.SnapshotSealed):
            marks.update(event.marks)
        elif isinstance(event, events.CandleImported):
            marks[event.symbol] = event.close
        last_time = recorded.recorded_at
    missing = [s for s, q in state.positions.items() if q and s not in marks]
    equity = None if missing or state.quote is None else state.equity(marks)
    out = {
        "position": position, "recorded_at": last_time.isoformat() if last_time else None,
        "account": account, "run_id": run_id, "quote": state.quote,
        "cash": {a: str(v) for a, v in sorted(state.cash.items()) if v},
        "positions": {s: str(v) for s, v in sorted(state.positions.items()) if v},
        "average_cost": {s: str(state.average_cost[s]) for s, v in
                         sorted(state.positions.items()) if v},
        "realized_pnl": {a: str(v) for a, v in sorted(state.realized_pnl.items())},
        "fees_paid": {a: str(v) for a, v in sorted(state.fees_paid.items())},
        "equity": str(equity) if equity is not None else None,
        "marks": {s: str(v) for s, v in sorted(marks.items())},
        "errors": dict(sorted(errors.by_class.items())),
        "last_errors": [{"position": e.position, "class": e.error_class, "symbol": e.symbol,
                         "message": e.message} for e in list(errors.recent)[-5:]],
        "breakers": {n: {"state": b.state, "calls": b.calls, "successes": b.successes,
                         "failures": b.failures, "rejected": b.rejected}
                     for n, b in sorted(breakers.breakers.items())},
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return EXIT_OK
    print(f"as of position {position:,} ({out['recorded_at']}), account {account}")
    print(f"  equity     {out['equity'] or 'unknown (no price for ' + ', '.join(missing) + ')'}"
          f" {state.quote or ''}")
    for asset, amount in out["cash"].items():
        print(f"  cash       {asset:<10} {amount}")
    for symbol, qty in out["positions"].items():
        print(f"  position   {symbol:<10} {qty} @ avg {out['average_cost'][symbol]}"
              f" (mark {out['marks'].get(symbol, '?')})")
    for asset, amount in out["fees_paid"].items():
        print(f"  fees paid  {asset:<10} {amount}")
    for asset, amount in out["realized_pnl"].items():
        print(f"  realized   {asset:<10} {amount}")
    print(f"  errors     {out['errors'] or 'none'}")
    for name, view in out["breakers"].items():
        print(f"  breaker    {name}: {view['state']} (calls {view['calls']}, failures "
              f"{view['failures']}, rejected {view['rejected']})")
    return EXIT_OK


def report_command(store: EventStore, args: argparse.Namespace) -> int:
    from projections import reports

    account, run_id = _account_of(store, args)
    series = reports.load_series(store, account, run_id=run_id)
    if not series.rows:
        raise InputError(f"no equity to report for account {account!r}",
                         hint="pick a run with --run (`tally runs` lists them), or import "
                              "trades and prices for the account first", account=account)
    if args.format == "csv":
        text = reports.to_csv(series)
    elif args.format == "json":
        text = json.dumps(reports.to_json(series)) + "\n"
    else:
        text = reports.to_html(series, f"Equity of {account}" + (f" ({run_id})" if run_id
                                                                   else ""))
    if args.out:
        _atomic_write(args.out, text)
        print(f"{len(series.rows):,} rows written to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _atomic_write(path: Path, text: str) -> None:
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}", file=str(path)) from e


def import_command(store: EventStore, args: argparse.Namespace) -> int:
    from runs import imports

    if args.import_kind == "trades":
        done = imports.import_trades(store, args.file, args.account)
    else:
        done = imports.import_ohlcv(store, args.folder)
    if done.already:
        print(f"already imported: {done.count:,} events at positions {done.first_position:,}.."
              f"{done.last_position:,}; nothing new recorded")
    else:
        print(f"imported {done.what}: {done.count:,} events at positions "
              f"{done.first_position:,}..{done.last_position:,}")
    return EXIT_OK


def deposit_command(store: EventStore, args: argparse.Namespace) -> int:
    from runs import imports

    position = imports.deposit(store, args.asset, args.amount, args.account, args.at)
    print(f"deposited {args.amount} {args.asset.upper()} into {args.account} "
          f"(position {position})")
    return EXIT_OK


def _run_live(args: argparse.Namespace, settings: Settings, url: str, mode: str) -> int:
    import asyncio

    from runs.live import exchange_from_environment, run_live

    live = settings.run.live
    exchange = exchange_from_environment(live.exchange, live=mode == "live")
    init_store(url)
    with open_store(url, durable=settings.store.durable) as store:
        bar = Progress("cycles", args.cycles or live.cycles)
        try:
            summary = asyncio.run(run_live(
                store, settings.run, settings.ingest, config=settings.run_config(),
                exchange=exchange, mode=mode, cycles=args.cycles or live.cycles,
                interval_s=live.interval_s, progress=lambda done, _total: bar.update(done)))
        finally:
            bar.close()
    print(json.dumps(summary.as_dict(), sort_keys=True) if args.json else summary.render())
    return EXIT_OK
