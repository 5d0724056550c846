"""Property tests of the codec (fixed seed: a failure reproduces)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import events
from ledger.codec import Envelope, decode_record, encode_record
from ledger.errors import ValueOutOfBounds
from ledger.market import NAME_PATTERN, amount_problem

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
# Amounts the ledger takes: positive, below 1e18, at most 28 places and 38 digits.
in_bounds = st.decimals(
    min_value=Decimal("1e-28"), max_value=Decimal("999999999999999999"), places=None
).filter(lambda d: amount_problem(d) is None)


@settings(max_examples=300, derandomize=True)
@given(amount=in_bounds, position=st.integers(1, 2**53))
def test_every_amount_within_bounds_is_accepted_and_round_trips(
    amount: Decimal, position: int
) -> None:
    event = events.FundsDeposited(account="main", asset="USDT", amount=amount)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = encode_record(
        Envelope(recorded_at=at), event, position=position, stream="s", version=1
    )
    back = decode_record(record).event
    assert back == event and str(back.amount) == str(amount)  # type: ignore[union-attr]


@settings(max_examples=300, derandomize=True)
@given(amount=decimals, account=st.text(max_size=20), position=st.integers(1, 2**53))
def test_any_decimal_in_bounds_round_trips_exactly_and_any_other_is_refused(
    amount: Decimal, account: str, position: int
) -> None:
    event = events.FundsDeposited(account=account, asset="USDT", amount=amount)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fits = amount_problem(amount) is None and amount > 0 and NAME_PATTERN.fullmatch(account)
    if not fits:  # refused before a byte is encoded, as a user error naming the field
        with pytest.raises(ValueOutOfBounds) as refused:
            encode_record(Envelope(recorded_at=at), event, position=position, stream="s", version=1)
        assert refused.value.exit_code == 2 and refused.value.context["field"] in (
            "amount",
            "account",
        )
        return
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


@settings(max_examples=300, derandomize=True)
@given(
    amounts=st.lists(st.decimals(places=None), min_size=1, max_size=4),
    position=st.integers(1, 2**53),
)
def test_amounts_inside_a_mapping_are_checked_like_any_other(
    amounts: list[Decimal], position: int
) -> None:
    balances = {f"A{i}": amount for i, amount in enumerate(amounts)}
    event = events.BalanceObserved(account="main", venue="paper", balances=balances)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    if any(amount_problem(amount) is not None for amount in amounts):  # NaN, 1e18, 40 places
        with pytest.raises(ValueOutOfBounds) as refused:
            encode_record(Envelope(recorded_at=at), event, position=position, stream="s", version=1)
        assert refused.value.exit_code == 2 and refused.value.context["field"] == "balances"
        return
    record = encode_record(
        Envelope(recorded_at=at), event, position=position, stream="s", version=1
    )
    assert decode_record(record).event == event
