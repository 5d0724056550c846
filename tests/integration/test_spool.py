"""A ledger outage during a paper run: the durable spool, its drain, and what it refuses.

The outage here is a real one on a real SQLite file: another process-level connection holds
the write lock, so every append times out (StoreBusy, transient). The PostgreSQL server
stopped and started again is the slow test in tests/e2e/test_ledger_outage.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.orders import client_order_id
from ingest.venues import OrderIntent
from ledger import events, open_store
from ledger.clock import SimulatedClock
from ledger.store import StreamAppend
from ledger.store.settings import StoreSettings
from tally.run.settings import RunnerSettings, StrategySettings
from tally.run.spool import LedgerLink, Spool, SpoolCorrupt, SpooledAppend, SpoolFull
from tests.integration.test_paper_run import paper_run, settings_for, with_server

DEPOSIT = events.FundsDeposited(account="a", asset="USDT", amount=Decimal("1.5"))


class EveryCycleBuy:
    """Asks for 0.0001 BTC at every cycle: any order placed during an outage would show."""

    def decide(self, view: Any) -> list[Any]:
        return [OrderIntent(view.account, "BTC/USDT", "buy", Decimal("0.0001"), intent="t")]


def path_of(url: str) -> str:
    return url.removeprefix("sqlite:///")


def entry(key: str, cycle: int = 0) -> SpooledAppend:
    return SpooledAppend.of(key, cycle, [StreamAppend("portfolio/a", [DEPOSIT], None)])


def test_the_spool_keeps_whole_entries_drops_a_torn_tail_and_refuses_corruption(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "run.spool", limit_bytes=4096)
    assert spool.entries() == []
    for n in range(3):
        assert spool.add(entry(f"k{n}", n))
    assert [e.key for e in spool.entries()] == ["k0", "k1", "k2"]
    assert spool.entries()[1].appends()[0].events == [DEPOSIT]  # decoded back exactly
    whole = spool.size
    with spool.path.open("ab") as out:  # a crash while the fourth entry was written
        out.write(b"\x00\x00\x01\x00" + b"\x07" * 20)
    assert [e.key for e in spool.entries()] == ["k0", "k1", "k2"]
    assert spool.size == whole  # the torn entry was cut off the file
    # Past the limit nothing is written (the caller stops the run), unless it is its last word.
    big = SpooledAppend.of("big", 3, [StreamAppend("portfolio/a", [DEPOSIT] * 60, None)])
    assert not spool.add(big) and spool.size == whole
    assert spool.add(big, over_limit=True)
    # One flipped byte inside an entry: corruption, never skipped.
    data = bytearray(spool.path.read_bytes())
    data[len(b"TALLY-SPOOL/1\n") + 40] ^= 0xFF
    spool.path.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupt, match=r"entry 1 .* does not match its checksum"):
        spool.entries()


def test_a_crash_during_the_drain_neither_loses_nor_doubles(
    sqlite_url: str, tmp_path: Path
) -> None:
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    limits = StoreSettings(busy_timeout_ms=20)
    with open_store(sqlite_url, settings=limits, clock=clock) as store:
        link = LedgerLink(store, Spool(tmp_path / "r.spool", 1 << 20), "run-x", clock, retries=1)
        blocker = sqlite3.connect(path_of(sqlite_url), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the ledger is out: every write times out
        for cycle in range(3):
            assert (
                link.append_many(
                    [StreamAppend("portfolio/a", [DEPOSIT], None)],
                    run_id="run-x",
                    idempotency_key=f"cycle/{cycle}",
                    cycle=cycle,
                )
                is None
            )
        assert link.spooling and store.head() == 0
        blocker.execute("COMMIT")
        # The process dies after two of the drain's appends went in.
        real, calls = store.append_many, []

        def dying(*args: Any, **kwargs: Any) -> Any:
            if len(calls) == 2:
                raise SystemExit("killed mid-drain")
            calls.append(1)
            return real(*args, **kwargs)

        store.append_many = dying  # type: ignore[method-assign]
        with pytest.raises(SystemExit):
            link.drain()
        store.append_many = real  # type: ignore[method-assign]
        assert store.head() == 2 and link.spooling  # the spool is kept until all is in
        successor = LedgerLink(store, Spool(tmp_path / "r.spool", 1 << 20), "run-x", clock)
        assert successor.drain() and not successor.spooling
        kinds = [type(r.event).__name__ for r in store.read_all()]
    # Each cycle once, in order, between the outage's two events; the chain verifies.
    assert kinds == [
        "LedgerUnavailable",
        "FundsDeposited",
        "FundsDeposited",
        "FundsDeposited",
        "LedgerRecovered",
    ]
    with open_store(sqlite_url) as store:
        assert store.verify().events == 5
        recovered = next(store.query(types=("LedgerRecovered",))).event
    assert isinstance(recovered, events.LedgerRecovered)
    assert (recovered.cycles, recovered.events) == (3, 5)


def test_a_full_spool_raises_and_other_errors_fail_fast(sqlite_url: str, tmp_path: Path) -> None:
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    with open_store(sqlite_url, settings=StoreSettings(busy_timeout_ms=20), clock=clock) as store:
        link = LedgerLink(store, Spool(tmp_path / "s.spool", 4096), "run-y", clock, retries=0)
        blocker = sqlite3.connect(path_of(sqlite_url), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        many = [StreamAppend("portfolio/a", [DEPOSIT] * 20, None)]
        with pytest.raises(SpoolFull, match="reached its limit of 4096 bytes"):
            for cycle in range(100):
                link.append_many(many, run_id="run-y", idempotency_key=f"c{cycle}", cycle=cycle)
        blocker.execute("COMMIT")
        assert link.drain() and store.head() > 0
        # Not transient (a mistake retrying cannot fix): raised as it is, nothing spooled.
        with pytest.raises(Exception, match="stream"):
            link.append_many(
                [StreamAppend("", [DEPOSIT], None)], run_id="run-y", idempotency_key="k", cycle=0
            )
        assert not link.spooling


def test_a_paper_run_spools_through_an_outage_places_no_orders_and_drains_in_order(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        ["BTC/USDT"],
        tmp_path / "cache",
        StrategySettings(path="tests.integration.test_spool:EveryCycleBuy"),
    )
    runner = RunnerSettings(spool_dir=tmp_path / "spool", store_retries=1, store_retry_backoff_s=0)
    blocker = sqlite3.connect(path_of(sqlite_url), isolation_level=None)

    def progress(done: int, _total: int) -> None:
        if done == 2:  # the ledger goes out for cycles 2, 3 and 4
            blocker.execute("BEGIN IMMEDIATE")
        if done == 5:
            blocker.execute("COMMIT")

    async def scenario(server: Any) -> Any:
        with open_store(sqlite_url, settings=StoreSettings(busy_timeout_ms=20)) as store:
            return await paper_run(
                store,
                settings,
                server,
                cycles=8,
                interval_s=0.01,
                progress=progress,
                runner=runner,
            )

    summary = asyncio.run(with_server(scenario))
    assert summary.counts["cycles"] == 8
    with open_store(sqlite_url) as store:
        store.verify()
        found = [r.event for r in store.read_all()]
    outcomes = [
        e.cycle
        for e in found
        if isinstance(e, events.ValidationPassed | events.PortfolioReconciled)
    ]
    assert outcomes == list(range(8))  # every cycle once, in order
    unavailable = [e for e in found if isinstance(e, events.LedgerUnavailable)]
    recovered = [e for e in found if isinstance(e, events.LedgerRecovered)]
    assert len(unavailable) == 1 and unavailable[0].cycle == 2
    assert unavailable[0].error_class == "StoreBusy"
    assert len(recovered) == 1 and recovered[0].cycles == 3 and recovered[0].outage_ms >= 0
    # Cycle 2 placed its order before its commit found the ledger out; then none while the
    # spool held cycles (3 and 4), and orders again once it was drained (5, 6, 7).
    placed = {e.client_order_id for e in found if isinstance(e, events.OrderSubmitted)}
    ids = {client_order_id(summary.run_id, c, "BTC/USDT", "t"): c for c in range(8)}
    assert sorted(ids[cid] for cid in placed) == [0, 1, 2, 5, 6, 7]
    assert not list((tmp_path / "spool").glob("*.spool"))  # drained and deleted
    # What a restart of this run would rebuild: order outcomes and nonces above every one
    # used (spooled ones included), no order left unknown.
    from ingest.settings import IngestSettings
    from tally.run.cycle_loop import Collaborators

    with open_store(sqlite_url) as store:
        held = Collaborators.restored(
            store,
            IngestSettings(),
            SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC)),
            run_id=summary.run_id,
        )
    nonces = [e.nonce for e in found if isinstance(e, events.OrderSubmitted)]
    assert held.nonces.stats()["next"] == max(nonces) + 1 == 7
    assert set(held.orders.status.values()) == {"filled"} and held.unknown == []
    kinds = [type(e).__name__ for e in found]
    assert kinds.index("LedgerUnavailable") < kinds.index("LedgerRecovered")


def test_a_full_spool_stops_the_run_whole_and_the_same_command_carries_it_on(
    sqlite_url: str, tmp_path: Path
) -> None:
    from tally.run.lifecycle import EXIT_STOPPED, StoppedRun

    settings = settings_for(["BTC/USDT"], tmp_path / "cache")
    runner = RunnerSettings(
        spool_dir=tmp_path / "spool",
        spool_limit_bytes=4096,  # a few cycles
        store_retries=0,
        heartbeat_s=0.1,
        heartbeat_expiry_s=0.5,
    )
    blocker = sqlite3.connect(path_of(sqlite_url), isolation_level=None)

    def progress(done: int, _total: int) -> None:
        if done == 1:  # the ledger goes out after the first cycle, for good
            blocker.execute("BEGIN IMMEDIATE")

    async def scenario(server: Any) -> Any:
        with open_store(sqlite_url, settings=StoreSettings(busy_timeout_ms=20)) as store:
            stopped = await paper_run(
                store,
                settings,
                server,
                cycles=20,
                interval_s=0.01,
                progress=progress,
                runner=runner,
            )
            blocker.execute("COMMIT")  # back: the same command drains and finishes
            # The stopped run could not release its lease (the ledger was out): in this same
            # process it lapses at its expiry (a new process takes it over at once).
            await asyncio.sleep(0.6)
            finished = await paper_run(
                store, settings, server, cycles=20, interval_s=0.01, runner=runner
            )
            return stopped, finished

    stopped, finished = asyncio.run(with_server(scenario))
    assert isinstance(stopped, StoppedRun) and stopped.reason == "spool_full"
    assert EXIT_STOPPED[stopped.reason] == 75 and 1 < stopped.cycles_done < 20
    assert "spool" in stopped.render()
    assert finished.run_id == stopped.run_id
    with open_store(sqlite_url) as store:
        store.verify()
        found = [r.event for r in store.read_all()]
    kinds = [type(e).__name__ for e in found]
    # The stop went through the spool, in order, and the run went on from there.
    assert kinds.index("LedgerUnavailable") < kinds.index("RunStopped") < kinds.index("RunResumed")
    reasons = [e.reason for e in found if isinstance(e, events.RunStopped)]
    assert reasons == ["spool_full"] and kinds[-1] == "RunFinished"
    outcomes = [
        e.cycle
        for e in found
        if isinstance(e, events.ValidationPassed | events.PortfolioReconciled)
    ]
    assert outcomes == list(range(20))
