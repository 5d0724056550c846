"""Shared market vocabulary, kept once: symbols, timeframes, step rounding, named limits.

Every layer speaks it (ingest reads markets, projections value them, the shell configures
them), so it lives in the core.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from ledger.errors import InputError

# The longest error text an event carries (a provider's message, a skip reason).
MESSAGE_LENGTH_MAX = 300

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


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round ``value`` down to a multiple of ``step`` (a quantity never rounds up)."""
    return (value / step).to_integral_value(ROUND_DOWN) * step
