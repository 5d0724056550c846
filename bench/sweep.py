"""Benchmark: `tally sweep` of 8 points with --workers 2 against the same 8 runs one after
another, each way into a fresh SQLite ledger.

    python bench/sweep.py [--data ../shared/data/ohlcv] [--workers 2]

One after another is measured two ways: `tally sweep --workers 1` (one process, which reads
the data once for all points) and 8 `tally run` processes with each point's parameters in a
config file (what a user without `tally sweep` would do). Issue 14's target: >= 1.7x faster
with 2 workers on 2 cores. The points are Momentum's window x margin over the seven real
files (5,760 cycles each), so every run is as long as the main benchmark's backtest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TALLY = str(Path(sys.executable).with_name("tally"))
GRID = ["--param", "window=24,48,72,96", "--param", "margin=0.005,0.01"]
POINTS = [(window, margin) for window in (24, 48, 72, 96) for margin in ("0.005", "0.01")]


def timed(folder: Path, data: Path, workers: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [TALLY, "sweep", *GRID, "--data", str(data), "--workers", str(workers)],
        check=True, capture_output=True, cwd=folder,
    )  # fmt: skip
    return time.perf_counter() - started


def timed_runs(folder: Path, data: Path) -> float:
    """The same 8 points as 8 `tally run` processes, one after another, into one ledger."""
    configs = []
    for window, margin in POINTS:
        config = folder / f"point-{window}-{margin}.yaml"
        config.write_text(
            f"run:\n  strategy:\n    params: {{window: {window}, margin: {margin}}}\n",
            encoding="utf-8",
        )
        configs.append(config)
    started = time.perf_counter()
    for config in configs:
        subprocess.run(
            [TALLY, "run", "--config", str(config), "--data", str(data)],
            check=True, capture_output=True, cwd=folder,
        )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ohlcv")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}: pass --data DIR")
    with (
        tempfile.TemporaryDirectory() as runs,
        tempfile.TemporaryDirectory() as one,
        tempfile.TemporaryDirectory() as many,
    ):
        separate = timed_runs(Path(runs), args.data)
        serial = timed(Path(one), args.data, 1)
        parallel = timed(Path(many), args.data, args.workers)
    print("8 points (window x margin) over the 7 real files, 5,760 cycles each")
    print(f"  8 tally run processes, one after another  {separate:6.1f} s")
    print(f"  tally sweep --workers 1                   {serial:6.1f} s")
    print(f"  tally sweep --workers {args.workers}                   {parallel:6.1f} s")
    print(
        f"  speed-up of --workers {args.workers}: {separate / parallel:.2f}x the separate runs, "
        f"{serial / parallel:.2f}x --workers 1   (target >= 1.7x)"
    )


if __name__ == "__main__":
    main()
