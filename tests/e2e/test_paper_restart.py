"""A paper run killed while its breaker is open: its successor restores what it knew.

The first process runs against the recorded exchange server until the ticker breaker opens,
and is SIGKILLed. The same configuration started again carries that run on: the breaker is
still open (no ticker request reaches the exchange until its time is up), the last good
price serves stale with its age, nonces continue above the predecessor's, and the cycle
count goes on from the last committed cycle.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ledger import events, open_store
from tally.run.settings import RunnerSettings
from tests.integration.test_paper_run import paper_run, settings_for, with_server

pytestmark = pytest.mark.slow
# One of these closes every cycle, whatever the validator decided.
OUTCOMES = events.ValidationPassed | events.PortfolioReconciled | events.CycleDiscarded
ROOT = Path(__file__).resolve().parents[2]


def opened_breaker(url: str) -> bool:
    try:
        with open_store(url) as store:
            return any(True for _ in store.query(types=("CircuitOpened",)))
    except Exception:  # the ledger is still being created
        return False


def test_a_killed_paper_run_restarts_with_its_breaker_open_and_its_prices(
    sqlite_url: str, tmp_path: Path
) -> None:
    cache, spool = tmp_path / "cache", tmp_path / "spool"
    # 1 warm-up request and 2 tickers answered: cycles 0 and 1 are priced, then every
    # request fails and the breaker opens (5 consecutive failures) during cycle 3.
    arguments = [sqlite_url, str(cache), str(spool), "50", "3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.paper_process", *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not opened_breaker(sqlite_url):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the breaker never opened"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    with open_store(sqlite_url) as store:
        before = [r for r in store.read_all()]
    opened = next(r.event for r in before if isinstance(r.event, events.CircuitOpened))
    last_fresh = [r.event for r in before if isinstance(r.event, events.SnapshotSealed)]
    cycles_before = sum(1 for r in before if isinstance(r.event, OUTCOMES))
    nonces_before = [r.event.nonce for r in before if isinstance(r.event, events.OrderSubmitted)]
    settings = settings_for(["BTC/USDT"], cache)

    async def successor(server: Any) -> Any:
        with open_store(sqlite_url) as store:
            summary = await paper_run(
                store,
                settings,
                server,
                cycles=cycles_before + 2,
                interval_s=0.01,
                runner=RunnerSettings(spool_dir=spool),
            )
            return summary, [r for r in store.read_all(before[-1].position + 1)], server.requests

    summary, after, requests = asyncio.run(with_server(successor))
    # The same run, carried on from its last committed cycle.
    assert summary.run_id == before[0].event.run_id  # type: ignore[union-attr]
    resumed = next(r.event for r in after if isinstance(r.event, events.RunResumed))
    assert resumed.previously == "interrupted" and resumed.cycles_done == cycles_before
    outcomes = [r.event.cycle for r in after if isinstance(r.event, OUTCOMES)]
    assert outcomes == [cycles_before, cycles_before + 1]
    # The breaker stayed open (open_s is 30 s): no ticker request reached the exchange, the
    # calls were refused and the last good price was used, stale, with its age.
    assert not [r for r in requests if "ticker" in r], requests
    assert any(isinstance(r.event, events.CallRejected) for r in after)
    assert not any(isinstance(r.event, events.CircuitClosed) for r in after)
    stale = [r.event for r in after if isinstance(r.event, events.StalePriceUsed)]
    assert stale and stale[0].price == last_fresh[1].marks["BTC/USDT"]
    assert opened.open_until > after[-1].recorded_at
    # No order while the breaker was open (no fresh price to decide on); nonces and unknown
    # orders are restored as tests/integration/test_spool.py checks.
    assert not [r for r in after if isinstance(r.event, events.OrderSubmitted)]
    assert nonces_before  # the predecessor did place its order
    with open_store(sqlite_url) as store:
        store.verify()
