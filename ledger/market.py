"""Shared market vocabulary, kept once: symbols, timeframes, step rounding, named limits.

Every layer speaks it (ingest reads markets, projections value them, the shell configures
them), so it lives in the core.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Context, Decimal
from itertools import repeat
from typing import Any

from ledger.errors import InputError, ValueOutOfBounds

# The longest error text an event carries (a provider's message, a skip reason).
MESSAGE_LENGTH_MAX = 300

# Bounds of every amount, price and quantity in the ledger. Within them the folds always
# compute (no Overflow, no undefined division) in Python's default decimal context, and a
# value round-trips through its text exactly. The event catalog checks them when an event
# is encoded, so no path into the ledger can skip them.
AMOUNT_ABS_LIMIT = Decimal("1e18")  # |x| < this
AMOUNT_DIGITS_MAX = 38  # significant digits
AMOUNT_PLACES_MAX = 28  # digits after the point
# Every time in the ledger is in [TIME_MIN, TIME_MAX).
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
# Account names: what a stream name, a file name and a URL path can all carry as is.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
NAME_RULE = "1-128 of letters, digits and . _ : @ + - (starting with a letter or digit)"


# The text of an amount that is certainly within bounds: at most 18 digits before the point
# and 20 after it (below 1e18, at most 38 digits). A match object or None; one C call.
plain_amount = re.compile(r"-?[0-9]{1,18}(?:\.[0-9]{1,20})?").fullmatch


def amount_problem(value: Decimal) -> str | None:
    """Why ``value`` cannot be a ledger amount, or None if it can (it runs for every amount
    of every event appended: the common case costs a few tenths of a microsecond)."""
    # Fast path, from the text alone (one C regex match; 5x cheaper than the digit tuple):
    # plain digits with at most 18 before the point and 20 after it are below 1e18 with at
    # most 38 digits.
    if plain_amount(str(value)) is not None:
        return None
    if not value.is_finite():  # (before any comparison: a signalling NaN cannot compare)
        return "it is not a finite number"
    if not value:
        return None
    if value.adjusted() >= 18:  # the leading digit's power of ten
        return f"its magnitude is not below {AMOUNT_ABS_LIMIT}"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    kept = len(digits)
    while digits[kept - 1] == 0:  # trailing zeros say nothing: 1.500 is 1.5
        kept -= 1
        exponent += 1
    if exponent < -AMOUNT_PLACES_MAX:
        return f"it has more than {AMOUNT_PLACES_MAX} decimal places"
    if kept > AMOUNT_DIGITS_MAX:
        return f"it has more than {AMOUNT_DIGITS_MAX} significant digits"
    return None


def check_amount(value: Decimal, what: str, *, positive: bool = False, **where: Any) -> Decimal:
    """``value`` if it is a usable ledger amount (> 0 with ``positive``); else
    ``ValueOutOfBounds`` naming ``what`` and ``where``."""
    problem = amount_problem(value)
    if problem is None and positive and value <= 0:
        problem = "it must be positive"
    if problem is not None:
        raise ValueOutOfBounds(f"{what} = {value} is refused: {problem}", **where)
    return value


def check_time(moment: datetime, what: str, **where: Any) -> datetime:
    """``moment`` if it is timezone-aware and within [TIME_MIN, TIME_MAX)."""
    if moment.tzinfo is None:
        raise ValueOutOfBounds(f"{what} = {moment} has no timezone", **where)
    if not TIME_MIN <= moment < TIME_MAX:
        raise ValueOutOfBounds(
            f"{what} = {moment.isoformat()} is outside {TIME_MIN.date()} .. "
            f"{TIME_MAX.date()} (exclusive)",
            **where,
        )
    return moment


def check_name(name: str, what: str, **where: Any) -> str:
    """``name`` if it is a valid account name."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueOutOfBounds(
            f"{what} {name!r} is not a valid name", hint=f"a name is {NAME_RULE}", **where
        )
    return name


# Candle lengths Tally knows, in milliseconds.
TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}

_SPLIT: dict[str, tuple[str, str]] = {}


def timeframe_s(timeframe: str) -> int:
    """The length of a candle of ``timeframe`` in seconds (0 for an unknown timeframe)."""
    return TIMEFRAME_MS.get(timeframe, 0) // 1000


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BASE/QUOTE`` (or ``BASE/QUOTE:SETTLE``) -> (base, quote); an ``InputError`` for
    anything else. Cached: it runs once per money event in every replay."""
    known = _SPLIT.get(symbol)
    if known is not None:
        return known
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise InputError(f"a symbol is BASE/QUOTE, got {symbol!r}", symbol=symbol)
    _SPLIT[symbol] = result = (base, quote.split(":")[0])
    return result


def round_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` to a multiple of ``step`` (half to even), keeping the step's exponent."""
    if step <= 0:
        raise ValueError(f"a price or amount step must be positive, got {step}")
    units = (value / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return (units * step).quantize(step)


def step_rounder(step: Decimal) -> Callable[[Decimal], Decimal]:
    """``round_to_step`` for one step, as a function: a plain ``quantize`` when the step is
    a power of ten (the same result, eight times faster, for a million candles)."""
    if step <= 0:
        raise ValueError(f"a price or amount step must be positive, got {step}")
    if step.as_tuple().digits == (1,):  # 1eN written as such: quantize keeps its exponent
        return lambda value: value.quantize(step, rounding=ROUND_HALF_EVEN)
    return lambda value: round_to_step(value, step)


# Python's default context, rounding half to even: ``Context.quantize`` mapped over a column
# rounds it without a Python call per value (twice as fast as a lambda per value).
_HALF_EVEN = Context(rounding=ROUND_HALF_EVEN)


def round_all(values: Iterable[Decimal], step: Decimal) -> list[Decimal]:
    """``round_to_step`` of every value (half to even), as ``step_rounder`` rounds them."""
    if step > 0 and step.as_tuple().digits == (1,):  # a power of ten: see step_rounder
        return list(map(_HALF_EVEN.quantize, values, repeat(step)))
    return list(map(step_rounder(step), values))


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` down to a multiple of ``step`` (a quantity never rounds up)."""
    return (value / step).to_integral_value(ROUND_DOWN) * step
