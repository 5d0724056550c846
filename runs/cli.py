"""The command-line handlers of the run family: run, replay, repro, diff, import, report."""

from __future__ import annotations

import argparse
import json

from ledger.errors import EXIT_OK, InputError
from ledger.progress import Progress
from ledger.settings import Settings
from ledger.store import init_store, open_store
from runs.job import run_backtest


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
        raise InputError(f"mode {mode} is not available yet", hint="use --mode backtest")
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
