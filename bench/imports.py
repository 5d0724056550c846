"""Benchmark: importing 1,000,000 OHLCV rows and 1,000,000 fills, time and peak memory.

    python bench/imports.py [--rows 1000000]

Issue 11's targets: each import streams with flat memory (under 300 MB peak) in <= 20 s,
while staying all or nothing (one transaction). The files are generated here, seeded; each
import runs as `tally import ...` in a fresh process on a fresh SQLite ledger, and its peak
resident memory is the process's own (getrusage of the child).
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_MS = 1_514_764_800_000  # 2018-01-01


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(11)
    candles = folder / "ohlcv"
    candles.mkdir()
    with (candles / "BTC_USDT-1m.csv").open("w") as out:
        out.write("timestamp,open,high,low,close,volume\n")
        price = 10_000.0
        for i in range(rows):
            close = round(price * (1 + rng.uniform(-0.001, 0.001)), 2)
            high, low = max(price, close) + 0.5, min(price, close) - 0.5
            out.write(
                f"{START_MS + i * 60_000},{price:.2f},{high:.2f},{low:.2f},{close:.2f},"
                f"{rng.uniform(0, 5):.4f}\n"
            )
            price = close
    fills = folder / "fills.csv"
    with fills.open("w") as out:
        out.write("timestamp,symbol,side,qty,price,fee,fee_asset\n")
        for i in range(rows):
            out.write(
                f"{START_MS + i * 60_000},BTC/USDT,buy,0.001,{10_000 + i % 997}.5,0.01,USDT\n"
            )
    return candles, fills


def timed(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak MB) of one command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return took, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    tally = [sys.executable, "-m", "tally"]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        candles, fills = write_files(folder, rows)
        for what, args in (
            ("ohlcv", ["import", "ohlcv", str(candles)]),
            ("fills", ["import", "trades", str(fills)]),
        ):
            url = f"sqlite:///{folder / (what + '.db')}"
            subprocess.run([*tally, "init", "--db", url], check=True, capture_output=True)
            took, peak = timed([*tally, *args, "--db", url])
            print(
                f"import {what}: {rows:,} rows in {took:.1f} s, peak {peak:,.0f} MB  "
                f"(targets <= 20 s: {'met' if took <= 20 else 'MISSED'}, < 300 MB: "
                f"{'met' if peak < 300 else 'MISSED'})"
            )


if __name__ == "__main__":
    main()
