"""Benchmark: does a run, or the report of a run, get slower as the ledger fills with runs?

    python bench/many_runs.py [--runs 200] [--repeat 3]

Fills a durable SQLite ledger with --runs backtests of the default sample (seeds 1..N,
about 5,700 events each, in-process), then times whole processes, best of --repeat, each
beside the same command on a ledger that holds nothing else:
- `tally run --seed S` (a new run: start-up, the check that the run is new, the run and
  the results it ends with), into the full ledger and into an empty one;
- `tally report summary --run R` of the first run of the full ledger (the oldest, with
  every other run after it), and of the same run alone in a ledger of its own.
A sweep writes its points into one ledger, so a night's sweep is a ledger of many runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger import init_store, open_store  # noqa: E402
from tally.run.backtest import RunSummary, run_backtest  # noqa: E402
from tally.settings import load_settings  # noqa: E402

TALLY = str(Path(sys.executable).with_name("tally"))


def fill(url: str, seeds: range) -> tuple[str, int]:
    """Run a backtest of each seed into ``url``; (the first run's id, the ledger's head)."""
    settings = load_settings()
    first = ""
    started = time.perf_counter()
    with open_store(url) as store:
        for done, seed in enumerate(seeds, start=1):
            run = settings.run.model_copy(update={"seed": seed})
            summary = run_backtest(store, run, settings.ingest, config=settings.run_config())
            assert isinstance(summary, RunSummary)
            first = first or summary.run_id
            if done % 20 == 0 or done == len(seeds):
                print(
                    f"  filled {done:,} of {len(seeds):,} runs, {store.head():,} events, "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
        return first, store.head()


def best(argv: list[str], repeat: int, before: Callable[[], None] | None = None) -> float:
    """Best wall time of ``repeat`` runs of ``argv``; ``before`` is called untimed first."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the runs' fault lines: the figures are the output
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        full, empty, alone = (f"sqlite:///{folder / name}" for name in ("full", "empty", "alone"))
        for url in (full, empty, alone):
            init_store(url)
        print(f"filling a ledger with {args.runs:,} runs of the default sample")
        first_run, head = fill(full, range(1, args.runs + 1))
        fill(alone, range(1, 2))
        template = folder / "empty.template"
        shutil.copyfile(folder / "empty", template)
        # New seeds each time into the full ledger (a new run each, 0.5% more events);
        # into an empty ledger, a fresh copy of it before each run.
        seeds = iter(range(args.runs + 1, args.runs + 1 + args.repeat))
        into_full: list[float] = []
        for _ in range(args.repeat):
            argv = [TALLY, "run", "--db", full, "--seed", str(next(seeds))]
            into_full.append(best(argv, 1))

        def restore() -> None:
            for stale in ("empty-wal", "empty-shm"):
                (folder / stale).unlink(missing_ok=True)
            shutil.copyfile(template, folder / "empty")

        into_empty = best(
            [TALLY, "run", "--db", empty, "--seed", str(args.runs + 1)], args.repeat, restore
        )
        report = [TALLY, "report", "summary", "--run", first_run, "--db"]
        of_full = best([*report, full], args.repeat)
        of_alone = best([*report, alone], args.repeat)
    print(f"{args.runs:,} runs, {head:,} events in the full ledger; whole processes, best of "
          f"{args.repeat}")  # fmt: skip
    print(f"  tally run (a new run), empty ledger                {into_empty:6.2f} s")
    print(f"  tally run (a new run), full ledger                 {min(into_full):6.2f} s   "
          f"ratio {min(into_full) / into_empty:.2f}x")  # fmt: skip
    print(f"  report summary of a run, in a ledger of its own    {of_alone:6.2f} s")
    print(f"  report summary of the first run, full ledger       {of_full:6.2f} s   "
          f"ratio {of_full / of_alone:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
