"""The event store contract: runs unchanged against SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import events
from ledger.clock import SimulatedClock
from ledger.codec import GENESIS_HASH, chain_hash
from ledger.errors import ConcurrencyError, IdempotencyConflict, InputError
from ledger.store import Append, EventStore, StreamAppend, open_store


def deposit(amount: str, asset: str = "USDT") -> events.FundsDeposited:
    return events.FundsDeposited(account="main", asset=asset, amount=Decimal(amount))


def trade(trade_id: str) -> events.TradeExecuted:
    return events.TradeExecuted(
        account="main",
        symbol="BTC/USDT",
        side="buy",
        qty=Decimal("0.12346"),
        price=Decimal("100000.00"),
        order_id="o-" + trade_id,
        trade_id=trade_id,
    )


def test_empty_ledger_has_head_zero_and_genesis_hash(store: EventStore) -> None:
    assert store.head() == 0
    assert store.head_hash() == GENESIS_HASH
    assert store.stream_version("portfolio/main") == 0
    assert list(store.read_all()) == []
    assert store.verify().events == 0


def test_append_returns_gapless_positions_and_versions(store: EventStore) -> None:
    assert store.append("portfolio/main", [deposit("10000")], expected_version=0) == [1]
    assert store.append("symbol/BTC", [trade("t1"), trade("t2")], expected_version=0) == [2, 3]
    assert store.append("portfolio/main", [deposit("5")], expected_version=1) == [4]
    assert store.head() == 4
    assert store.stream_version("portfolio/main") == 2
    assert store.stream_version("symbol/BTC") == 2
    recorded = list(store.read("portfolio/main"))
    assert [r.version for r in recorded] == [1, 2]
    assert [r.position for r in recorded] == [1, 4]
    assert recorded[0].event == deposit("10000")


def test_recorded_event_carries_the_whole_envelope(
    store: EventStore, clock: SimulatedClock
) -> None:
    store.append(
        "portfolio/main",
        [deposit("1")],
        expected_version=0,
        run_id="run-1",
        causation_id="cause-1",
        correlation_id="corr-1",
        idempotency_key="key-1",
    )
    (recorded,) = store.read_all()
    assert recorded.position == 1
    assert recorded.stream == "portfolio/main"
    assert recorded.version == 1
    assert recorded.type == "FundsDeposited"
    assert recorded.recorded_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert (recorded.run_id, recorded.causation_id, recorded.correlation_id) == (
        "run-1",
        "cause-1",
        "corr-1",
    )
    assert recorded.idempotency_key == "key-1"
    assert recorded.prev_hash == GENESIS_HASH
    assert len(recorded.hash) == 32
    assert recorded.hash == store.head_hash()


def test_money_round_trips_exactly(store: EventStore) -> None:
    amounts = ["0.1", "0.2", "0.30000000000000000001", "5", "1E+3", "1.000"]
    store.append("portfolio/main", [deposit(a) for a in amounts], expected_version=0)
    got = [r.event.amount for r in store.read("portfolio/main")]  # type: ignore[union-attr]
    assert [str(a) for a in got] == [str(Decimal(a)) for a in amounts]
    assert sum(got[:2], Decimal(0)) == Decimal("0.3")


def test_amounts_outside_the_bounds_are_refused_and_nothing_is_written(store: EventStore) -> None:
    from ledger.errors import ValueOutOfBounds

    for bad in ("-5", "0", "1e999999999", "1e-999999999", "1e18", "1." + "1" * 40):
        with pytest.raises(ValueOutOfBounds) as refused:
            store.append("portfolio/main", [deposit("1"), deposit(bad)], expected_version=None)
        assert refused.value.context["field"] == "amount" and refused.value.exit_code == 2
    with pytest.raises(ValueOutOfBounds, match="account"):
        store.append(
            "p",
            [events.FundsDeposited(account="", asset="X", amount=Decimal(1))],
            expected_version=None,
        )
    assert store.head() == 0


def test_wrong_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    store.append("portfolio/main", [deposit("1")], expected_version=0)
    with pytest.raises(ConcurrencyError) as caught:
        store.append("portfolio/main", [deposit("2"), deposit("3")], expected_version=0)
    assert caught.value.stream == "portfolio/main"
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert "portfolio/main" in str(caught.value)
    assert store.head() == 1


def test_expected_version_none_skips_the_check(store: EventStore) -> None:
    store.append("s", [deposit("1")], expected_version=None)
    store.append("s", [deposit("2")], expected_version=None)
    assert store.stream_version("s") == 2


def test_idempotent_retry_returns_the_original_positions(store: EventStore) -> None:
    first = store.append("s", [deposit("1"), deposit("2")], expected_version=0, idempotency_key="k")
    store.append("other", [deposit("9")], expected_version=0)
    again = store.append("s", [deposit("1"), deposit("2")], expected_version=0, idempotency_key="k")
    assert again == first == [1, 2]
    assert store.head() == 3
    assert store.stream_version("s") == 2


def test_idempotency_key_with_other_events_conflicts(store: EventStore) -> None:
    store.append("s", [deposit("1")], expected_version=0, idempotency_key="k")
    for stream, batch in (
        ("s", [deposit("2")]),
        ("t", [deposit("1")]),
        ("s", [deposit("1"), deposit("1")]),
    ):
        with pytest.raises(IdempotencyConflict):
            store.append(stream, batch, expected_version=None, idempotency_key="k")
    assert store.head() == 1


def test_read_all_ranges_are_inclusive(store: EventStore) -> None:
    store.append("s", [deposit(str(i + 1)) for i in range(10)], expected_version=0)
    assert [r.position for r in store.read_all(3, 5)] == [3, 4, 5]
    assert [r.position for r in store.read_all(9)] == [9, 10]
    assert list(store.read_all(11)) == []
    assert [r.version for r in store.read("s", from_version=8)] == [8, 9, 10]


def test_read_all_links_match_the_chain(store: EventStore) -> None:
    store.append("a", [deposit("1"), deposit("2")], expected_version=0)
    store.append("b", [trade("t")], expected_version=0)
    recorded = list(store.read_all())
    for before, after in itertools.pairwise(recorded):
        assert after.prev_hash == before.hash
    assert recorded[-1].hash == store.head_hash()
    middle = list(store.read_all(2))
    assert middle[0].prev_hash == recorded[0].hash


def test_read_all_streams_across_pages(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.store.read as module

    monkeypatch.setattr(module, "PAGE_ROWS", 7)
    store.append("s", [deposit(str(i + 1)) for i in range(30)], expected_version=0)
    assert [r.position for r in store.read_all()] == list(range(1, 31))
    assert [r.version for r in store.read("s")] == list(range(1, 31))
    assert [r.position for r in store.query(limit=10)] == list(range(1, 11))
    assert store.verify().events == 30


@pytest.mark.parametrize("count", [99, 100, 101, 250])
def test_a_large_append_stores_every_row_in_order(store: EventStore, count: int) -> None:
    # SQLite inserts whole hundreds with multi-row statements and the rest one by one:
    # each side of that boundary keeps every row, its position, version and link.
    store.append("s", [deposit("1")], expected_version=0)
    amounts = [deposit(f"{i + 1}.5") for i in range(count)]
    assert store.append("s", amounts, expected_version=1) == list(range(2, count + 2))
    recorded = list(store.read("s"))
    assert [r.position for r in recorded] == list(range(1, count + 2))
    assert [r.version for r in recorded] == list(range(1, count + 2))
    assert [r.event for r in recorded[1:]] == amounts
    assert store.verify().events == count + 1
    assert store.head_hash() == recorded[-1].hash


def test_hashes_chain_from_genesis(store: EventStore) -> None:
    store.append("s", [deposit("1"), deposit("2")], expected_version=0)
    rows = list(store.raw_records())
    prev = GENESIS_HASH
    for _position, record, stored in rows:
        assert chain_hash(prev, record) == stored
        prev = stored


def test_query_filters_by_stream_type_and_position(store: EventStore) -> None:
    store.append("portfolio/main", [deposit("1"), trade("t1")], expected_version=0)
    store.append("symbol/BTC", [trade("t2")], expected_version=0)
    assert [r.position for r in store.query(stream="portfolio/main")] == [1, 2]
    assert [r.position for r in store.query(types=["TradeExecuted"])] == [2, 3]
    assert [r.position for r in store.query(types=["TradeExecuted"], from_position=3)] == [3]
    assert [r.position for r in store.query(to_position=1)] == [1]


def test_stats_counts_by_type_and_stream(store: EventStore) -> None:
    store.append("portfolio/main", [deposit("1"), trade("t1")], expected_version=0)
    store.append("symbol/BTC", [trade("t2")], expected_version=0)
    stats = store.stats()
    assert stats.events == 3
    assert stats.head_position == 3
    assert stats.by_type == {"FundsDeposited": 1, "TradeExecuted": 2}
    assert stats.by_stream == {"portfolio/main": 2, "symbol/BTC": 1}
    assert stats.head_hash == store.head_hash().hex()


def test_empty_append_is_a_no_op(store: EventStore) -> None:
    assert store.append("s", [], expected_version=0) == []
    assert store.head() == 0


@pytest.mark.parametrize("stream", ["", "x" * 201])
def test_bad_stream_name_is_refused(store: EventStore, stream: str) -> None:
    with pytest.raises(InputError):
        store.append(stream, [deposit("1")], expected_version=0)
    assert store.head() == 0


def test_float_money_is_refused_before_anything_is_written(store: EventStore) -> None:
    bad = events.FundsDeposited(account="main", asset="USDT", amount=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Decimal"):
        store.append("s", [deposit("1"), bad], expected_version=0)
    assert store.head() == 0


def test_same_events_and_clock_give_the_same_hashes(ledger_url: str, tmp_path: object) -> None:
    from ledger import open_store

    def run(url: str) -> bytes:
        clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
        with open_store(url, clock=clock) as s:
            s.append("portfolio/main", [deposit("10000")], expected_version=0, run_id="r")
            s.append("symbol/BTC", [trade("t1")], expected_version=0, run_id="r")
            return s.head_hash()

    first = run(ledger_url)
    from ledger import init_store

    other = f"sqlite:///{tmp_path}/other.db"
    init_store(other)
    assert run(other) == first


def test_append_many_is_atomic_across_streams(store: EventStore) -> None:
    from ledger.store import StreamAppend

    store.append("b", [deposit("1")], expected_version=0)
    with pytest.raises(ConcurrencyError):
        store.append_many(
            [StreamAppend("a", [deposit("2")], 0), StreamAppend("b", [deposit("3")], 0)]
        )  # b is at version 1
    assert store.head() == 1 and store.stream_version("a") == 0
    positions = store.append_many(
        [
            StreamAppend("a", [deposit("2"), deposit("3")], 0),
            StreamAppend("b", [deposit("4")], 1),
            StreamAppend("a", [deposit("5")], 2),  # the same stream again, after the first part
            StreamAppend("c", []),
        ]
    )
    assert positions == [[2, 3], [4], [5], []]
    assert [r.version for r in store.read("a")] == [1, 2, 3]
    assert store.verify().events == 5


def test_append_many_idempotent_retry(store: EventStore) -> None:
    from ledger.store import StreamAppend

    batches = [StreamAppend("a", [deposit("1")], None), StreamAppend("b", [deposit("2")], None)]
    first = store.append_many(batches, idempotency_key="cycle-1")
    assert store.append_many(batches, idempotency_key="cycle-1") == first == [[1], [2]]
    swapped = [StreamAppend("b", [deposit("2")], None), StreamAppend("a", [deposit("1")], None)]
    with pytest.raises(IdempotencyConflict):
        store.append_many(swapped, idempotency_key="cycle-1")
    assert store.head() == 2


def test_a_unit_of_work_commits_its_appends_together_or_not_at_all(store: EventStore) -> None:
    clock = SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    store.clock = clock
    with store.unit_of_work():
        store.append("portfolio/main", [deposit("1")], expected_version=0)
        clock.advance(timedelta(minutes=5))
        store.append_many(
            [StreamAppend("portfolio/main", [deposit("2")]), StreamAppend("other", [deposit("3")])],
            idempotency_key="k",
        )
    assert store.head() == 3
    times = [r.recorded_at for r in store.read_all()]
    assert times[1] - times[0] == timedelta(minutes=5)  # each append read the clock itself
    with pytest.raises(RuntimeError, match="boom"), store.unit_of_work():
        store.append("portfolio/main", [deposit("4")], expected_version=2)
        assert store.stream_version("portfolio/main") == 2  # not visible before the end
        raise RuntimeError("boom")
    assert store.head() == 3 and store.verify().events == 3
    store.append("portfolio/main", [deposit("5")], expected_version=2)
    assert store.verify().events == 4


def test_append_all_writes_each_append_as_append_many_would(store: EventStore) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.clock = SimulatedClock(t0 + timedelta(days=1))
    store.append_many([StreamAppend("a", [deposit("1")])], idempotency_key="k1", run_id="r")
    held = [
        Append([StreamAppend("a", [deposit("1")])], "k1", "r", recorded_at=t0),  # replays
        Append(
            [StreamAppend("a", [deposit("2")], 1), StreamAppend("b", [deposit("3")], 0)],
            "k2",
            "r",
            recorded_at=t0 + timedelta(minutes=5),
        ),
        Append([StreamAppend("a", [deposit("4")])], recorded_at=t0 + timedelta(minutes=10)),
        Append([StreamAppend("b", [])], "k3"),  # nothing to write
        Append(
            [StreamAppend("a", [deposit("2")], 1), StreamAppend("b", [deposit("3")], 0)], "k2", "r"
        ),  # the same key again in one call: replays what this call wrote
    ]
    assert store.append_all(held) == [[[1]], [[2], [3]], [[4]], [[]], [[2], [3]]]
    rows = list(store.read_all())
    assert [(r.stream, r.version) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert [r.recorded_at for r in rows[1:]] == [
        t0 + timedelta(minutes=5),
        t0 + timedelta(minutes=5),
        t0 + timedelta(minutes=10),
    ]  # each append's own time
    assert [r.idempotency_key for r in rows] == ["k1", "k2", "k2", None]
    assert store.verify().events == 4
    # All or nothing: a stale expected version or a reused key refuses the whole call.
    first = Append([StreamAppend("c", [deposit("5")])])
    with pytest.raises(ConcurrencyError):
        store.append_all([first, Append([StreamAppend("a", [deposit("6")], 1)])])
    with pytest.raises(IdempotencyConflict):
        store.append_all([first, Append([StreamAppend("a", [deposit("7")])], "k1")])
    assert store.head() == 4 and store.stream_version("c") == 0
    # More keys than one lookup takes: each written once, then each replayed, none doubled.
    many = [Append([StreamAppend("c", [deposit("5")])], f"k-{i}") for i in range(600)]
    placed = store.append_all(many)
    assert placed[-1] == [[604]]
    assert store.append_all(many) == placed and store.head() == 604


def test_an_append_after_a_refused_one_writes_on_a_clean_transaction(store: EventStore) -> None:
    # SQLite writes on one connection per thread, kept between appends: a refusal inside
    # the transaction must leave it rolled back, not half-open, for the next append.
    store.append("s", [deposit("1")], expected_version=0)
    with pytest.raises(ConcurrencyError):
        store.append("s", [deposit("2")], expected_version=0)
    with pytest.raises(IdempotencyConflict):
        store.append("s", [deposit("3")], expected_version=1, idempotency_key="k")
        store.append("s", [deposit("4")], expected_version=2, idempotency_key="k")
    assert store.append("s", [deposit("5")], expected_version=2) == [3]
    assert [r.event for r in store.read("s")] == [deposit("1"), deposit("3"), deposit("5")]
    assert store.verify().events == 3


def test_appends_from_several_threads_chain_into_one_ledger(store: EventStore) -> None:
    def writer(name: str) -> None:
        for i in range(20):
            store.append(f"t/{name}", [deposit(str(i + 1))], expected_version=i)

    threads = [threading.Thread(target=writer, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.head() == 60
    assert [store.stream_version(f"t/{name}") for name in "abc"] == [20, 20, 20]
    assert store.verify().events == 60


def test_closing_a_sqlite_store_closes_its_write_connections(sqlite_url: str) -> None:
    # SQLite deletes the WAL file when the last connection to the ledger closes: none of
    # the per-thread write connections may outlive the store.
    path = sqlite_url.removeprefix("sqlite:///")
    store = open_store(sqlite_url)
    done = threading.Thread(target=lambda: store.append("t", [deposit("1")], expected_version=None))
    done.start()
    done.join()
    store.append("m", [deposit("2")], expected_version=0)
    assert os.path.exists(path + "-wal")
    store.close()
    assert not os.path.exists(path + "-wal")


def test_a_sqlite_store_keeps_few_write_connections_however_many_threads_wrote(
    sqlite_url: str,
) -> None:
    from ledger.store.sqlite import WRITERS_IDLE_MAX, SqliteBackend

    store = open_store(sqlite_url)
    barrier = threading.Barrier(8)

    def writer(name: str) -> None:
        barrier.wait()  # all eight at once: each takes a connection of its own
        for i in range(5):
            store.append(f"w/{name}", [deposit(str(i + 1))], expected_version=i)

    threads = [threading.Thread(target=writer, args=(str(n),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.head() == 40 and store.verify().events == 40
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    assert 1 <= len(backend._idle) <= WRITERS_IDLE_MAX  # the rest were closed
    store.close()
    assert backend._idle == []


def test_two_stores_on_one_ledger_append_in_turn(ledger_url: str) -> None:
    # Each store's write connection keeps the head it wrote (SQLite: Backend.memo); the
    # other store's commits in between must make it read the head again, or it would chain
    # onto a stale head (a position taken twice) or misjudge an expected version.
    with open_store(ledger_url) as one, open_store(ledger_url) as two:
        turns = itertools.cycle([(one, two), (two, one)])
        for version, (writer, other) in zip(range(12), turns, strict=False):
            assert writer.append("s", [deposit(str(version + 1))], expected_version=version) == [
                version + 1
            ]
            with pytest.raises(ConcurrencyError):  # the other store's view is current too
                other.append("s", [deposit("9")], expected_version=version)
        one.append("mine", [deposit("1")], expected_version=0)
        with two.unit_of_work():
            two.append("mine", [deposit("2")], expected_version=1)
            two.append("theirs", [deposit("3")], expected_version=0)
        assert one.append("mine", [deposit("4")], expected_version=2) == [16]
        assert one.verify().events == two.verify().events == 16
        assert [r.position for r in one.read_all()] == list(range(1, 17))


def test_a_write_connection_keeps_a_memo_only_while_nobody_else_commits(sqlite_url: str) -> None:
    from ledger.store.sqlite import SqliteBackend

    with open_store(sqlite_url) as store, open_store(sqlite_url) as other:
        backend = store.backend
        assert isinstance(backend, SqliteBackend)

        def memo_after(keep: object, between: object = None, fail: bool = False) -> object:
            failing = pytest.raises(RuntimeError) if fail else contextlib.nullcontext()
            with failing, backend.write(store.engine) as cursor:
                backend.memo(cursor)
                backend.keep(cursor, keep)
                if fail:
                    raise RuntimeError("the transaction fails after keep")
            if between is not None:
                other.append("x", [deposit("1")], expected_version=None)
            with backend.write(store.engine) as cursor:
                return backend.memo(cursor)

        kept = object()
        assert memo_after(kept) is kept  # committed, nobody else wrote
        assert memo_after(kept, between=True) is None  # another connection committed
        assert memo_after(kept, fail=True) is None  # rolled back: nothing kept
        store.append("y", [deposit("1")], expected_version=0)  # the writes' own commits ...
        assert memo_after(kept) is kept  # ... do not count as someone else's


def _random_append(rng: random.Random, versions: dict[str, int], t0: datetime) -> Append:
    """One append of the paths test: 1 to 3 batches (a stream may recur), 0 to 3 events
    each, any envelope ids, sometimes its own time, expected versions right, absent or
    stale, and now and then an amount the ledger refuses."""
    batches = []
    for _ in range(rng.randint(1, 3)):
        stream = rng.choice(["a", "b", "c", "portfolio/main"])
        made = [
            deposit(f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}")
            if rng.random() < 0.5
            else trade(f"t{rng.randint(1, 10**9)}")
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))
        ]
        if made and rng.random() < 0.05:
            made[-1] = deposit("-1")  # refused: nothing of the append may be written
        check = rng.choice(["right"] * 6 + ["none"] * 2 + ["stale"])
        expected = {"right": versions.get(stream, 0), "none": None}.get(check, -1)
        batches.append(StreamAppend(stream, made, expected))
    ids = [rng.choice([None, f"id-{rng.randint(1, 99)}"]) for _ in range(3)]
    at = t0 + timedelta(seconds=rng.randint(0, 10**6)) if rng.random() < 0.3 else None
    return Append(batches, None, ids[0], ids[1], ids[2], recorded_at=at)


@pytest.mark.parametrize("seed", [14, 15, 16])
def test_the_plain_path_writes_what_the_general_path_writes(
    ledger_url: str, tmp_path: Path, seed: int
) -> None:
    # ``append_all`` takes a shorter path for one append without an idempotency key (every
    # EventStore.append without one). Two ledgers given the same appends, one through each
    # path, must hold the same rows, column for column, and refuse the same appends alike.
    from sqlalchemy import text

    from ledger import init_store
    from ledger.errors import TallyError
    from ledger.store.schema import ROW_COLUMNS

    other = f"sqlite:///{tmp_path}/general.db"
    init_store(other)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clocks = [SimulatedClock(t0, tick=timedelta(milliseconds=1)) for _ in range(2)]
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    outcomes: list[object] = []
    with (
        open_store(ledger_url, clock=clocks[0]) as plain,
        open_store(other, clock=clocks[1]) as general,
    ):
        for turn in range(80):
            append = _random_append(rng, versions, t0)
            results: list[object] = []
            for write in (plain.append_all, general._appender._append_general):
                try:
                    results.append(write([append]))
                except TallyError as refused:
                    results.append((type(refused).__name__, refused.context))
            assert results[0] == results[1], f"turn {turn}: {append}"
            outcomes.append(results[0])
            if isinstance(results[0], list):
                for batch in append.batches:
                    versions[batch.stream] = versions.get(batch.stream, 0) + len(batch.events)
            if turn == 40:  # half-way, a unit of work on each side: its appends take the path too
                with plain.unit_of_work():
                    plain.append("u", [deposit("1")], expected_version=0)
                with general.unit_of_work():
                    general._appender._append_general(
                        [Append([StreamAppend("u", [deposit("1")], 0)])]
                    )
                versions["u"] = 1
        tables = []
        for store in (plain, general):
            with store.engine.connect() as conn:
                rows = conn.execute(text(f"SELECT {ROW_COLUMNS} FROM events ORDER BY position"))
                tables.append(
                    [
                        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in rows
                    ]
                )
            assert store.verify().events == len(tables[-1])
    assert tables[0] == tables[1]
    # The appends exercised what they were meant to: writes and each kind of refusal.
    kinds = {o[0] if isinstance(o, tuple) else "written" for o in outcomes}
    assert kinds == {"written", "ConcurrencyError", "ValueOutOfBounds"}
    assert len(tables[0]) > 80
