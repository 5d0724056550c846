"""The main job: ``tally run``, and ``tally runs`` to list what it recorded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import EXIT_OK, InputError
from tally.cli.table import Command, Invocation

if TYPE_CHECKING:
    from tally.settings import Settings


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="folder of OHLCV files BASE_QUOTE-TIMEFRAME.csv|.parquet",
    )
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("--mode", choices=["backtest", "paper", "live"], help="override run.mode")
    faults = run.add_mutually_exclusive_group()
    faults.add_argument(
        "--faults",
        dest="faults",
        action="store_true",
        default=None,
        help="inject feed faults (default: on for the sample, off for --data)",
    )
    faults.add_argument("--no-faults", dest="faults", action="store_false")
    run.add_argument(
        "--cycles",
        type=int,
        metavar="N",
        help="paper/live: cycles to run (default run.live.cycles)",
    )
    run.add_argument(
        "--live",
        action="store_true",
        help="required for live mode: real orders with keys from the environment",
    )


def with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with --seed and --mode applied."""
    changes = {}
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
    if getattr(args, "mode", None) is not None:
        changes["mode"] = args.mode
    if not changes:
        return settings
    return settings.model_copy(update={"run": settings.run.model_copy(update=changes)})


def run(call: Invocation) -> int:
    from ledger.store import init_store, open_store
    from tally.progress import Progress
    from tally.settings import load_settings

    args = call.args
    settings = with_overrides(load_settings(args.config), args)
    mode = settings.run.mode
    if mode == "live" and not args.live:
        raise InputError(
            "live mode places real orders and needs --live",
            hint="run `tally run --mode live --live` with keys in "
            "TALLY_API_KEY / TALLY_API_SECRET; try --mode paper first",
        )
    if mode != "backtest":
        return _run_live(call, settings, mode)
    from tally.run.backtest import run_backtest

    init_store(call.url, settings.store)  # create or upgrade: the main job works on a fresh machine
    with open_store(call.url, settings=settings.store) as store:
        bar: Progress | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = Progress("cycles", total)
            bar.update(done)

        try:
            summary = run_backtest(
                store,
                settings.run,
                settings.ingest,
                config=settings.run_config(),
                data_dir=args.data,
                faults=args.faults,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    else:
        print(summary.render())
    return EXIT_OK


def _run_live(call: Invocation, settings: Settings, mode: str) -> int:
    import asyncio

    from ledger.store import init_store, open_store
    from tally.progress import Progress
    from tally.run.live import exchange_from_environment, run_live

    args, live = call.args, settings.run.live
    exchange = exchange_from_environment(live.exchange, live=mode == "live")
    init_store(call.url, settings.store)
    with open_store(call.url, settings=settings.store) as store:
        bar = Progress("cycles", args.cycles or live.cycles)
        try:
            summary = asyncio.run(
                run_live(
                    store,
                    settings.run,
                    settings.ingest,
                    config=settings.run_config(),
                    exchange=exchange,
                    mode=mode,
                    cycles=args.cycles or live.cycles,
                    interval_s=live.interval_s,
                    progress=lambda done, _total: bar.update(done),
                )
            )
        finally:
            bar.close()
    print(json.dumps(summary.as_dict(), sort_keys=True) if args.json else summary.render())
    return EXIT_OK


def runs(call: Invocation) -> int:
    from projections.runs import list_runs

    rows = []
    for record in list_runs(call.ledger).records():
        begin, end = record.start, record.finish
        rows.append(
            {
                "run_id": begin.run_id,
                "mode": begin.mode,
                "seed": begin.seed,
                "account": begin.account,
                "started_position": record.started.position,
                "finished_position": record.finished.position if record.finished else None,
                "cycles": end.cycles if end is not None else None,
                "fingerprint": end.fingerprint if end is not None else None,
            }
        )
    if call.args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print("no runs in this ledger (record one with `tally run`)")
    for row in rows:
        state = (
            f"finished at {row['finished_position']}, {row['cycles']} cycles, "
            f"fingerprint {str(row['fingerprint'])[:16]}"
            if row["finished_position"]
            else "never finished"
        )
        print(
            f"{row['run_id']}  {row['mode']:<8} seed {row['seed']:<6} account "
            f"{row['account']:<20} started at {row['started_position']}, {state}"
        )
    return EXIT_OK


COMMANDS = [
    Command(
        "run",
        "the main job: a trading cycle loop (default: a backtest on generated sample data)",
        run,
        _run_arguments,
        opens_store=False,
    ),
    Command("runs", "list the runs in the ledger", runs),
]
