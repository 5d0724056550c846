"""Benchmark: the whole `tally run --data ../shared/data/ohlcv` process against freqtrade's
`backtesting` of the same seven pairs over the same candles, each timed in turn.

    python bench/vs_freqtrade.py [--freqtrade-python PATH | --install DIR] [--repeat 3]

freqtrade is never a dependency of this project. Give the Python of an environment that
has it (`--freqtrade-python`), or `--install DIR` to make one there (`pip install
freqtrade==2026.9`, about a minute, from the package registry). freqtrade runs with no
network as ../shared/data/freqtrade/README.md describes (its run_offline.py stubs the
market list), on its own data directory of those candles, over all of them (no
--timerange), without exporting. Tally runs its default strategy into a fresh SQLite
ledger each time, then into an existing empty one (made by `tally init`, copied in before
each run). All are whole processes, start-up included; best of --repeat.
Issue 14's target: Tally's wall time <= 0.5x freqtrade's.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TALLY = str(Path(sys.executable).with_name("tally"))


def best(
    argv: list[str], cwd: Path, repeat: int, ledger: Path | None = None, start: Path | None = None
) -> float:
    """Best wall time of ``repeat`` runs; before each (untimed) ``ledger`` is removed, or
    replaced by a copy of ``start``."""
    times = []
    for _ in range(repeat):
        if ledger is not None:
            ledger.unlink(missing_ok=True)
            if start is not None:
                shutil.copyfile(start, ledger)
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return min(times)


def freqtrade_python(args: argparse.Namespace) -> str:
    if args.freqtrade_python:
        return str(args.freqtrade_python)
    if not args.install:
        sys.exit("pass --freqtrade-python PATH, or --install DIR to install freqtrade there")
    python = args.install / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(args.install)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "freqtrade==2026.9"], check=True)
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freqtrade-python", type=Path)
    parser.add_argument("--install", type=Path, metavar="DIR")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = freqtrade_python(args)
    # Both tools run from compiled bytecode, as installed packages do: pip compiled
    # freqtrade's at install; an editable install compiles Tally's at its first run, unless
    # PYTHONDONTWRITEBYTECODE is set (as on the development machine), so compile it here.
    for package in ("ledger", "ingest", "projections", "tally", "migrations"):
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        work = folder / "freqtrade"
        shutil.copytree(SHARED / "freqtrade", work)
        freqtrade = str(Path(python).with_name("freqtrade"))
        subprocess.run(
            [freqtrade, "create-userdir", "--userdir", "user_data"],
            check=True, capture_output=True, cwd=work,
        )  # fmt: skip
        theirs = best(
            [python, "run_offline.py", "backtesting", "-c", "config.json", "--strategy",
             "SampleStrategy", "--datadir", "data/binance", "--export", "none"],
            work, args.repeat,
        )  # fmt: skip
        run = [TALLY, "run", "--data", str(SHARED / "ohlcv")]
        ledger = folder / "tally.db"
        ours = best(run, folder, args.repeat, ledger)
        # A ledger that already exists (made by `tally init`, as by an earlier run): what
        # every run after a machine's first meets. Empty, so the run is new to it.
        empty = folder / "empty.db"
        subprocess.run(
            [TALLY, "init", "--db", f"sqlite:///{empty}"], check=True, capture_output=True
        )
        existing = best(run, folder, args.repeat, ledger, start=empty)
    print("7 BTC pairs, 5-minute candles 2018-01-10 .. 2018-01-30, whole processes, best of "
          f"{args.repeat}")  # fmt: skip
    print(f"  freqtrade backtesting (records nothing)                  {theirs:6.2f} s")
    print(f"  tally run --data, new ledger (records every event)       {ours:6.2f} s"
          f"   ratio {ours / theirs:.2f}x   target <= 0.5x")  # fmt: skip
    print(f"  tally run --data, existing ledger (records every event)  {existing:6.2f} s"
          f"   ratio {existing / theirs:.2f}x   target <= 0.5x")  # fmt: skip


if __name__ == "__main__":
    main()
