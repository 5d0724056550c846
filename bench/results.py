"""Benchmark: the trader's view, each as a fresh `tally` process, start-up included.

    python bench/results.py [--trades 10000]

Issue 13's targets:
- `tally report summary` and `tally report html` of the backtest over the seven real files
  of ../shared/data/ohlcv (5,760 cycles): each <= 2 s;
- `tally import freqtrade` of an export with 10,000 trades: <= 3 s. The export is the real
  one of ../shared/data/freqtrade/ (54 trades) with its trades repeated, each copy 20 days
  after the one before, until there are --trades of them.
No peer is named for these figures; each is an absolute time on this machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TALLY = str(Path(sys.executable).with_name("tally"))
SHIFT_MS = 20 * 86_400_000


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - started


def big_export(folder: Path, trades: int) -> Path:
    """The real export's JSON with its trades repeated up to ``trades``, shifted in time."""
    with zipfile.ZipFile(SHARED / "freqtrade" / "sample-strategy-7pairs.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".json") and "config" not in n)
        export = json.loads(archive.read(name))
    strategy = export["strategy"]["SampleStrategy"]
    base = strategy["trades"]
    out = []
    for i in range(trades):
        trade = copy.deepcopy(base[i % len(base)])
        shift = (i // len(base)) * SHIFT_MS
        for order in trade["orders"]:
            order["order_filled_timestamp"] += shift
        trade["open_timestamp"] = trade.get("open_timestamp", 0) + shift
        out.append(trade)
    strategy["trades"] = out
    path = folder / "export.json"
    path.write_text(json.dumps(export))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        ran = subprocess.run(
            [TALLY, "run", "--data", str(SHARED / "ohlcv"), "--json"],
            check=True, capture_output=True, text=True, cwd=folder,
        )  # fmt: skip
        run_id = json.loads(ran.stdout)["run_id"]
        summary = min(
            timed([TALLY, "report", "summary", "--run", run_id], folder) for _ in range(3)
        )
        page = min(
            timed([TALLY, "report", "html", "--run", run_id, "--out", "r.html"], folder)
            for _ in range(3)
        )
        size = (folder / "r.html").stat().st_size
        export = big_export(folder, args.trades)
        imports = []
        for attempt in range(3):
            db = f"sqlite:///{folder / f'ft{attempt}.db'}"
            subprocess.run([TALLY, "init", "--db", db], check=True, capture_output=True)
            imports.append(timed([TALLY, "import", "freqtrade", str(export), "--db", db], folder))
    print("issue 13, best of 3 fresh processes each, start-up included")
    print(f"  report summary, 7-file backtest (5,760 cycles)  {summary:6.2f} s   target <= 2 s")
    print(f"  report html, same run ({size / 1e6:.1f} MB page)     {page:6.2f} s   target <= 2 s")
    print(
        f"  import freqtrade, {args.trades:,} trades                {min(imports):6.2f} s   "
        "target <= 3 s"
    )


if __name__ == "__main__":
    main()
