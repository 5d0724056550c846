"""A paper run whose PostgreSQL server dies for 10 s and comes back: nothing lost, nothing
doubled, no order while the spool held cycles, the chain verified. A frozen server: an error
within the call deadline, never a hang.

The server is a real one from the system packages, started the way ``.ci/run`` starts its
own (``.ci/pg-server``), but private to this test: stopping the shared one would pull the
ledger from under the tests that run beside this one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger import events, init_store, open_store
from ledger.errors import StoreConnectionLost
from ledger.store.settings import StoreSettings
from tally.run.settings import RunnerSettings, StrategySettings
from tests.integration.test_paper_run import paper_run, settings_for, with_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = ROOT / ".ci" / "pg-server"
CYCLES, OUTAGE_S = 30, 10.0


@pytest.fixture
def own_server() -> Any:
    try:
        started = subprocess.run(
            [str(PG_SERVER), "start"], capture_output=True, text=True, check=True, timeout=180
        )
    except (subprocess.CalledProcessError, OSError) as error:
        pytest.skip(f"no PostgreSQL server could be started here: {error}")
    found = dict(re.findall(r"export (\w+)=(\S+)", started.stdout))
    folder = found["TALLY_PG_DIR"]
    try:
        yield folder, found["TALLY_TEST_PG_URL"]
    finally:
        subprocess.run([str(PG_SERVER), "stop", folder], capture_output=True, check=False)


def test_postgres_down_for_ten_seconds_mid_paper_run_loses_and_doubles_nothing(
    own_server: tuple[str, str], tmp_path: Path
) -> None:
    folder, url = own_server
    init_store(url)
    settings = settings_for(
        ["BTC/USDT"],
        tmp_path / "cache",
        StrategySettings(path="tests.integration.test_spool:EveryCycleBuy"),
    )
    back: list[datetime] = []

    def outage() -> None:
        subprocess.run([str(PG_SERVER), "crash", folder], check=True, capture_output=True)
        time.sleep(OUTAGE_S)
        subprocess.run([str(PG_SERVER), "restart", folder], check=True, capture_output=True)
        back.append(datetime.now(UTC))

    worker = threading.Thread(target=outage)

    def progress(done: int, _total: int) -> None:
        if done == 4:
            worker.start()

    async def scenario(server: Any) -> Any:
        with open_store(url, settings=StoreSettings(connect_timeout_s=2)) as store:
            return await paper_run(
                store,
                settings,
                server,
                cycles=CYCLES,
                interval_s=0.5,
                progress=progress,
                runner=RunnerSettings(spool_dir=tmp_path / "spool"),
            )

    summary = asyncio.run(with_server(scenario))
    worker.join()
    assert summary.counts["cycles"] == CYCLES
    with open_store(url) as store:
        store.verify()
        found = [r for r in store.read_all()]
    outcomes = [
        r.event.cycle
        for r in found
        if isinstance(r.event, events.ValidationPassed | events.PortfolioReconciled)
    ]
    assert not [r for r in found if isinstance(r.event, events.CycleDiscarded)], [
        r.event for r in found if isinstance(r.event, events.CycleDiscarded)
    ]
    assert outcomes == list(range(CYCLES))  # every cycle recorded once, in order
    unavailable = [r.event for r in found if isinstance(r.event, events.LedgerUnavailable)]
    recovered = [r for r in found if isinstance(r.event, events.LedgerRecovered)]
    assert len(unavailable) == 1 and len(recovered) == 1
    got_back = recovered[0].event
    assert isinstance(got_back, events.LedgerRecovered)
    spooled = range(unavailable[0].cycle, unavailable[0].cycle + got_back.cycles)
    assert got_back.cycles >= 5  # ten seconds of half-second cycles went to the spool
    # No order while the spool held cycles: only the outage's first cycle (which found the
    # ledger out at its commit, after its order) has one among the spooled cycles.
    from ingest.orders import client_order_id

    ids = {client_order_id(summary.run_id, c, "BTC/USDT", "t"): c for c in range(CYCLES)}
    ordered = sorted(
        ids[r.event.client_order_id] for r in found if isinstance(r.event, events.OrderSubmitted)
    )
    assert [c for c in ordered if c in spooled] == [spooled[0]]
    assert len(ordered) == CYCLES - (got_back.cycles - 1)
    drain_s = (got_back.at - back[0]).total_seconds()
    print(
        f"outage {got_back.outage_ms} ms; {got_back.cycles} cycles and {got_back.events} events "
        f"spooled; drained {drain_s:.2f} s after the server was back"
    )
    assert not list((tmp_path / "spool").glob("*.spool"))


def server_processes(folder: str) -> list[int]:
    """The postmaster (first line of postmaster.pid) and every process it forked."""
    postmaster = int((Path(folder) / "data" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    )
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def test_a_frozen_server_is_an_outage_within_the_call_deadline_never_a_hang(
    own_server: tuple[str, str],
) -> None:
    folder, url = own_server
    init_store(url)
    deposit = events.FundsDeposited(account="a", asset="USDT", amount=Decimal(1))
    limits = StoreSettings(call_timeout_s=1, connect_timeout_s=1)
    with open_store(url, settings=limits) as store:
        store.append("portfolio/a", [deposit], expected_version=None)  # a pooled connection
        frozen = server_processes(folder)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        # Whatever happens, the server thaws after 30 s: a hang would show as a slow pass.
        thaw = threading.Timer(30, lambda: [os.kill(p, signal.SIGCONT) for p in frozen])
        thaw.start()
        try:
            began = time.monotonic()
            with pytest.raises(StoreConnectionLost) as write:
                store.append("portfolio/a", [deposit], expected_version=None)
            with pytest.raises(StoreConnectionLost):
                store.head()
            waited = time.monotonic() - began
        finally:
            thaw.cancel()
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        # Two calls, each refused within its deadline and its reconnect (1 s + 1 s each),
        # far inside the 30 s freeze: the error is transient, its hint says what to do.
        assert waited < 15
        assert write.value.transient and "server" in (write.value.hint or "")
        # Thawed: the next calls succeed on fresh connections; the frozen append never landed.
        # A pooled connection the server dropped while thawing may fail the first one, as a
        # transient loss (never as anything else), and a retry goes through, as a runner's.
        for attempt in range(3):
            try:
                placed = store.append("portfolio/a", [deposit], expected_version=None)
                break
            except StoreConnectionLost as lost:
                assert lost.transient and attempt < 2
                time.sleep(0.5)
        assert placed == [2]
        assert store.head() == 2
        store.verify()
