"""Benchmark: one pricing cycle over many symbols with failing feeds, and its recording cost.

    python bench/ingest.py [--symbols 200] [--failing 0.2] [--runs 20]

1. A cycle over N symbols where a share of them fail every attempt, on real asyncio with
   real sleeps (backoff 100/200/400 ms with +-20% jitter: 4 attempts, 3 retries), concurrent
   (as Tally runs it) beside the same symbols fetched one after another with the same retry
   policy, in the same run. Breakers are set so they never trip: this measures retries.
2. The recording cost of a healthy N-symbol cycle: every event of the cycle appended in one
   transaction to a SQLite ledger (durable), and the same with the read-back and the log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.settings import BreakerSettings, IngestSettings, RetrySettings  # noqa: E402
from ingest.simulated import SimulatedFaults, SimulatedSource  # noqa: E402
from ingest.snapshot import SnapshotTaker  # noqa: E402
from ledger import init_store, open_store  # noqa: E402
from ledger.clock import SimulatedClock, SystemClock  # noqa: E402
from tally.run.commit import record_snapshot  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def settings(concurrency: int) -> IngestSettings:
    return IngestSettings(
        retry=RetrySettings(
            fetch_attempts_max=4,
            backoff_ms_base=100,
            backoff_ms_cap=1000,
            backoff_jitter_ratio=0.2,
            fetch_budget_ms_max=10_000,
        ),
        breaker=BreakerSettings(
            failures_consecutive_max=1000, failure_rate_max=1.0, window_calls=1000, calls_min=1000
        ),
        fetch_concurrency_max=concurrency,
    )


def timed_cycle(symbols: list[str], failing: frozenset[str], concurrency: int) -> tuple[float, int]:
    clock = SystemClock()
    # The simulated market starts now: its prices are a walk from its start time.
    source = SimulatedSource(
        "venue",
        seed=1,
        clock=clock,
        start=clock.now(),
        faults=SimulatedFaults(always_failing=failing, latency_ms=2),
    )
    taker = SnapshotTaker([source], settings=settings(concurrency), clock=clock, seed=1)
    started = time.perf_counter()
    snapshot = asyncio.run(taker.take(symbols, 0))
    elapsed = time.perf_counter() - started
    assert snapshot.failed == len(failing) and snapshot.fresh == len(symbols) - len(failing)
    return elapsed, len(snapshot.events)


def recording_cost(symbols: list[str], runs: int) -> tuple[list[float], list[float], int]:
    logging.getLogger("tally").setLevel(logging.CRITICAL)  # measure the work, not a terminal
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/ledger.db"
        init_store(url)
        clock = SimulatedClock(T0)
        source = SimulatedSource("venue", seed=1, clock=clock, start=T0)
        taker = SnapshotTaker([source], settings=settings(64), clock=clock, seed=1)
        append_ms, full_ms, count = [], [], 0
        with open_store(url, clock=clock) as store:
            for cycle in range(runs):
                snapshot = asyncio.run(taker.take(symbols, cycle))
                count = len(snapshot.events)
                started = time.perf_counter()
                store.append_many(snapshot.batches())
                append_ms.append((time.perf_counter() - started) * 1000)
                snapshot = asyncio.run(taker.take(symbols, 10_000 + cycle))
                started = time.perf_counter()
                record_snapshot(store, snapshot, run_id="bench")
                full_ms.append((time.perf_counter() - started) * 1000)
    return append_ms, full_ms, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--failing", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    symbols = [f"S{i:04}/USDT" for i in range(args.symbols)]
    failing = frozenset(
        symbols[:: max(1, round(1 / args.failing))][: round(args.symbols * args.failing)]
    )
    concurrent, events = timed_cycle(symbols, failing, concurrency=args.symbols)
    print(
        f"cycle over {args.symbols} symbols, {len(failing)} failing every attempt "
        f"(4 attempts, sleeps 100/200/400 ms +-20%, real asyncio):"
    )
    print(f"  concurrent  {concurrent:7.3f} s   ({events} events)")
    if not args.skip_sequential:
        sequential, _ = timed_cycle(symbols, failing, concurrency=1)
        print(f"  sequential  {sequential:7.3f} s")
        print(f"  ratio       {sequential / concurrent:7.1f}x faster concurrent")
    append_ms, full_ms, count = recording_cost(symbols, args.runs)
    print(
        f"recording a healthy {args.symbols}-symbol cycle ({count} events, one transaction, "
        f"SQLite synchronous=FULL), {args.runs} cycles:"
    )
    for label, measured in (("append_many", append_ms), ("with read-back and logs", full_ms)):
        ordered = sorted(measured)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"  {label:<24} median {statistics.median(ordered):6.2f} ms   p95 {p95:6.2f} ms")


if __name__ == "__main__":
    main()
