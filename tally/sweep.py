"""``tally sweep``: a grid of strategy parameters over one data set, every point a normal run.

Each point is an ordinary backtest with ``run.strategy.params`` changed: its own run id,
events, fingerprint and ``repro check``. The sweep itself is recorded (``SweepStarted`` with
the grid and its points, ``SweepFinished`` with their run ids) under a sweep id derived from
the base configuration, the data and the points, so running the same sweep again records
nothing new, and a sweep interrupted halfway resumes: finished points are found in the
ledger and skipped, an interrupted point resumes as any run does.

Points run one after another in-process, in parallel processes on this machine
(``--workers N``), or on a Dask cluster (``--engine dask``), each worker opening the ledger
by its URL. Writers to one SQLite file take turns on its write lock (each run commits whole
groups of cycles); a cluster needs a ledger every worker can reach: PostgreSQL.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import InputError, TallyError

METRICS = {
    # name: (key in the summary's totals, larger is better)
    "profit": ("equity_profit_pct", True),
    "sharpe": ("sharpe", True),
    "sortino": ("sortino", True),
    "calmar": ("calmar", True),
    "drawdown": ("max_drawdown_pct", False),
    "profit_factor": ("profit_factor", True),
    "cagr": ("cagr_pct", True),
}
FIGURES = (
    "equity_profit_pct",
    "max_drawdown_pct",
    "sharpe",
    "sortino",
    "calmar",
    "profit_factor",
    "cagr_pct",
    "trades",
    "win_pct",
)


def parse_values(text: str) -> tuple[str, list[Any]]:
    """``window=24,48,96`` -> ("window", [24, 48, 96]); a value that is not an integer stays
    text, so a decimal parameter keeps its exact digits (``margin=0.005``)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise InputError(
            f"--param {text!r} is not NAME=V1,V2,...",
            hint="e.g. --param window=24,48,96 --param margin=0.005,0.01",
        )
    return name, [_value(v.strip()) for v in values.split(",") if v.strip()]


def _value(text: str) -> Any:
    try:
        number = int(text)
    except ValueError:
        return text
    return number if str(number) == text else text


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the first parameter varying slowest, in the order given."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def load_grid_file(path: Path) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """A YAML file with ``params: {name: [values]}`` (a grid) or ``points: [{...}, ...]``."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"cannot read the sweep file {path}: {e}", file=str(path)) from e
    if not isinstance(document, dict) or not ({"params", "points"} & set(document)):
        raise InputError(
            f"{path.name} holds neither params: nor points:",
            hint="write params: {window: [24, 48]} or points: [{window: 24}, {window: 48}]",
            file=str(path),
        )
    grid = document.get("params") or {}
    points = document.get("points") or []
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise InputError(
            f"{path.name}: params: must map each name to a list of values", file=str(path)
        )
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise InputError(f"{path.name}: points: must be a list of mappings", file=str(path))
    return {str(k): list(v) for k, v in grid.items()}, [dict(p) for p in points]


def sweep_id_of(
    base_config_hash: str, seed: int, data: dict[str, Any], points: list[dict[str, Any]]
) -> str:
    text = json.dumps([base_config_hash, seed, data, points], sort_keys=True, default=str)
    return "sweep-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PointJob:
    """One point, as a worker process gets it (plain values only: it is pickled)."""

    index: int
    url: str
    settings: dict[str, Any]  # the point's whole configuration, as JSON values
    data_dir: str | None
    faults: bool | None
    timerange: str | None
    pairs: tuple[str, ...]
    strategy_path: str | None
    log_level: str = "error"


def run_point(job: PointJob) -> dict[str, Any]:
    """Plan and record one point's run, then its summary figures. A user error comes back
    as a value (exceptions with context do not cross process boundaries well)."""
    from ledger.store import open_store
    from projections import results
    from tally.logs import configure as configure_logs
    from tally.run.backtest import Selection, execute_backtest, plan_backtest
    from tally.run.lifecycle import StoppedRun
    from tally.settings import Settings

    if job.strategy_path and job.strategy_path not in sys.path:
        sys.path.insert(0, job.strategy_path)
    configure_logs(job.log_level, log_file=None, fmt="text")
    try:
        settings = Settings.model_validate(job.settings)
        plan = plan_backtest(
            settings.run,
            settings.ingest,
            config=settings.run_config(),
            data_dir=Path(job.data_dir) if job.data_dir else None,
            faults=job.faults,
            selection=Selection(job.timerange, job.pairs),
        )
        with open_store(job.url, settings=settings.store) as store:
            summary = execute_backtest(store, plan, runner=settings.runner)
            if isinstance(summary, StoppedRun):  # not finished: the same command resumes it
                return {"index": job.index, "error": {"error": "the point's run was stopped"}}
            found = results.load_summary(
                store,
                summary.account,
                run_id=summary.run_id,
                span=(summary.first_position, summary.last_position),
            )
            totals = found["totals"] if found is not None else {}
    except TallyError as e:
        return {"index": job.index, "error": e.as_dict()}
    return {
        "index": job.index,
        "run_id": summary.run_id,
        "already": summary.already_recorded,
        "fingerprint": summary.fingerprint,
        "equity_end": str(summary.equity_end),
        "quote": summary.quote,
        "figures": {k: totals.get(k) for k in FIGURES},
    }


@dataclass
class SweepResult:
    sweep_id: str
    points: list[dict[str, Any]]
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # in the points' order
    metric: str = "profit"

    def leaderboard(self) -> list[dict[str, Any]]:
        """The points best first by ``metric``; a point without the figure comes last."""
        key, larger = METRICS[self.metric]
        rows = [
            {"rank": 0, "params": point, **outcome}
            for point, outcome in zip(self.points, self.outcomes, strict=True)
        ]
        known = [r for r in rows if r["figures"].get(key) is not None]
        unknown = [r for r in rows if r["figures"].get(key) is None]
        known.sort(key=lambda r: float(r["figures"][key]), reverse=larger)
        for rank, row in enumerate([*known, *unknown], start=1):
            row["rank"] = rank
        return [*known, *unknown]


def run_jobs(
    jobs: Sequence[PointJob],
    *,
    workers: int,
    engine: str,
    scheduler: str | None,
    done: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Every job's outcome, in the jobs' order; ``done(n)`` after each one finishes."""
    outcomes: dict[int, dict[str, Any]] = {}
    for outcome in _outcomes(jobs, workers=workers, engine=engine, scheduler=scheduler):
        outcomes[outcome["index"]] = outcome
        done(len(outcomes))
    return [outcomes[job.index] for job in jobs]


def _outcomes(
    jobs: Sequence[PointJob], *, workers: int, engine: str, scheduler: str | None
) -> Iterator[dict[str, Any]]:
    if engine == "dask":
        yield from _on_dask(jobs, workers, scheduler)
        return
    if workers <= 1:
        for job in jobs:
            yield run_point(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a worker starts clean, never sharing the parent's open database connections.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_point, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _on_dask(
    jobs: Sequence[PointJob], workers: int, scheduler: str | None
) -> Iterator[dict[str, Any]]:
    import importlib
    import logging

    try:  # typed as Any: distributed ships no annotations mypy could check calls against
        dask: Any = importlib.import_module("distributed")
    except ImportError as e:
        raise InputError(
            "--engine dask needs Dask's distributed scheduler",
            hint="pip install 'tally-ledger[dask]' (or dask[distributed])",
        ) from e
    cluster = None
    if scheduler:
        client = dask.Client(scheduler)
    else:  # a cluster of local worker processes, one thread each
        cluster = dask.LocalCluster(
            n_workers=max(workers, 1),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # A worker's heartbeat can race the scheduler's shutdown and log a traceback at
            # ERROR after a sweep that went well (dask/distributed#7105, #9032): seen once in
            # CI. A point's own failure still reaches us through its future.
            silence_logs=logging.CRITICAL,
        )
        client = dask.Client(cluster)
    try:
        futures = client.map(run_point, list(jobs), pure=False)
        for future in dask.as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
