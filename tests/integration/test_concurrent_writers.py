"""Several writer processes append at once while a reader tails the log.

The reader must never skip an event that commits behind a position it already read (the
sequence-gap problem), and the final log has no gap and no duplicate. A writer killed in the
middle of an append leaves nothing partial behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal

import pytest

from ledger import events, open_store
from ledger.store import EventStore

pytestmark = pytest.mark.slow

WRITERS = 4
BATCHES = 30

WRITER = r"""
import random, sys, time
from decimal import Decimal
from ledger import open_store, events
url, writer, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(writer)
with open_store(url) as store:
    seq = 0
    for batch in range(batches):
        size = rng.randint(1, 5)
        evs = [events.FundsDeposited(account=f"w{writer}", asset="SEQ", amount=Decimal(seq + i + 1))
               for i in range(size)]
        # Own stream with a version check, and a shared stream without one.
        stream = f"writer/{writer}" if batch % 2 else "shared"
        expected = store.stream_version(stream) if batch % 2 else None
        store.append(stream, evs, expected_version=expected)
        seq += size
        time.sleep(rng.random() * 0.004)
print(seq)
"""


def tail(store: EventStore, writers: list[subprocess.Popen[str]]) -> list[int]:
    """Poll the log like a projection would, recording every position in arrival order."""
    seen: list[int] = []
    while True:
        done = all(w.poll() is not None for w in writers)
        for recorded in store.read_all(from_position=len(seen) + 1):
            # Never a skip: the next position read is always the one after the last.
            assert recorded.position == len(seen) + 1, (recorded.position, len(seen))
            seen.append(recorded.position)
        if done and len(seen) == store.head():
            return seen
        time.sleep(0.001)


def test_concurrent_writers_and_a_tailing_reader(ledger_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, ledger_url, str(i), str(BATCHES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(WRITERS)
    ]
    with open_store(ledger_url) as store:
        seen = tail(store, writers)
        written = 0
        for writer in writers:
            out, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err
            written += int(out)
        assert seen == list(range(1, written + 1))  # no gap, no duplicate
        assert store.head() == written
        per_writer: dict[str, list[Decimal]] = defaultdict(list)
        for recorded in store.read_all():
            per_writer[recorded.event.account].append(recorded.event.amount)  # type: ignore[union-attr]
        for amounts in per_writer.values():
            # Each writer's events appear in the order it wrote them, none lost.
            assert amounts == [Decimal(i + 1) for i in range(len(amounts))]
        assert store.verify().events == written


CRASHER = r"""
import sys
from decimal import Decimal
from ledger import open_store, events
url = sys.argv[1]
with open_store(url) as store:
    batch = 0
    while True:
        store.append(f"batch/{batch}", [events.FundsDeposited(account="c", asset="X",
                     amount=Decimal(i + 1)) for i in range(200)], expected_version=0)
        batch += 1
        print(batch, flush=True)
"""


def test_a_writer_killed_mid_append_leaves_nothing_partial(ledger_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    crasher = subprocess.Popen(
        [sys.executable, "-c", CRASHER, ledger_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert crasher.stdout is not None
    for _ in range(5):  # let it commit a few batches, then kill it mid-flight
        crasher.stdout.readline()
    crasher.send_signal(signal.SIGKILL)
    crasher.wait(timeout=30)
    with open_store(ledger_url) as store:
        report = store.verify()
        assert report.events % 200 == 0 and report.events >= 5 * 200
        for stream, count in store.stats().by_stream.items():
            assert count == 200, stream  # every batch whole, or not there at all
        after = [events.FundsDeposited(account="c", asset="X", amount=Decimal(1))]
        assert store.append("after/crash", after, expected_version=0) == [report.events + 1]
