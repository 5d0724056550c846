"""The main job: ``tally run``, and ``tally runs`` to list what it recorded."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import EXIT_OK, InputError
from tally.cli.table import Command, Invocation
from tally.logs import FORMATS, LEVELS

# A paper or live run that ran but priced nothing: every mark failed (exchange unreachable).
EXIT_NO_PRICES = 3

if TYPE_CHECKING:
    from tally.settings import Settings


def add_fault_flags(parser: argparse.ArgumentParser) -> None:
    """--faults / --no-faults, for tally run and tally sweep."""
    faults = parser.add_mutually_exclusive_group()
    faults.add_argument(
        "--faults",
        dest="faults",
        action="store_true",
        default=None,
        help="inject feed faults (default: on for the sample, off for --data)",
    )
    faults.add_argument(
        "--no-faults",
        dest="faults",
        action="store_false",
        help="no injected faults, even for the sample",
    )


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="folder of OHLCV files BASE_QUOTE-TIMEFRAME.csv|.parquet",
    )
    run.add_argument(
        "--timerange",
        metavar="START-END",
        help="backtest: only candles opening from START to END, both days included, as "
        "freqtrade spells it (20180110-20180120, 20180110-, -20180120)",
    )
    run.add_argument(
        "--pairs",
        metavar="A/B,C/D",
        help="backtest: only these pairs of the data (comma-separated, e.g. ETH/BTC,LTC/BTC)",
    )
    run.add_argument(
        "--strategy",
        metavar="MODULE:CLASS",
        help="override run.strategy.path (default from the config: runs.strategy:Momentum)",
    )
    run.add_argument(
        "--strategy-path",
        type=Path,
        metavar="DIR",
        help="a folder to import --strategy's module from (like freqtrade's --strategy-path)",
    )
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("--mode", choices=["backtest", "paper", "live"], help="override run.mode")
    add_fault_flags(run)
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
    logs = run.add_argument_group("operator logs (DATA_FAILURE, CIRCUIT_OPEN, RUN_STOPPED, ...)")
    logs.add_argument(
        "--log-level",
        choices=LEVELS,
        help="lowest level written (default: warning for a backtest, info for paper/live)",
    )
    logs.add_argument("--log-file", type=Path, metavar="FILE", help="also append the lines here")
    logs.add_argument(
        "--log-format", choices=FORMATS, default="text", help="text lines or JSON lines"
    )


# Flags that mean something in one mode only: given in another, they are refused, not ignored.
BACKTEST_ONLY = {
    "data": "--data",
    "timerange": "--timerange",
    "pairs": "--pairs",
    "faults": "--faults/--no-faults",
}
LIVE_ONLY = {"cycles": "--cycles", "live": "--live"}


def refuse_flags_of_other_modes(args: argparse.Namespace, mode: str) -> None:
    """A flag that does not apply to ``mode`` is an error with the reason, never ignored."""
    given = {
        name: flag
        for name, flag in (LIVE_ONLY if mode == "backtest" else BACKTEST_ONLY).items()
        if getattr(args, name, None) not in (None, False)
    }
    if not given:
        return
    flags = ", ".join(given.values())
    if mode == "backtest":
        raise InputError(
            f"{flags}: not for a backtest; a backtest runs every candle of its data",
            hint="use --timerange to shorten a backtest; --cycles and --live are for "
            "--mode paper and --mode live",
            mode=mode,
        )
    raise InputError(
        f"{flags}: not for a {mode} run, which prices run.live.symbols on the real clock",
        hint="--data, --timerange, --pairs and --faults are for backtests (--mode backtest)",
        mode=mode,
    )


def parse_pairs(text: str | None) -> tuple[str, ...]:
    """--pairs ``eth/btc, LTC/BTC`` -> ("ETH/BTC", "LTC/BTC"); none given -> ()."""
    return tuple(p.strip().upper() for p in (text or "").split(",") if p.strip())


def add_strategy_path(folder: Path) -> None:
    """Let the strategy's module be imported from ``folder`` (freqtrade's --strategy-path)."""
    if not folder.is_dir():
        raise InputError(
            f"--strategy-path {folder}: no such folder",
            hint="pass the folder that holds your strategy's module",
            folder=str(folder),
        )
    sys.path.insert(0, str(folder.resolve()))


def with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with --seed, --mode and --strategy applied."""
    changes: dict[str, Any] = {}
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
    if getattr(args, "mode", None) is not None:
        changes["mode"] = args.mode
    if getattr(args, "strategy", None):
        changes["strategy"] = settings.run.strategy.model_copy(update={"path": args.strategy})
    if not changes:
        return settings
    return settings.model_copy(update={"run": settings.run.model_copy(update=changes)})


def run(call: Invocation) -> int:
    from ledger.store import init_store, open_store
    from tally.logs import configure as configure_logs
    from tally.progress import Progress
    from tally.settings import load_settings

    args = call.args
    settings = with_overrides(load_settings(args.config), args)
    mode = settings.run.mode
    configure_logs(
        args.log_level or ("warning" if mode == "backtest" else "info"),
        log_file=args.log_file,
        fmt=args.log_format,
    )
    refuse_flags_of_other_modes(args, mode)
    if args.strategy_path is not None:
        add_strategy_path(args.strategy_path)
    if mode == "live" and not args.live:
        raise InputError(
            "live mode places real orders and needs --live",
            hint="run `tally run --mode live --live` with keys in "
            "TALLY_API_KEY / TALLY_API_SECRET; try --mode paper first",
        )
    if mode != "backtest":
        return _run_live(call, settings, mode)
    from tally.run.backtest import Selection, execute_backtest, plan_backtest
    from tally.run.lifecycle import EXIT_STOPPED, StopNow, StoppedRun, stop_on_signals

    plan = plan_backtest(  # everything checked before the ledger is even created
        settings.run,
        settings.ingest,
        config=settings.run_config(),
        data_dir=args.data,
        faults=args.faults,
        selection=Selection(
            args.timerange,
            parse_pairs(args.pairs),
        ),
    )
    init_store(call.url, settings.store)  # create or upgrade: the main job works on a fresh machine
    with open_store(call.url, settings=settings.store) as store:
        bar: Progress | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = Progress("cycles", total)
            bar.update(done)

        try:
            with stop_on_signals(then_ignore=True) as stop:
                summary = execute_backtest(
                    store, plan, progress=progress, runner=settings.runner, stop=stop
                )
        except StopNow as now:
            return _stopped_at_once(now.reason)
        finally:
            if bar is not None:
                bar.close()
        results = ""
        if not args.json and not isinstance(summary, StoppedRun):
            from tally.cli.cmd_report import compact_results

            results = compact_results(store, summary)
    if args.json:
        print(json.dumps(summary.as_dict(), sort_keys=True))
    else:
        print(summary.render())
    if isinstance(summary, StoppedRun):
        return EXIT_STOPPED[summary.reason]
    if results:
        print(results)
    return EXIT_OK


def _stopped_at_once(reason: str) -> int:
    """What a second stop signal prints, and its exit code."""
    from tally.run.lifecycle import EXIT_STOPPED

    print(
        f"stopped at once by a second {reason}: the cycles in flight were dropped whole, "
        "nothing partial was committed\n  run the same command again to resume",
        file=sys.stderr,
    )
    return EXIT_STOPPED[reason]


def _run_live(call: Invocation, settings: Settings, mode: str) -> int:
    import asyncio
    import logging

    from ledger.store import init_store, open_store
    from tally.progress import Progress
    from tally.run.lifecycle import EXIT_STOPPED, StopNow, StoppedRun, stop_on_signals
    from tally.run.live import exchange_from_environment, priced_nothing, run_live

    args, live = call.args, settings.run.live
    exchange = exchange_from_environment(live.exchange, live=mode == "live")
    reloader = None
    if args.config is not None:  # watched, and read again on SIGHUP; applied between cycles
        import signal

        from tally.reload import FROZEN_FOR_RUNS, RELOADABLE_FOR_RUNS, ConfigReloader
        from tally.settings import load_settings

        reloader = ConfigReloader(
            args.config, load_settings(args.config), FROZEN_FOR_RUNS, RELOADABLE_FOR_RUNS
        ).start()
        signal.signal(signal.SIGHUP, lambda *_: reloader.request())
    init_store(call.url, settings.store)
    with open_store(call.url, settings=settings.store) as store:
        bar = Progress("cycles", args.cycles or live.cycles)
        try:
            with stop_on_signals(then_ignore=True) as stop:
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
                        runner=settings.runner,
                        stop=stop,
                        reloader=reloader,
                    )
                )
        except StopNow as now:
            return _stopped_at_once(now.reason)
        finally:
            bar.close()
            if reloader is not None:
                reloader.stop()
    print(json.dumps(summary.as_dict(), sort_keys=True) if args.json else summary.render())
    if isinstance(summary, StoppedRun):
        return EXIT_STOPPED[summary.reason]
    if priced_nothing(summary):
        logging.getLogger("tally.run").error(
            "NO_PRICES run=%s every one of %d marks failed: nothing was priced, nothing traded; "
            "check the exchange (run.live.exchange) and the network",
            summary.run_id,
            summary.counts["failed"],
        )
        return EXIT_NO_PRICES
    return EXIT_OK


def runs(call: Invocation) -> int:
    from tally.views import runs_rows

    rows = runs_rows(call.ledger)
    if call.args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print("no runs in this ledger (record one with `tally run`)")
    for row in rows:
        print(_run_line(row))
    return EXIT_OK


def _run_line(row: dict[str, Any]) -> str:
    done, planned = row["cycles_done"], row["cycles_planned"]
    cycles = f"{done or 0:,}/{planned:,} cycles" if planned is not None else f"{done or 0:,} cycles"
    state = row["state"]
    if state == "finished":
        tail = f"fingerprint {str(row['fingerprint'])[:16]}"
    elif state == "running":
        tail = f"pid {row['pid']} on {row['host']}"
    elif state in ("stopped", "failed"):
        tail = f"by {row['stop_reason']}" + (
            f": {row['stop_detail']}" if row["stop_detail"] else ""
        )
        tail += "; resume: the same command again"
    else:
        tail = "its process died; resume: the same command again"
    return (
        f"{row['run_id']}  {row['mode']:<8} seed {row['seed']:<6} account "
        f"{row['account']:<20} {state:<11} {cycles:<20} {tail}"
    )


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
