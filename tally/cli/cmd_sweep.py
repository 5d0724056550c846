"""``tally sweep``: many runs of one data set over a grid of strategy parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import EXIT_OK, InputError
from tally.cli.cmd_run import add_fault_flags, parse_pairs
from tally.cli.table import Command, Invocation

if TYPE_CHECKING:
    from tally.settings import Settings


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="a strategy parameter and its values (repeat: the grid is every combination)",
    )
    parser.add_argument(
        "--grid",
        type=Path,
        metavar="FILE.yaml",
        help="params: {name: [values]} or points: [{name: value, ...}, ...]",
    )
    parser.add_argument("--data", type=Path, metavar="DIR", help="OHLCV files, as tally run")
    parser.add_argument("--timerange", metavar="START-END", help="as tally run")
    parser.add_argument("--pairs", metavar="A/B,C/D", help="as tally run")
    parser.add_argument("--strategy", metavar="MODULE:CLASS", help="as tally run")
    parser.add_argument("--strategy-path", type=Path, metavar="DIR", help="as tally run")
    parser.add_argument("--seed", type=int, help="override run.seed")
    add_fault_flags(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="points run at once, each in its own process (default: %(default)s)",
    )
    parser.add_argument(
        "--engine",
        choices=["processes", "dask"],
        default="processes",
        help="where the points run: processes on this machine, or a Dask cluster "
        "(ledger on PostgreSQL) (default: %(default)s)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="--engine dask: the scheduler (tcp://host:8786); without it, a local cluster "
        "of --workers processes",
    )
    parser.add_argument(
        "--metric",
        choices=["profit", "sharpe", "sortino", "calmar", "drawdown", "profit_factor", "cagr"],
        default="profit",
        help="the leaderboard's order (drawdown: smallest first) (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="the runs' operator log lines shown (default: %(default)s)",
    )


def sweep(call: Invocation) -> int:
    from ledger import events
    from ledger.store import init_store, open_store
    from tally import sweep as sweeps
    from tally.cli.cmd_run import add_strategy_path, with_overrides
    from tally.progress import Progress
    from tally.run import context
    from tally.run.backtest import Selection
    from tally.settings import load_settings

    args = call.args
    settings = with_overrides(load_settings(args.config), args)
    if settings.run.mode != "backtest":
        raise InputError(
            f"a sweep runs backtests; the configuration's run.mode is {settings.run.mode}",
            hint="set run.mode: backtest (or leave it out)",
        )
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}", field="workers")
    if args.engine == "dask" and not call.url.startswith("postgresql"):
        raise InputError(
            "--engine dask needs a ledger every worker can reach: a PostgreSQL URL",
            hint="pass --db postgresql+psycopg://... (a SQLite file is local to one machine; "
            "use --engine processes there)",
        )
    strategy_path = None
    if args.strategy_path is not None:
        add_strategy_path(args.strategy_path)
        strategy_path = str(args.strategy_path.resolve())
    grid, points = _points_of(args)
    pairs = parse_pairs(args.pairs)
    selection = Selection(args.timerange, pairs)
    selection.bounds()  # a bad --timerange is refused before anything runs
    base_hash = context.config_hash(settings.run_config())
    data_dir = str(args.data.resolve()) if args.data else None
    data = {
        "data": data_dir,
        "faults": args.faults,
        **selection.recorded(),
    }
    sweep_id = sweeps.sweep_id_of(base_hash, settings.run.seed, data, points)
    jobs = [
        sweeps.PointJob(
            index=index,
            url=call.url,
            settings=_with_params(settings, point).model_dump(mode="json"),
            data_dir=data_dir,
            faults=args.faults,
            timerange=args.timerange,
            pairs=pairs,
            strategy_path=strategy_path,
            log_level=args.log_level,
        )
        for index, point in enumerate(points)
    ]
    init_store(call.url, settings.store)
    stream = f"sweep/{sweep_id}"
    with open_store(call.url, settings=settings.store) as store:
        store.append(
            stream,
            [
                events.SweepStarted(
                    sweep_id=sweep_id, base_config_hash=base_hash, grid=grid, points=points
                )
            ],
            expected_version=None,
            idempotency_key=f"{stream}/start",
        )
    bar = Progress("points", len(jobs))
    try:
        outcomes = sweeps.run_jobs(
            jobs,
            workers=args.workers,
            engine=args.engine,
            scheduler=args.scheduler,
            done=bar.update,
        )
    finally:
        bar.close()
    failed = [(points[o["index"]], o["error"]) for o in outcomes if "error" in o]
    if failed:
        point, error = failed[0]
        raise InputError(
            f"sweep {sweep_id}: {len(failed)} of {len(points)} points failed; the first, "
            f"{point}: {error.get('error')}",
            hint=str(
                error.get("hint") or "fix it and run the same command: finished points are skipped"
            ),
            sweep_id=sweep_id,
        )
    result = sweeps.SweepResult(sweep_id, points, outcomes, args.metric)
    with open_store(call.url, settings=settings.store) as store:
        store.append(
            stream,
            [events.SweepFinished(sweep_id=sweep_id, run_ids=[o["run_id"] for o in outcomes])],
            expected_version=None,
            idempotency_key=f"{stream}/finish",
        )
    board = result.leaderboard()
    if args.json:
        print(json.dumps({"sweep_id": sweep_id, "metric": args.metric, "leaderboard": board}))
        return EXIT_OK
    print(_render(sweep_id, args.metric, board))
    return EXIT_OK


def _points_of(args: argparse.Namespace) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """(the grid, every point): a --grid file's points, then every combination of the grid."""
    from tally import sweep as sweeps

    grid: dict[str, list[Any]] = {}
    points: list[dict[str, Any]] = []
    if args.grid is not None:
        grid, points = sweeps.load_grid_file(args.grid)
    for text in args.param:
        name, values = sweeps.parse_values(text)
        grid[name] = values
    if grid:
        points = [*points, *sweeps.grid_points(grid)]
    if not points:
        raise InputError(
            "a sweep needs parameters", hint="pass --param window=24,48 or --grid sweep.yaml"
        )
    return grid, points


def _with_params(settings: Settings, point: dict[str, Any]) -> Settings:
    """The settings of one point: the strategy's params with the point's on top."""
    strategy = settings.run.strategy
    updated = strategy.model_copy(update={"params": {**strategy.params, **point}})
    return settings.model_copy(
        update={"run": settings.run.model_copy(update={"strategy": updated})}
    )


def _render(sweep_id: str, metric: str, board: list[dict[str, Any]]) -> str:
    from tally.cli.table_text import render

    def ratio(value: Any) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    new = sum(1 for row in board if not row["already"])
    rows = [
        [
            str(row["rank"]),
            " ".join(f"{k}={v}" for k, v in row["params"].items()),
            row["run_id"],
            ratio(row["figures"]["equity_profit_pct"]),
            ratio(row["figures"]["max_drawdown_pct"]),
            ratio(row["figures"]["sharpe"]),
            ratio(row["figures"]["sortino"]),
            ratio(row["figures"]["calmar"]),
            str(row["figures"]["trades"]),
        ]
        for row in board
    ]
    title = (
        f"sweep {sweep_id}: {len(board)} points by {metric} "
        f"({new} run now, {len(board) - new} already in the ledger)"
    )
    headers = [
        "#",
        "params",
        "run",
        "profit %",
        "max dd %",
        "Sharpe",
        "Sortino",
        "Calmar",
        "trades",
    ]
    return render(headers, rows, title=title, numeric=(0, 3, 4, 5, 6, 7, 8))


COMMANDS = [
    Command(
        "sweep",
        "a grid of strategy parameters, every point a reproducible run; a leaderboard",
        sweep,
        _sweep_arguments,
        opens_store=False,
    ),
]
