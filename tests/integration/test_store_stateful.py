"""Hypothesis stateful test: the store behaves like a simple in-memory model of streams,
versions and idempotency keys, on every backend."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import events, open_store
from ledger.errors import ConcurrencyError, IdempotencyConflict
from ledger.store import EventStore

pytestmark = pytest.mark.slow

_examples = itertools.count()
# Deposits are positive (the catalog refuses anything else).
amounts = st.decimals(min_value="0.0001", max_value=10**6, places=4, allow_nan=False)


def batch_strategy() -> st.SearchStrategy[list[events.FundsDeposited]]:
    return st.lists(
        amounts.map(lambda a: events.FundsDeposited(account="main", asset="USDT", amount=a)),
        min_size=1,
        max_size=4,
    )


class StoreModel(RuleBasedStateMachine):
    store: EventStore

    def __init__(self) -> None:
        super().__init__()
        # The database is shared by all examples: each example gets its own stream names.
        self.prefix = f"ex{next(_examples)}"
        self.start = self.store.head()
        self.log: list[tuple[str, events.FundsDeposited]] = []
        self.streams: dict[str, list[events.FundsDeposited]] = {}
        self.keys: dict[str, tuple[str, list[events.FundsDeposited], list[int]]] = {}

    def name(self, stream: str) -> str:
        return f"{self.prefix}/{stream}"

    @rule(
        stream=st.sampled_from("abc"),
        batch=batch_strategy(),
        check=st.sampled_from(["right", "none", "stale", "ahead"]),
    )
    def append(self, stream: str, batch: list[events.FundsDeposited], check: str) -> None:
        current = len(self.streams.get(stream, []))
        expected = {"right": current, "none": None, "stale": current - 1, "ahead": current + 1}
        wanted = expected[check]
        if wanted is not None and wanted != current:
            with pytest.raises(ConcurrencyError) as caught:
                self.store.append(self.name(stream), batch, expected_version=wanted)
            assert caught.value.actual == current
            return
        positions = self.store.append(self.name(stream), batch, expected_version=wanted)
        self.record(stream, batch, positions)

    @rule(stream=st.sampled_from("abc"), batch=batch_strategy(), key=st.sampled_from("xyz"))
    def append_with_key(self, stream: str, batch: list[events.FundsDeposited], key: str) -> None:
        full_key = f"{self.prefix}-{key}"
        seen = self.keys.get(full_key)
        if seen is None:
            positions = self.store.append(
                self.name(stream), batch, expected_version=None, idempotency_key=full_key
            )
            self.keys[full_key] = (stream, batch, positions)
            self.record(stream, batch, positions)
        elif (stream, batch) == seen[:2]:
            again = self.store.append(
                self.name(stream), batch, expected_version=None, idempotency_key=full_key
            )
            assert again == seen[2]
        else:
            with pytest.raises(IdempotencyConflict):
                self.store.append(
                    self.name(stream), batch, expected_version=None, idempotency_key=full_key
                )

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data())
    def retry_a_keyed_append(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)))
        stream, batch, positions = self.keys[key]
        assert (
            self.store.append(self.name(stream), batch, expected_version=0, idempotency_key=key)
            == positions
        )

    def record(self, stream: str, batch: list[events.FundsDeposited], positions: list[int]) -> None:
        first = self.start + len(self.log) + 1
        assert positions == list(range(first, first + len(batch)))
        self.log.extend((stream, e) for e in batch)
        self.streams.setdefault(stream, []).extend(batch)

    @invariant()
    def head_and_versions_match_the_model(self) -> None:
        assert self.store.head() == self.start + len(self.log)
        for stream, stored in self.streams.items():
            assert self.store.stream_version(self.name(stream)) == len(stored)

    @invariant()
    def reads_return_the_model(self) -> None:
        for stream, stored in self.streams.items():
            got = list(self.store.read(self.name(stream)))
            assert [r.event for r in got] == stored
            assert [r.version for r in got] == list(range(1, len(stored) + 1))
        tail = list(self.store.read_all(self.start + 1))
        assert [(r.stream, r.event) for r in tail] == [(self.name(s), e) for s, e in self.log]


def test_store_matches_the_model(ledger_url: str) -> None:
    with open_store(ledger_url) as store:
        StoreModel.store = store
        runner = StoreModel.TestCase()
        runner.settings = settings(
            max_examples=25,
            stateful_step_count=15,
            derandomize=True,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        runner.runTest()
        assert store.verify().events == store.head()


def test_amounts_never_change_on_the_way(ledger_url: str) -> None:
    with open_store(ledger_url) as store:
        exact = Decimal("0.1") + Decimal("0.2")
        store.append(
            "s", [events.FundsDeposited(account="m", asset="X", amount=exact)], expected_version=0
        )
        (recorded,) = store.read("s")
        assert recorded.event.amount == Decimal("0.3")  # type: ignore[union-attr]
