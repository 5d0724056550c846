"""A backtest's cycles leave no cyclic garbage, and the collector is set back after them."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator

import pytest

from ledger import open_store
from tally.run.backtest import RunSummary, execute_backtest, plan_backtest
from tally.run.collector import YOUNG_ALLOCATIONS, fewer_collections
from tally.settings import Settings

# Faults on: failed fetches, retries and rejected orders are where frames used to leak.
SETTINGS = Settings.model_validate(
    {"run": {"sample": {"days": 1}, "faults": {"failure_rate": 0.2}}}
)


@pytest.fixture
def saving_garbage() -> Iterator[list[object]]:
    """Cyclic garbage found by the collector is kept in gc.garbage instead of freed."""
    # Garbage of earlier tests in this process may be frozen (an in-process CLI test freezes
    # its start-up objects, the run below thaws everything): collected now, not counted.
    gc.unfreeze()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_failed_fetches_leave_no_frames_to_the_cyclic_collector(
    sqlite_url: str, saving_garbage: list[object]
) -> None:
    plan = plan_backtest(SETTINGS.run, SETTINGS.ingest, config=SETTINGS.run_config())
    with open_store(sqlite_url) as store:
        summary = execute_backtest(store, plan)
        assert isinstance(summary, RunSummary)
        failed = sum(1 for _ in store.query(types=["FetchFailed"]))
    gc.collect()
    kinds = Counter(type(o).__name__ for o in saving_garbage)
    assert failed > 20  # the faults did fail fetches
    # An error kept with its traceback keeps every frame of the failed call (and the
    # frame's locals: RNGs, candles) until a full collection finds the cycle.
    assert kinds["frame"] == 0 and kinds["traceback"] == 0, kinds.most_common(10)


def test_fewer_collections_freezes_once_and_restores_at_the_last_exit() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_ALLOCATIONS, *before[1:])
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with fewer_collections():  # a second run in the same process
            assert gc.get_freeze_count() == frozen
        assert gc.get_threshold()[0] == YOUNG_ALLOCATIONS  # still in the first
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
