"""Market data as Tally holds it: exact Decimals, UTC times, explicit rounding to steps.

Exchanges (and ccxt) hand out binary floats such as ``0.0027589999999999997``. A float is
turned into the shortest decimal that reads back as the same float (``repr``), never into
its binary expansion, and then rounded to the market's step, explicitly.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

import msgspec

from ledger.clock import EPOCH

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


class Ticker(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    timestamp: datetime | None


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    free: dict[str, Decimal]
    used: dict[str, Decimal]
    total: dict[str, Decimal]


def to_decimal(value: object) -> Decimal | None:
    """Return ``value`` (float, int, str, Decimal or None) as an exact Decimal, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value}")
        return Decimal(repr(value))  # shortest round-trip form, not the binary expansion
    try:
        result = Decimal(str(value))
    except InvalidOperation as e:
        raise ValueError(f"not a number: {value!r}") from e
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def utc_from_ms(ms: int) -> datetime:
    # Integer arithmetic: a float of seconds can turn .123 into .122999.
    return EPOCH + timedelta(milliseconds=int(ms))
