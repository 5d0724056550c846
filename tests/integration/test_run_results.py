"""A run's results in a ledger of many runs: read from its own start, equal to the same run's
results in a ledger of its own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import events, open_store
from ledger.recorded import RecordedEvent
from ledger.store import EventStore
from projections import results
from projections.runs import find_run, list_runs
from tally.run.backtest import RunSummary, execute_backtest, plan_backtest
from tally.settings import Settings


def backtest(store: EventStore, seed: int) -> RunSummary:
    settings = Settings.model_validate({"run": {"seed": seed, "sample": {"days": 1}}})
    plan = plan_backtest(settings.run, settings.ingest, config=settings.run_config())
    summary = execute_backtest(store, plan)
    assert isinstance(summary, RunSummary)
    return summary


def reading_spans(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """The (first, last) positions of every query ``store`` is asked from now on."""
    spans: list[tuple[int, Any]] = []
    query = store.query

    def recorded_query(**filters: Any) -> Iterator[RecordedEvent]:
        spans.append((filters.get("from_position", 1), filters.get("to_position")))
        return query(**filters)

    monkeypatch.setattr(store, "query", recorded_query)
    return spans


def test_a_runs_summary_reads_its_own_stretch_and_equals_the_run_alone(
    ledger_url: str, sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run alone in a SQLite file; with others on each backend: the same results.
    shutil.copyfile(sqlite_template, tmp_path / "alone.db")
    with open_store(f"sqlite:///{tmp_path / 'alone.db'}") as store:
        run = backtest(store, seed=2)
        alone = results.load_summary(store, run.account, run_id=run.run_id)
    with open_store(ledger_url) as store:
        # Runs before and after it: their events are not the second run's.
        first, second, third = (backtest(store, seed) for seed in (1, 2, 3))
        assert second.run_id == run.run_id
        assert first.last_position < second.first_position < third.first_position
        # A run found by its own stream is the run found among all of them.
        runs = list_runs(store)
        for run_id in (first.run_id, second.run_id, third.run_id):
            assert find_run(store, run_id) == runs.get(run_id) is not None
        assert find_run(store, "run-absent") is None
        spans = reading_spans(store, monkeypatch)
        looked_up = results.load_summary(store, second.account, run_id=second.run_id)
        given = results.load_summary(
            store,
            second.account,
            run_id=second.run_id,
            span=(second.first_position, second.last_position),
        )
    assert alone is not None and looked_up == alone and given == alone
    # Each summary reads the series once and the trips twice (the fees, then the fills), only
    # from the run's RunStarted to its RunFinished (and the run is looked up by its stream,
    # not by reading every run's records).
    assert spans == [(second.first_position, second.last_position)] * 6


def test_a_runs_equity_is_folded_as_it_is_read_and_equals_the_sorted_series(
    ledger_url: str,
) -> None:
    # A run's own events come in market-time order: the series is folded as they are read
    # (one read, no event held past its moment), and it is the series of the same events
    # sorted whole. The sample has its faults on: stale marks, failed fetches, retries.
    from projections import reports
    from projections.portfolio import MONEY_TYPES
    from projections.runs import run_events

    types = (*MONEY_TYPES, *reports.PRICE_TYPES, *reports.MARKER_TYPES)
    with open_store(ledger_url) as store:
        run = backtest(store, seed=4)
        reads: list[int] = []

        def read() -> Any:
            reads.append(1)
            return run_events(store, types, run.run_id)

        streamed = reports.streamed_equity_series(read, run.account)
        whole = reports.equity_series(list(run_events(store, types, run.run_id)), run.account)
    assert reads == [1]
    assert streamed == whole and len(whole.rows) > 250 and whole.stale


def test_a_runs_trips_read_fees_then_fills_equal_the_trips_of_its_events_held_whole(
    ledger_url: str,
) -> None:
    # load_trips reads a run's fees, then its fills, folding each fill into its trip as it
    # comes; round_trips takes the same events held whole. The same trips, fill for fill.
    from projections.runs import run_events

    with open_store(ledger_url) as store:
        run = backtest(store, seed=5)
        streamed = results.load_trips(store, run.account, run_id=run.run_id)
        found = list(run_events(store, ("TradeExecuted", "FeeCharged"), run.run_id))
        whole = results.round_trips(found, run.account)
    assert streamed == whole and len(whole) >= 5
    # Every fill is in a trip (a fill that flips the side is in two).
    assert sum(len(t.fills) for t in whole) >= sum(
        isinstance(r.event, events.TradeExecuted) for r in found
    )
