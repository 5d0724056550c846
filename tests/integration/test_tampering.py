"""Tamper with a ledger the way an attacker with database access would, and check that
verification names the first bad position and what is wrong, on both backends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from ledger import events
from ledger.codec import chain_hash
from ledger.errors import ChainIntegrityError, ImmutabilityViolation, UnknownEventType
from ledger.store import EventStore


def deposit(amount: str) -> events.FundsDeposited:
    return events.FundsDeposited(account="main", asset="USDT", amount=Decimal(amount))


class Attacker:
    """Straight SQL on the ledger's own database, immutability triggers dropped first."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.dialect = store.backend.name

    def sql(self, statement: str, **params: Any) -> None:
        # Through the store's own driver-error boundary, as any Tally code path would be.
        with self.store.backend.guard(), self.store.engine.begin() as conn:
            conn.execute(text(statement), params)

    def row(self, position: int) -> Any:
        with self.store.engine.connect() as conn:
            return conn.execute(
                text("SELECT record, prev_hash, hash FROM events WHERE position = :p"),
                {"p": position},
            ).one()

    def drop_triggers(self) -> None:
        if self.dialect == "postgresql":
            self.sql("DROP TRIGGER events_refuse_change ON events")
        else:
            self.sql("DROP TRIGGER events_refuse_update")
            self.sql("DROP TRIGGER events_refuse_delete")

    def rewrite_record(self, position: int, old: bytes, new: bytes, *, rehash: bool) -> None:
        record, prev_hash, _ = self.row(position)
        changed = bytes(record).replace(old, new)
        assert changed != bytes(record)
        digest = chain_hash(bytes(prev_hash), changed)
        if rehash:
            self.sql(
                "UPDATE events SET record = :r, hash = :h WHERE position = :p",
                r=changed,
                h=digest,
                p=position,
            )
        else:
            self.sql("UPDATE events SET record = :r WHERE position = :p", r=changed, p=position)


@pytest.fixture
def ledger(store: EventStore) -> EventStore:
    """Ten events in three streams, appended in four batches."""
    store.append("portfolio/main", [deposit(str(1000 + i)) for i in range(4)], expected_version=0)
    store.append("portfolio/other", [deposit(str(2000 + i)) for i in range(3)], expected_version=0)
    store.append("portfolio/main", [deposit("3000"), deposit("3001")], expected_version=4)
    store.append("portfolio/third", [deposit("4000")], expected_version=0, idempotency_key="k")
    assert store.verify().events == 10
    return store


def assert_broken(store: EventStore, position: int, kind: str) -> ChainIntegrityError:
    with pytest.raises(ChainIntegrityError) as caught:
        store.verify()
    error = caught.value
    assert (error.position, error.kind) == (position, kind), error.message
    assert f"position {position}" in error.message
    return error


def test_triggers_refuse_update_and_delete(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    for statement in (
        "UPDATE events SET stream = 'x' WHERE position = 1",
        "DELETE FROM events WHERE position = 10",
        "UPDATE idempotency_keys SET count = 0",
        "DELETE FROM idempotency_keys",
    ):
        with pytest.raises(ImmutabilityViolation, match="immutable") as refused:
            attacker.sql(statement)
        assert refused.value.exit_code == 1  # an integrity failure, not a user error
    assert ledger.verify().events == 10


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_url: str) -> None:
    from ledger import open_store

    with open_store(pg_url) as store:
        store.append("s", [deposit("1")], expected_version=0)
        with pytest.raises(ImmutabilityViolation, match="immutable"):
            Attacker(store).sql("TRUNCATE events")
        assert store.head() == 1


def test_changed_payload_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.rewrite_record(6, b'"2001"', b'"9001"', rehash=False)
    error = assert_broken(ledger, 6, "payload_changed")
    assert "changed" in error.message
    with pytest.raises(ChainIntegrityError):
        list(ledger.read_all())  # the streaming reader checks the same chain


def test_deleted_row_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.sql("DELETE FROM events WHERE position = 4")
    error = assert_broken(ledger, 4, "row_missing")
    assert "deleted" in error.message


def test_deleted_first_row_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.sql("DELETE FROM events WHERE position = 1")
    assert_broken(ledger, 1, "row_missing")


def test_swapped_rows_are_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    # Swap rows 3 and 8 by renumbering them: the whole rows move, hashes and all.
    attacker.sql("UPDATE events SET position = -1 WHERE position = 3")
    attacker.sql("UPDATE events SET position = 3 WHERE position = 8")
    attacker.sql("UPDATE events SET position = 8 WHERE position = -1")
    error = assert_broken(ledger, 3, "rows_reordered")
    assert "position 8" in error.message


def test_forged_hash_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    # Change row 5 and recompute its hash: it is self-consistent, but row 6 still links to
    # the original.
    attacker.rewrite_record(5, b'"2000"', b'"2999"', rehash=True)
    error = assert_broken(ledger, 5, "hash_forged")
    assert "recomputed" in error.message


def test_changed_index_column_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.sql("UPDATE events SET stream = 'portfolio/evil' WHERE position = 2")
    error = assert_broken(ledger, 2, "column_changed")
    assert "stream" in error.message
    with pytest.raises(ChainIntegrityError):
        list(ledger.read("portfolio/evil"))


def test_changed_prev_hash_column_is_named(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.sql("UPDATE events SET prev_hash = :h WHERE position = 7", h=b"\x01" * 32)
    assert_broken(ledger, 7, "column_changed")


def test_truncated_tail_is_caught_with_a_recorded_head(ledger: EventStore) -> None:
    head = ledger.head_hash()
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.sql("DELETE FROM events WHERE position = 10")
    # Without an anchor a shorter chain is a valid chain: that is why the head is recorded.
    assert ledger.verify().events == 9
    with pytest.raises(ChainIntegrityError) as caught:
        ledger.verify(expect_head=head)
    assert caught.value.kind == "head_mismatch"


def test_append_refuses_to_chain_onto_a_tampered_head(ledger: EventStore) -> None:
    attacker = Attacker(ledger)
    attacker.drop_triggers()
    attacker.rewrite_record(10, b'"4000"', b'"4999"', rehash=False)
    with pytest.raises(ChainIntegrityError) as caught:
        ledger.append("s", [deposit("1")], expected_version=0)
    assert caught.value.position == 10
    assert ledger.head() == 10


def test_row_with_unknown_event_type_is_reported_with_its_position(ledger: EventStore) -> None:
    """A foreign row with a valid chain link: the chain holds, decoding names the row."""
    record = (
        b'[11,"portfolio/main",7,"FundsTeleported","2026-01-01T00:00:00Z",null,null,null,'
        b'null,{"type":"FundsTeleported","account":"main"}]'
    )
    prev = ledger.head_hash()
    Attacker(ledger).sql(
        "INSERT INTO events (position, stream, version, type, recorded_at_us, record, "
        "prev_hash, hash) VALUES (11, 'portfolio/main', 7, 'FundsTeleported', 0, :r, :p, :h)",
        r=record,
        p=prev,
        h=chain_hash(prev, record),
    )
    with pytest.raises(UnknownEventType) as caught:
        ledger.verify()
    assert caught.value.context["position"] == 11
    assert "FundsTeleported" in str(caught.value)
    with pytest.raises(UnknownEventType):
        list(ledger.read("portfolio/main"))
