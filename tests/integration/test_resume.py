"""A stopped or failed backtest resumes to the one-go fingerprint, on both backends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from ledger import events, open_store
from ledger.errors import RunBusy, UnknownEventType
from ledger.store.leases import Lease
from projections.runs import list_runs, run_state
from tally.repro import check
from tally.run.backtest import RunSummary, execute_backtest, plan_backtest
from tally.run.lifecycle import RunLease, StoppedRun, StopSignal
from tally.run.settings import RunnerSettings
from tally.settings import Settings

SETTINGS = Settings.model_validate(
    {"run": {"sample": {"days": 1}, "commit_cycles": 25, "faults": {"failure_rate": 0.05}}}
)


def plan() -> Any:
    return plan_backtest(SETTINGS.run, SETTINGS.ingest, config=SETTINGS.run_config())


def stop_after(cycles: int, stop: StopSignal) -> Callable[[int, int], None]:
    def progress(done: int, _total: int) -> None:
        if done >= cycles:
            stop.reason = stop.reason or "SIGINT"

    return progress


@pytest.fixture(scope="module")
def one_go(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    from ledger import init_store

    url = f"sqlite:///{tmp_path_factory.mktemp('one-go') / 'ledger.db'}"
    init_store(url)
    with open_store(url) as store:
        summary = execute_backtest(store, plan())
    assert isinstance(summary, RunSummary)
    return summary


def test_stopped_twice_then_resumed_fingerprints_like_one_go(
    ledger_url: str, one_go: RunSummary
) -> None:
    with open_store(ledger_url) as store:
        # Progress is reported after each commit group (25 cycles): a stop asked for at
        # cycle 40 is seen at 50, one at 130 at 150 (the first 50 replayed, not doubled).
        for ask, cycles in ((40, 50), (130, 150)):
            stop = StopSignal()
            stopped = execute_backtest(store, plan(), progress=stop_after(ask, stop), stop=stop)
            assert isinstance(stopped, StoppedRun)
            assert stopped.reason == "SIGINT" and stopped.cycles_done == cycles
            record = list_runs(store).get(stopped.run_id)
            assert record is not None
            state = run_state(record, store.leases.all().get(stopped.run_id), 0)
            assert (state.state, state.cycles_done) == ("stopped", cycles)
        done = execute_backtest(store, plan())
        assert isinstance(done, RunSummary)
        assert done.fingerprint == one_go.fingerprint and done.events == one_go.events
        assert done.counts == one_go.counts and done.equity_end == one_go.equity_end
        store.verify()
        kinds = [r.event for r in store.read(f"run/{done.run_id}")]
        assert [type(e).__name__ for e in kinds] == [
            "RunStarted",
            "RunStopped",
            "RunResumed",
            "RunStopped",
            "RunResumed",
            "RunFinished",
        ]
        resumed = [e for e in kinds if isinstance(e, events.RunResumed)]
        assert [r.cycles_done for r in resumed] == [50, 150]
        assert resumed[1].previously == "stopped (SIGINT)"
        # Each cycle is in the ledger once: its outcome event appears once per cycle.
        outcomes = [
            r.event.cycle  # type: ignore[union-attr]
            for r in store.query(
                stream=f"portfolio/{done.account}",
                types=("ValidationPassed", "PortfolioReconciled", "CycleDiscarded"),
            )
        ]
        assert outcomes == list(range(done.counts["cycles"]))
        assert check(store, done.run_id).reproduced


def test_a_run_held_by_a_live_process_is_refused_then_resumes(
    sqlite_url: str, one_go: RunSummary
) -> None:
    with open_store(sqlite_url) as store:
        stop = StopSignal()
        execute_backtest(store, plan(), progress=stop_after(50, stop), stop=stop)
        # A process that claimed the run and is still alive (its pid is this test's) holds
        # it: a second start is refused with that pid, and resumes once it is released.
        run_id = one_go.run_id
        lease = RunLease(
            store, run_id, RunnerSettings(heartbeat_s=0.1, heartbeat_expiry_s=0.2), 288
        )
        lease.claim(50)
        with pytest.raises(RunBusy, match="being recorded by pid"):
            execute_backtest(store, plan())
        store.leases.release(run_id, lease.owner, 0, 50)
        done = execute_backtest(store, plan())
        assert isinstance(done, RunSummary) and done.fingerprint == one_go.fingerprint


def test_a_lapsed_lease_is_taken_over_and_a_live_one_is_not(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        first = Lease("run-x", "a", 1, "elsewhere", "running", 0, 1_000, 0, 10)
        store.leases.claim(first, now_us=0)
        with pytest.raises(RunBusy) as busy:
            store.leases.claim(Lease("run-x", "b", 2, "here", "running", 0, 2_000, 0, 10), 500)
        assert busy.value.context["pid"] == 1 and busy.value.context["host"] == "elsewhere"
        store.leases.claim(Lease("run-x", "b", 2, "here", "running", 0, 3_000, 0, 10), 1_500)
        assert store.leases.all()["run-x"].owner == "b"
        from ledger.errors import LeaseLost

        with pytest.raises(LeaseLost):
            store.leases.renew("run-x", "a", 1_600, 5_000, 3)


def catalog_1_plan() -> Any:
    """The plan as a run recorded before catalog 2 started it: the same run id."""
    fresh = plan()
    return dataclasses.replace(fresh, started=msgspec.structs.replace(fresh.started, catalog=1))


def test_a_run_recorded_in_catalog_1_resumes_and_reproduces_in_its_own_shape(
    ledger_url: str, one_go: RunSummary
) -> None:
    with open_store(ledger_url) as store:
        stop = StopSignal()
        stopped = execute_backtest(
            store, catalog_1_plan(), progress=stop_after(40, stop), stop=stop
        )
        assert isinstance(stopped, StoppedRun) and stopped.run_id == one_go.run_id
        # Today's command resumes it: the run keeps the catalog its RunStarted recorded.
        done = execute_backtest(store, plan())
        assert isinstance(done, RunSummary)
        kinds = [type(r.event).__name__ for r in store.read_all() if r.run_id == done.run_id]
        attempts = kinds.count("FetchAttempted")
        outcomes = kinds.count("FetchSucceeded") + kinds.count("FetchFailed")
        assert attempts == outcomes > 0  # every outcome announced, before and after the stop
        # The same trades, books and equity as today's shape, with one event per attempt more.
        assert done.counts == one_go.counts and done.equity_end == one_go.equity_end
        assert done.events == one_go.events + attempts
        assert done.fingerprint != one_go.fingerprint
        assert check(store, done.run_id).reproduced
        recorded = next(store.read(f"run/{done.run_id}")).event
        assert isinstance(recorded, events.RunStarted) and recorded.catalog == 1


def local_plan(catalog: int = events.CATALOG) -> Any:
    """The sample without injected faults (local sources: catalog 3 folds their first-attempt
    successes into the seals), as a run of ``catalog`` started it: the same run id."""
    fresh = plan_backtest(SETTINGS.run, SETTINGS.ingest, config=SETTINGS.run_config(), faults=False)
    started = msgspec.structs.replace(fresh.started, catalog=catalog)
    return dataclasses.replace(fresh, started=started)


def test_a_run_recorded_in_catalog_2_resumes_and_reproduces_with_a_success_event_each(
    ledger_url: str, tmp_path: Any
) -> None:
    from ledger import init_store

    today_url = f"sqlite:///{tmp_path / 'today.db'}"
    init_store(today_url)
    with open_store(today_url) as store:
        today = execute_backtest(store, local_plan())
        assert isinstance(today, RunSummary)
        seals = [r.event for r in store.read_all() if isinstance(r.event, events.SnapshotSealed)]
        kinds = [r.type for r in store.read_all()]
    assert "FetchSucceeded" not in kinds
    folded = sum(len(s.fetched) for s in seals)
    assert folded == today.counts["fresh"] > 0
    with open_store(ledger_url) as store:
        stop = StopSignal()
        stopped = execute_backtest(store, local_plan(2), progress=stop_after(40, stop), stop=stop)
        assert isinstance(stopped, StoppedRun) and stopped.run_id == today.run_id
        done = execute_backtest(store, local_plan())  # today's command resumes it, as 2
        assert isinstance(done, RunSummary)
        rows = [r for r in store.read_all() if r.run_id == done.run_id]
        assert not any(isinstance(r.event, events.SnapshotSealed) and r.event.fetched for r in rows)
        succeeded = sum(r.type == "FetchSucceeded" for r in rows)
        # The same trades, books and equity, one event per first-attempt success more.
        assert succeeded == folded
        assert done.counts == today.counts and done.equity_end == today.equity_end
        assert done.events == today.events + succeeded
        assert check(store, done.run_id).reproduced
        recorded = next(store.read(f"run/{done.run_id}")).event
        assert isinstance(recorded, events.RunStarted) and recorded.catalog == 2


def test_a_run_recorded_in_a_newer_catalog_is_refused_not_carried_on_in_another_shape(
    ledger_url: str,
) -> None:
    fresh = plan()
    newer = dataclasses.replace(fresh, started=msgspec.structs.replace(fresh.started, catalog=99))
    with open_store(ledger_url) as store:
        stop = StopSignal()
        stopped = execute_backtest(store, newer, progress=stop_after(40, stop), stop=stop)
        assert isinstance(stopped, StoppedRun)
        head = store.head()
        with pytest.raises(UnknownEventType, match="catalog 99") as refused:
            execute_backtest(store, plan())  # the same command: would resume it
        assert "run it with the version of Tally that recorded it" in refused.value.hint
        assert store.head() == head  # nothing written
    with pytest.raises(UnknownEventType, match="catalog 99"):  # what `repro check` plans
        plan_backtest(
            SETTINGS.run, SETTINGS.ingest, config=SETTINGS.run_config(), replay_of=newer.started
        )
