"""Benchmark: `tally sweep` of 8 points with --workers 2 against the same 8 points one
after another, each a fresh `tally sweep` process into a fresh SQLite ledger.

    python bench/sweep.py [--data ../shared/data/ohlcv] [--workers 2]

Issue 14's target: >= 1.7x faster with 2 workers on 2 cores. The points are Momentum's
window x margin over the seven real files (5,760 cycles each), so every run is as long as
the main benchmark's backtest.
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


def timed(folder: Path, data: Path, workers: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [TALLY, "sweep", *GRID, "--data", str(data), "--workers", str(workers)],
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
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        serial = timed(Path(one), args.data, 1)
        parallel = timed(Path(many), args.data, args.workers)
    print("8 points (window x margin) over the 7 real files, 5,760 cycles each")
    print(f"  one after another (--workers 1)   {serial:6.1f} s")
    print(f"  --workers {args.workers}                        {parallel:6.1f} s")
    print(f"  speed-up                          {serial / parallel:6.2f}x   target >= 1.7x")


if __name__ == "__main__":
    main()
