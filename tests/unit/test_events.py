from __future__ import annotations

import typing
from decimal import Decimal

import pytest

from ledger import events
from ledger.codec import decode_event, decode_record, encode_event
from ledger.errors import UnknownEventType

pytestmark = pytest.mark.smoke


def test_catalog_names_are_unique_and_past_tense() -> None:
    names = [cls.__name__ for cls in typing.get_args(events.AnyEvent)]
    assert len(names) == len(set(names)) == len(events.EVENT_TYPES)
    for name in names:
        # Irregular past tenses, and names the issues give verbatim.
        assert name.endswith("ed") or name in {
            "SourceFailedOver",
            "FundsWithdrawn",
            "OrderOutcomeUnknown",
            "LedgerUnavailable",
        }, name


def test_events_are_frozen_and_keyword_only() -> None:
    event = events.FundsDeposited(account="main", asset="USDT", amount=Decimal("1"))
    with pytest.raises(AttributeError):
        event.amount = Decimal("2")  # type: ignore[misc]
    with pytest.raises(TypeError):
        events.FundsDeposited("main", "USDT", Decimal("1"))  # type: ignore[misc]


def test_money_fields_are_known_for_every_event() -> None:
    assert events.TradeExecuted._decimal_fields == ("qty", "price", "fee")
    assert events.SnapshotSealed._decimal_fields == ("marks",)
    assert events.RunStarted._decimal_fields == ()


@pytest.mark.parametrize("bad", [1.5, 2, "3", Decimal("NaN"), Decimal("Infinity")])
def test_non_decimal_money_is_refused_at_encoding(bad: object) -> None:
    event = events.FundsDeposited(account="main", asset="USDT", amount=bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="amount"):
        encode_event(event)


def test_float_inside_a_marks_dict_is_refused() -> None:
    event = events.SnapshotSealed(
        snapshot_id="s", fresh=1, stale=0, failed=0, marks={"BTC/USDT": 1.0}
    )  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="marks"):
        encode_event(event)


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="FundsTeleported"):
        decode_event(b'{"type":"FundsTeleported"}')
    with pytest.raises(UnknownEventType, match="not valid JSON"):
        decode_record(b"[1,", position=7)


def test_a_field_added_with_a_default_reads_old_records() -> None:
    """Schema evolution: records written before a defaulted field existed still decode."""
    old = b'{"type":"RunFinished","run_id":"r"}'
    assert decode_event(old) == events.RunFinished(run_id="r", cycles=0, status="completed")
