"""Cycles committed to a real ledger: atomic, logged from what was committed, and breakers
that survive a killed process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ingest.breaker import HALF_OPEN, OPEN
from ingest.settings import IngestSettings
from ingest.simulated import SimulatedFaults, SimulatedSource
from ingest.snapshot import SnapshotTaker
from ledger import events, open_store
from ledger.clock import SimulatedClock
from tally.run.commit import record_snapshot
from tally.run.cycle_loop import Collaborators

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_cycle_commits_atomically_and_logs_what_was_committed(
    ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SimulatedClock(T0)
    source = SimulatedSource(
        "sim",
        seed=3,
        clock=clock,
        start=T0,
        faults=SimulatedFaults(always_failing=frozenset({"BAD/USD"}), failure_rate=0.3),
    )
    taker = SnapshotTaker([source], settings=IngestSettings(), clock=clock, seed=3)
    snapshot = asyncio.run(taker.take(["BAD/USD", "BTC/USD", "ETH/USD"], 0))
    with open_store(ledger_url, clock=clock) as store, caplog.at_level(logging.INFO, "tally"):
        committed = record_snapshot(store, snapshot, run_id="run-1")
        assert [r.event for r in committed] == [e for _, e in snapshot.events]
        assert all(r.run_id == "run-1" for r in committed)
        assert store.head() == len(snapshot.events)
        # Recording the same snapshot again (a retried commit) writes nothing new.
        assert record_snapshot(store, snapshot, run_id="run-1") == committed
        assert store.head() == len(snapshot.events)
    lines = [r.getMessage() for r in caplog.records]
    retries = sum(isinstance(e, events.RetryScheduled) for _, e in snapshot.events)
    assert sum(line.startswith("DATA_RETRY") for line in lines) == retries > 0
    assert any(line.startswith("DATA_SKIP symbol=BAD/USD") for line in lines)
    assert any(line.startswith(f"SNAPSHOT_{snapshot.snapshot_id}_PARTIAL") for line in lines)
    positions = {int(line.rsplit("position=", 1)[1]) for line in lines}
    assert positions <= {r.position for r in committed}  # every line points at its event


OUTAGE = r"""
import asyncio, sys
from datetime import UTC, datetime, timedelta
from ingest.settings import IngestSettings
from ingest.simulated import SimulatedFaults, SimulatedSource, Window
from ingest.snapshot import SnapshotTaker
from ledger import open_store
from ledger.clock import SimulatedClock
from tally.run.commit import record_snapshot
T0 = datetime(2026, 1, 1, tzinfo=UTC)
clock = SimulatedClock(T0)
down = SimulatedFaults(outages=[Window(T0, T0 + timedelta(hours=1))])
source = SimulatedSource("venue", seed=1, clock=clock, start=T0, faults=down)
taker = SnapshotTaker([source], settings=IngestSettings(), clock=clock, seed=1)
with open_store(sys.argv[1], clock=clock) as store:
    cycle = 0
    while True:
        snapshot = asyncio.run(taker.take(["BTC/USD", "ETH/USD", "SOL/USD"], cycle))
        record_snapshot(store, snapshot, run_id="before-crash")
        print(cycle, taker.breakers.get("venue", "ticker").state, flush=True)
        clock.advance(timedelta(seconds=1))
        cycle += 1
"""


@pytest.mark.slow
def test_an_open_breaker_survives_a_killed_process(ledger_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", OUTAGE, ledger_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    while True:  # run cycles during the outage until the breaker has opened, then kill
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else "writer died"
        if line.split()[1] == OPEN:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    settings = IngestSettings()
    with open_store(ledger_url) as store:
        opened = [r for r in store.query(types=["CircuitOpened"])][-1]
        open_until = opened.event.open_until  # type: ignore[union-attr]
        # A new process: its clock resumes just after the last recorded cycle.
        clock = SimulatedClock(opened.recorded_at + timedelta(seconds=1))
        held = Collaborators.restored(store, settings, clock)
        breakers, cache = held.breakers, held.prices
        breaker = breakers.get("venue", "ticker")
        assert breaker.state == OPEN and breaker.open_until == open_until
        assert set(cache.last) == set()  # the venue never answered: nothing to fall back on

        healthy = SimulatedSource("venue", seed=1, clock=clock, start=T0)
        taker = SnapshotTaker(
            [healthy], settings=settings, clock=clock, seed=1, breakers=breakers, cache=cache
        )
        refused = asyncio.run(taker.take(["BTC/USD"], 100))
        assert refused.status == {"BTC/USD": "failed"}
        assert type(refused.events[0][1]).__name__ == "CallRejected"
        assert healthy._faults._calls == {}  # refused without touching the source

        clock.set(open_until)
        trial = asyncio.run(taker.take(["BTC/USD"], 101))
        kinds = [type(e).__name__ for _, e in trial.events]
        assert kinds[0] == "CircuitHalfOpened" and trial.status == {"BTC/USD": "fresh"}
        assert breaker.state == HALF_OPEN  # one trial success; two are needed to close
