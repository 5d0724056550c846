"""Benchmark: a long, wide backtest - 50 symbols over 90 days of 5-minute candles (25,920
cycles), the input built by the sample generator - its wall time, events/s at the start,
middle and end, and its peak resident memory.

    python bench/scale.py [--symbols 50] [--days 90]
    python bench/scale.py --files [--symbols 50] [--days 90]

Issue 14's target: peak RSS under 300 MB and a constant events/s from first to last cycle.
Runs in-process into a fresh durable SQLite ledger; faults are on, as for every sample run.

``--files`` writes the same generated candles out as CSV files first (not timed) and runs
the whole ``tally run --data FOLDER`` process on them, as a user with their own files
would: start-up, loading the files and the closing summary included; no faults (files have
none unless asked). It prints the process's wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.candles import generate_sample, write_candles  # noqa: E402
from ledger import init_store, open_store  # noqa: E402
from tally.run.backtest import run_backtest  # noqa: E402
from tally.settings import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--files", action="store_true", help="run `tally run --data` on CSVs")
    args = parser.parse_args()
    settings = load_settings()
    symbols = [f"S{i:02d}/USDT" for i in range(args.symbols)]
    if args.files:
        run_files(settings.run.sample, symbols, args.days)
        return
    sample = settings.run.sample.model_copy(update={"symbols": symbols, "days": args.days})
    run = settings.run.model_copy(update={"sample": sample})
    settings = settings.model_copy(update={"run": run})
    marks: list[tuple[float, int, int]] = []  # (wall s, cycles done, ledger head)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/scale.db"
        init_store(url)
        with open_store(url) as store:
            started = time.perf_counter()

            def progress(done: int, _total: int) -> None:
                marks.append((time.perf_counter() - started, done, store.head()))

            summary = run_backtest(
                store,
                settings.run,
                settings.ingest,
                config=settings.run_config(),
                progress=progress,
            )
            took = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cycles = marks[-1][1] if marks else 0
    print(
        f"{args.symbols} symbols x {args.days} days of 5m candles: {cycles:,} cycles, "
        f"{getattr(summary, 'events', 0):,} events in {took:.1f} s, peak RSS {peak_mb:.0f} MB "
        "(target < 300 MB)"
    )
    tenth = max(len(marks) // 10, 1)
    for name, at in (("start", tenth), ("middle", len(marks) // 2), ("end", len(marks) - 1)):
        (t0, c0, h0), (t1, c1, h1) = marks[at - tenth], marks[at]
        print(
            f"  {name:<6} cycles {c0:,}..{c1:,}: {(h1 - h0) / (t1 - t0):,.0f} events/s, "
            f"{(c1 - c0) / (t1 - t0):,.0f} cycles/s"
        )


def run_files(sample: Any, symbols: list[str], days: int) -> None:
    """The generated candles as CSV files, then ``tally run --data`` on them, timed whole."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        candle_count = 0
        for symbol in symbols:  # one at a time: each symbol's candles are its own seed's
            candles = generate_sample(seed=7, start=sample.start, days=days, symbols=(symbol,))
            write_candles(candles, data)
            candle_count += len(candles.series[symbol])
        size_mb = sum(p.stat().st_size for p in data.iterdir()) / 1e6
        tally = Path(sys.executable).with_name("tally")
        command = [str(tally), "run", "--db", f"sqlite:///{folder}/files.db", "--data", str(data)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        took = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    events = next(line for line in done.stdout.splitlines() if line.strip().startswith("events"))
    print(
        f"tally run --data: {len(symbols)} CSV files x {days} days of 5m candles "
        f"({candle_count:,} candles, {size_mb:.0f} MB): {took:.1f} s, peak RSS {peak_mb:.0f} MB"
        f"\n  {events.strip()}"
    )


if __name__ == "__main__":
    main()
