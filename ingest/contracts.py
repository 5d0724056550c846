"""The OHLCV data contract, explicit rounding to the market's steps, and candle gaps.

Every frame that comes in is checked: required columns, a UTC index, sorted, no duplicate
times, no missing values, positive prices, high >= max(open, close), low <= min(open, close),
volume >= 0. A violation is a ``DataContractViolated`` event naming the rule, the rows and the
values; in strict mode it is also a ``DataContractError``. Gaps between candles are reported
(``FeedGapDetected``), never filled in.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ingest.market import OHLCV_COLUMNS, to_decimal
from ledger import events
from ledger.errors import DataContractError, InputError
from ledger.market import (
    TIME_MAX,
    TIMEFRAME_MS,
    check_amount,
    round_all,
    step_rounder,
)

ROWS_SHOWN_MAX = 10
# The text of a number certainly within the ledger's amount bounds (``ledger.market``):
# plain digits (``plain_amount``), or a float's scientific form as files carry it, one digit
# and at most 17 after the point with an exponent of -1 to -9 (below 10, at most 18 digits
# and 26 places). Anything else is checked value by value.
_bounded_text = re.compile(
    r"-?[0-9]{1,18}(?:\.[0-9]{1,20})?|-?[0-9](?:\.[0-9]{1,17})?[eE]-0?[1-9]"
).fullmatch
Emit = Callable[[str, events.Event], None]


@dataclass(frozen=True)
class Violation:
    rule: str
    rows: list[int]
    values: list[str]


def check_ohlcv(frame: pd.DataFrame) -> list[Violation]:
    """Return every broken rule of the contract (an empty list: the frame is good)."""
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        return [Violation("required_columns", [], missing)]
    found: list[Violation] = []
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or str(index.tz) != "UTC":
        found.append(Violation("utc_index", [], [str(getattr(index, "tz", index.dtype))]))
    else:
        order = index.asi8
        found += _rows(
            "sorted",
            [i for i in range(1, len(order)) if order[i] < order[i - 1]],
            lambda i: str(index[i]),
        )
        found += _rows(
            "no_duplicates",
            [int(i) for i in (index.duplicated()).nonzero()[0]],
            lambda i: str(index[i]),
        )
    cells = {c: list(frame[c]) for c in OHLCV_COLUMNS}
    if not any(_has_missing(cells[c]) for c in OHLCV_COLUMNS):
        return found + _rules_at_once(cells)
    nan = [i for i in range(len(frame)) if any(_missing(cells[c][i]) for c in OHLCV_COLUMNS)]
    found += _rows("no_missing_values", nan, lambda i: str({c: cells[c][i] for c in cells}))
    absent = set(nan)
    good = [i for i in range(len(frame)) if i not in absent]
    return found + _rules(cells, good)


def _rules(cells: dict[str, list[Any]], good: list[int]) -> list[Violation]:
    """The value rules over the rows ``good`` (the ones with every value present)."""
    o, h, low, c, v = (cells[k] for k in OHLCV_COLUMNS)
    found = _rows(
        "positive_prices",
        [i for i in good if min(o[i], h[i], low[i], c[i]) <= 0],
        lambda i: f"o={o[i]} h={h[i]} l={low[i]} c={c[i]}",
    )
    found += _rows(
        "high_at_least_open_close",
        [i for i in good if h[i] < max(o[i], c[i])],
        lambda i: f"h={h[i]} o={o[i]} c={c[i]}",
    )
    found += _rows(
        "low_at_most_open_close",
        [i for i in good if low[i] > min(o[i], c[i])],
        lambda i: f"l={low[i]} o={o[i]} c={c[i]}",
    )
    found += _rows("volume_not_negative", [i for i in good if v[i] < 0], lambda i: f"v={v[i]}")
    return found


def _rules_at_once(cells: dict[str, list[Any]]) -> list[Violation]:
    """``_rules`` over every row of a frame with no missing value, a column at a time: the
    same exact comparisons (numpy calls each value's own, Decimal's), without a Python
    loop per row; the rows of a broken rule are then named as ``_rules`` names them."""
    o, h, low, c, v = (np.array(cells[k], dtype=object) for k in OHLCV_COLUMNS)
    broken = (
        (o <= 0) | (h <= 0) | (low <= 0) | (c <= 0)
        | (h < np.maximum(o, c)) | (low > np.minimum(o, c)) | (v < 0)
    )  # fmt: skip
    rows = [int(i) for i in broken.nonzero()[0]]
    return _rules(cells, rows) if rows else []


def _has_missing(values: list[Any]) -> bool:
    """Whether any of ``values`` is missing (``_missing``), in C loops for Decimal columns."""
    if set(map(type, values)) <= {Decimal}:
        return any(map(Decimal.is_nan, values))
    return any(map(_missing, values))


def _missing(value: object) -> bool:
    if isinstance(value, Decimal):
        return value.is_nan()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _rows(rule: str, rows: list[int], show: Callable[[int], str]) -> list[Violation]:
    if not rows:
        return []
    return [Violation(rule, rows, [show(i) for i in rows[:ROWS_SHOWN_MAX]])]


def enforce_ohlcv(
    frame: pd.DataFrame, *, symbol: str, source: str, strict: bool, emit: Emit
) -> list[Violation]:
    """Check a frame, record each violation as an event; in strict mode raise on the first."""
    found = check_ohlcv(frame)
    for violation in found:
        emit(
            f"symbol/{symbol}",
            events.DataContractViolated(
                symbol=symbol,
                source=source,
                rule=violation.rule,
                rows=violation.rows[:1000],
                values=violation.values,
                strict=strict,
            ),
        )
    if strict and found:
        first = found[0]
        raise DataContractError(
            f"{symbol} from {source} breaks the OHLCV contract: {first.rule}",
            symbol=symbol,
            rule=first.rule,
            rows=first.rows[:ROWS_SHOWN_MAX],
            values=first.values[:3],
        )
    return found


VOLUME_STEP = Decimal("0.00000001")  # volumes at satoshi precision: float noise off


def round_ohlcv(
    frame: pd.DataFrame, price_step: Decimal, volume_step: Decimal | None = VOLUME_STEP
) -> pd.DataFrame:
    """Round prices (and volumes) to the market's steps, explicitly, half to even: what
    ``run --data`` prices with and ``import ohlcv`` records, so the two never differ."""
    steps = {
        "open": price_step,
        "high": price_step,
        "low": price_step,
        "close": price_step,
        "volume": volume_step,
    }
    data: dict[str, list[object]] = {}
    for column, step in steps.items():
        values = frame[column].tolist()
        if step is not None and set(map(type, values)) <= {Decimal}:
            values = round_all(values, step)  # a column at once, in C for a power of ten
        elif step is not None:
            rounded = step_rounder(step)
            values = [rounded(v) if isinstance(v, Decimal) else v for v in values]
        data[column] = values
    return pd.DataFrame(data, index=frame.index, columns=list(OHLCV_COLUMNS))


def candle_gaps(frame: pd.DataFrame, timeframe: str) -> list[tuple[int, int, int]]:
    """Return (expected ms, received ms, missing candles) for each gap between candles."""
    step = TIMEFRAME_MS.get(timeframe)
    if step is None:
        raise InputError(
            f"unknown timeframe {timeframe!r}", hint=f"use one of {sorted(TIMEFRAME_MS)}"
        )
    stamps = pd.DatetimeIndex(frame.index).as_unit("ms").asi8  # whatever the stored unit
    gaps = []
    for before, after in itertools.pairwise(stamps):
        if after - before > step:
            gaps.append((int(before + step), int(after), int((after - before) // step - 1)))
    return gaps


def report_gaps(frame: pd.DataFrame, *, symbol: str, timeframe: str, emit: Emit) -> int:
    """Record each candle gap as ``FeedGapDetected``; return the number of missing candles."""
    missing = 0
    for expected, received, count in candle_gaps(frame, timeframe):
        emit(
            f"symbol/{symbol}",
            events.FeedGapDetected(
                feed=f"candles/{symbol}/{timeframe}",
                expected=expected,
                received=received,
                missing=count,
            ),
        )
        missing += count
    return missing


# Epoch milliseconds of TIME_MIN and TIME_MAX; below SECONDS_LOOK_MAX a number is as
# plausible in seconds (up to year 5138) as in milliseconds (1970-1973): refused as
# ambiguous rather than read as 1970.
EPOCH_MS_MAX = int(TIME_MAX.timestamp() * 1000)
SECONDS_LOOK_MAX = 100_000_000_000


def epoch_ms(stamp: int) -> int:
    """``stamp`` if it is epoch milliseconds within the ledger's times; ``ValueError`` (with
    what to do) for seconds, negative or out-of-range numbers."""
    if stamp < 0:
        raise ValueError(f"{stamp} is before 1970")
    if stamp < SECONDS_LOOK_MAX:
        raise ValueError(
            f"{stamp} looks like epoch seconds; timestamps are epoch milliseconds "
            f"(multiply by 1000)"
        )
    if stamp >= EPOCH_MS_MAX:
        raise ValueError(f"{stamp} is after {TIME_MAX.date()} in epoch milliseconds")
    return stamp


def _columns_at_once(raw: pd.DataFrame) -> pd.DataFrame | None:
    """The frame of a well-formed file, a column at a time (no per-row Python loop); None
    when any value is bad, so the caller reads row by row and names the line."""
    try:
        stamps = [epoch_ms(int(text)) for text in raw["timestamp"].tolist()]
        data: dict[str, list[Decimal | None]] = {}
        for column in OHLCV_COLUMNS:
            texts = raw[column].tolist()
            if all(map(_bounded_text, texts)):  # every one within the bounds by its text
                data[column] = list(map(Decimal, texts))
                continue
            values = [Decimal(text) if text else None for text in texts]
            for value in values:
                if value is not None:
                    check_amount(value, column)
            data[column] = values
    except (TypeError, ValueError, ArithmeticError):
        return None
    index = pd.DatetimeIndex(pd.to_datetime(stamps, unit="ms", utc=True), name="timestamp")
    return pd.DataFrame(data, index=index, columns=list(OHLCV_COLUMNS))


def read_ohlcv_csv(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """Read ``timestamp,open,high,low,close,volume`` (ccxt row order) with exact Decimals;
    from ``content``, the file's bytes already read, when given (``path`` names it).

    The numbers are read as text, so ``0.0027589999999999997`` stays exactly that until it is
    rounded to the market's step: no binary float ever touches the prices.
    """
    source = path if content is None else io.BytesIO(content)
    try:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise InputError(
            "the OHLCV file is empty",
            hint="export candles with a header line timestamp,open,high,low,close,volume",
            file=str(path),
        ) from e
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read OHLCV file: {e}", file=str(path)) from e
    expected = ["timestamp", *OHLCV_COLUMNS]
    if list(raw.columns) != expected:
        raise InputError(
            f"OHLCV columns must be {','.join(expected)}; found {','.join(raw.columns)}",
            hint="export candles in ccxt row order with a header line",
            file=str(path),
        )
    if raw.empty:
        raise InputError(
            "the OHLCV file holds a header but no candles",
            hint="export at least one candle row under the header",
            file=str(path),
        )
    fast = _columns_at_once(raw)
    if fast is not None:
        return fast
    # Something in the file is wrong: read it row by row to name the line.
    data: dict[str, list[Decimal | None]] = {c: [] for c in OHLCV_COLUMNS}
    stamps: list[int] = []
    for line, row in enumerate(raw.itertuples(index=False), start=2):
        column = "timestamp"
        try:
            stamps.append(epoch_ms(int(row[0])))
            for column, text in zip(OHLCV_COLUMNS, row[1:], strict=True):
                value = to_decimal(text)
                if value is not None:
                    check_amount(value, column)
                data[column].append(value)
        except (TypeError, ValueError, ArithmeticError) as e:
            raise InputError(
                f"bad OHLCV row: {column}: {e}",
                hint="fix or remove the row",
                file=str(path),
                line=line,
                column=column,
            ) from e
    index = pd.DatetimeIndex(pd.to_datetime(stamps, unit="ms", utc=True), name="timestamp")
    return pd.DataFrame(data, index=index, columns=list(OHLCV_COLUMNS))
