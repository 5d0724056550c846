"""Benchmark: a backtest over the seven real OHLCV files, and its reproduction.

    python bench/backtest.py [--data ../shared/data/ohlcv] [--pg URL]

Targets (issue 14; issue 5 asked for 10 s and 15 s): the backtest (5,760 five-minute cycles,
every fetch, snapshot, trade, fee and validation recorded, durable SQLite) in <= 2.0 s, its
`tally repro check` in <= 3 s. Both are measured in-process (the CLI adds its start-up,
about 0.4 s, printed separately) and print events/s and cycles/s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger import init_store, open_store  # noqa: E402
from tally import repro  # noqa: E402
from tally.run.backtest import run_backtest  # noqa: E402
from tally.settings import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ohlcv")
    parser.add_argument("--pg", metavar="URL", help="also re-execute into this empty database")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}: pass --data DIR")
    settings = load_settings()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        init_store(url)
        with open_store(url) as store:
            started = time.perf_counter()
            summary = run_backtest(
                store,
                settings.run,
                settings.ingest,
                config=settings.run_config(),
                data_dir=args.data,
            )
            took = time.perf_counter() - started
            cycles = summary.counts["cycles"]
            print(
                f"backtest: {len(list(args.data.glob('*.csv')))} files, {cycles:,} cycles, "
                f"{summary.events:,} events, {summary.counts['trades']:,} trades in "
                f"{took:.2f} s  ({summary.events / took:,.0f} events/s, "
                f"{cycles / took:,.0f} cycles/s)  target <= 2.0 s: "
                f"{'met' if took <= 2.0 else 'MISSED'}"
            )
            started = time.perf_counter()
            result = repro.check(store, summary.run_id, data_dir=args.data)
            took_repro = time.perf_counter() - started
            assert result.reproduced, result.divergence
            print(
                f"repro check: {result.events:,} events re-executed and compared in "
                f"{took_repro:.2f} s  ({result.events / took_repro:,.0f} events/s, "
                f"{cycles / took_repro:,.0f} cycles/s)  target <= 3 s: "
                f"{'met' if took_repro <= 3 else 'MISSED'}"
            )
            if args.pg:
                started = time.perf_counter()
                on_pg = repro.check(store, summary.run_id, data_dir=args.data, scratch_url=args.pg)
                print(
                    f"repro check into PostgreSQL: {time.perf_counter() - started:.2f} s, "
                    f"same fingerprint: {on_pg.replayed_fingerprint == summary.fingerprint}"
                )
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import tally.run.backtest, tally.cli"], check=True, cwd=ROOT
    )
    print(
        f"(the CLI's start-up, importing tally.cli and tally.run.backtest: "
        f"{time.perf_counter() - started:.2f} s)"
    )


if __name__ == "__main__":
    main()
