"""Crash benchmark: SIGKILL a backtest at seeded random moments, resume it, compare.

    python bench/crash_resume.py [--data ../shared/data/ohlcv] [--kills 50] [--seed 10]

Each trial records the backtest of the real files into a fresh SQLite ledger with the
`tally` command, kills it with SIGKILL after a seeded random delay, checks the ledger
(`tally verify`; every sealed snapshot has its cycle outcome, so no cycle is partial), notes
its head (position and hash), resumes it with the same command and checks that the head is
still there unchanged (no committed event lost) and that the fingerprint is the one-go
run's. Prints one line a trial and the totals.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger import open_store  # noqa: E402

TALLY = [sys.executable, "-m", "tally"]


def run(url: str, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TALLY, *extra, "--db", url]
        if extra
        else [*TALLY, "run", "--json", "--db", url, "--data", str(data), "--log-level", "error"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def whole(url: str) -> tuple[int, int, int, bytes]:
    """(sealed snapshots, cycle outcomes, head position, head hash)."""
    with open_store(url) as store:
        sealed = sum(1 for _ in store.query(types=("SnapshotSealed",)))
        outcomes = sum(
            1
            for _ in store.query(
                types=("ValidationPassed", "PortfolioReconciled", "CycleDiscarded")
            )
        )
        return sealed, outcomes, store.head(), store.head_hash()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ohlcv")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data}: pass --data DIR")
    rng = random.Random(args.seed)
    totals = {"killed": 0, "partial": 0, "lost": 0, "resumed": 0, "unverified": 0}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        one_go = run(f"sqlite:///{folder}/one-go.db", args.data)
        full_s = time.perf_counter() - started
        expected = json.loads(one_go.stdout)["fingerprint"]
        print(f"one go: {full_s:.1f} s, fingerprint {expected[:16]}")
        for trial in range(args.kills):
            url = f"sqlite:///{folder}/trial-{trial}.db"
            delay = rng.uniform(0.3, full_s)
            process = subprocess.Popen(
                [*TALLY, "run", "--db", url, "--data", str(args.data), "--log-level", "error"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            time.sleep(delay)
            killed = process.poll() is None
            process.kill()
            process.wait()
            totals["killed"] += killed
            head, head_hash = 0, b""
            if run(url, args.data, "verify").returncode == 0:
                sealed, outcomes, head, head_hash = whole(url)
                totals["partial"] += sealed != outcomes
            elif Path(f"{folder}/trial-{trial}.db").exists():
                totals["unverified"] += 1
            resumed = run(url, args.data)
            fingerprint = (
                json.loads(resumed.stdout)["fingerprint"] if resumed.returncode == 0 else ""
            )
            with open_store(url) as store:
                store.verify()
                kept = head == 0 or next(iter(store.read_all(head, head))).hash == head_hash
            totals["lost"] += not kept
            totals["resumed"] += fingerprint == expected
            when = "" if killed else " (had finished)"
            verdict = "to the one-go fingerprint" if fingerprint == expected else "WRONG"
            print(
                f"trial {trial + 1:>2}: killed at {delay:4.1f} s{when}, head {head:>6,}, "
                f"resumed {verdict}"
            )
    print(
        f"{totals['killed']} of {args.kills} kills landed mid-run; partial cycles "
        f"{totals['partial']}; committed events lost {totals['lost']}; unverifiable ledgers "
        f"{totals['unverified']}; resumed to the one-go fingerprint {totals['resumed']} "
        f"of {args.kills}"
    )


if __name__ == "__main__":
    main()
