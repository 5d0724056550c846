"""Property tests of the codec (fixed seed: a failure reproduces)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import events
from ledger.codec import Envelope, decode_record, encode_record

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)


@settings(max_examples=300, derandomize=True)
@given(amount=decimals, account=st.text(max_size=20), position=st.integers(1, 2**53))
def test_any_decimal_round_trips_exactly(amount: Decimal, account: str, position: int) -> None:
    event = events.FundsDeposited(account=account, asset="USDT", amount=amount)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = encode_record(
        Envelope(recorded_at=at), event, position=position, stream="s", version=1
    )
    back = decode_record(record)
    assert back.event == event
    assert str(back.event.amount) == str(amount)  # type: ignore[union-attr]
    assert (
        encode_record(
            Envelope(recorded_at=at), back.event, position=position, stream="s", version=1
        )
        == record
    )
