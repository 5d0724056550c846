"""The OHLCV data contract, explicit rounding to the market's steps, and candle gaps.

Every frame that comes in is checked: required columns, a UTC index, sorted, no duplicate
times, no missing values, positive prices, high >= max(open, close), low <= min(open, close),
volume >= 0. A violation is a ``DataContractViolated`` event naming the rule, the rows and the
values; in strict mode it is also a ``DataContractError``. Gaps between candles are reported
(``FeedGapDetected``), never filled in.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.market import OHLCV_COLUMNS, to_decimal, utc_from_ms
from ingest.ohlcv import Candles
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
_BOUNDED = r"-?[0-9]{1,18}(?:\.[0-9]{1,20})?|-?[0-9](?:\.[0-9]{1,17})?[eE]-0?[1-9]"
# A whole column of them, one a line: one C call for the column instead of one a value.
_bounded_column = re.compile(rf"(?:{_BOUNDED})(?:\n(?:{_BOUNDED}))*").fullmatch
Emit = Callable[[str, events.Event], None]
ZERO = Decimal(0)
CSV_HEADER = ["timestamp", *OHLCV_COLUMNS]

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Violation:
    rule: str
    rows: list[int]
    values: list[str]


def check_ohlcv(frame: pd.DataFrame) -> list[Violation]:
    """Return every broken rule of the contract (an empty list: the frame is good)."""
    import pandas as pd

    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        return [Violation("required_columns", [], missing)]
    found: list[Violation] = []
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or str(index.tz) != "UTC":
        found.append(Violation("utc_index", [], [str(getattr(index, "tz", index.dtype))]))
    else:
        found += _order_rules(index.asi8.tolist(), lambda i: str(index[i]))
    return found + _value_rules({c: list(frame[c]) for c in OHLCV_COLUMNS})


def check_candles(candles: Candles) -> list[Violation]:
    """``check_ohlcv`` of the same candles as columns (their times are UTC by making)."""
    opens = candles.opens
    found = _order_rules(opens, lambda i: str(utc_from_ms(opens[i])))
    return found + _value_rules({c: candles.columns[c] for c in OHLCV_COLUMNS})


def _order_rules(stamps: Sequence[int], show: Callable[[int], str]) -> list[Violation]:
    """Sorted by time, and no time twice (a repeat after its first is the duplicate)."""
    later = stamps[1:]
    if not any(map(operator.lt, later, stamps)) and len(set(stamps)) == len(stamps):
        return []  # (the common case, in C loops; the rows are named only if it is not)
    found = _rows("sorted", [i for i in range(1, len(stamps)) if stamps[i] < stamps[i - 1]], show)
    seen: set[int] = set()
    repeated = []
    for i, stamp in enumerate(stamps):
        if stamp in seen:
            repeated.append(i)
        seen.add(stamp)
    return found + _rows("no_duplicates", repeated, show)


def _value_rules(cells: Mapping[str, Sequence[Any]]) -> list[Violation]:
    """No missing value, then the value rules over the rows that have every value."""
    if not any(_has_missing(cells[c]) for c in OHLCV_COLUMNS):
        return _rules_at_once(cells)
    count = len(cells["open"])
    nan = [i for i in range(count) if any(_missing(cells[c][i]) for c in OHLCV_COLUMNS)]
    found = _rows("no_missing_values", nan, lambda i: str({c: cells[c][i] for c in cells}))
    absent = set(nan)
    good = [i for i in range(count) if i not in absent]
    return found + _rules(cells, good)


def _rules(cells: Mapping[str, Sequence[Any]], good: list[int]) -> list[Violation]:
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


def _rules_at_once(cells: Mapping[str, Sequence[Any]]) -> list[Violation]:
    """``_rules`` over every row of candles with no missing value, a column at a time: the
    same exact comparisons (each value's own, Decimal's) in C loops, without a Python loop
    per row; only if a rule is broken are the rows named, as ``_rules`` names them."""
    o, h, low, c, v = (cells[k] for k in OHLCV_COLUMNS)
    le, lt, gt = operator.le, operator.lt, operator.gt
    broken = (
        any(map(le, o, repeat(ZERO))) or any(map(le, h, repeat(ZERO)))
        or any(map(le, low, repeat(ZERO))) or any(map(le, c, repeat(ZERO)))
        or any(map(lt, h, map(max, o, c))) or any(map(gt, low, map(min, o, c)))
        or any(map(lt, v, repeat(ZERO)))
    )  # fmt: skip
    return _rules(cells, list(range(len(o)))) if broken else []


def _has_missing(values: Sequence[Any]) -> bool:
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
    import pandas as pd

    data = _rounded({c: frame[c].tolist() for c in OHLCV_COLUMNS}, price_step, volume_step)
    return pd.DataFrame(data, index=frame.index, columns=list(OHLCV_COLUMNS))


def round_candle_columns(
    candles: Candles, price_step: Decimal, volume_step: Decimal | None = VOLUME_STEP
) -> Candles:
    """``round_ohlcv`` of candles as columns."""
    return Candles(candles.opens, _rounded(candles.columns, price_step, volume_step))


def _rounded(
    columns: Mapping[str, Sequence[Any]], price_step: Decimal, volume_step: Decimal | None
) -> dict[str, Sequence[Any]]:
    steps = {
        "open": price_step,
        "high": price_step,
        "low": price_step,
        "close": price_step,
        "volume": volume_step,
    }
    data: dict[str, Sequence[Any]] = {}
    for column, step in steps.items():
        values = columns[column]
        if step is not None and set(map(type, values)) <= {Decimal}:
            values = round_all(values, step)  # a column at once, in C for a power of ten
        elif step is not None:
            rounded = step_rounder(step)
            values = [rounded(v) if isinstance(v, Decimal) else v for v in values]
        data[column] = values
    return data


def candle_gaps(frame: pd.DataFrame, timeframe: str) -> list[tuple[int, int, int]]:
    """Return (expected ms, received ms, missing candles) for each gap between candles."""
    step = TIMEFRAME_MS.get(timeframe)
    if step is None:
        raise InputError(
            f"unknown timeframe {timeframe!r}", hint=f"use one of {sorted(TIMEFRAME_MS)}"
        )
    import pandas as pd

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


def read_ohlcv_csv(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """``read_csv_candles`` as a pandas frame (a UTC ``timestamp`` index, Decimal columns)."""
    return read_csv_candles(path, content).frame()


def read_csv_candles(path: Path, content: bytes | None = None) -> Candles:
    """Read ``timestamp,open,high,low,close,volume`` (ccxt row order) with exact Decimals;
    from ``content``, the file's bytes already read, when given (``path`` names it).

    The numbers are read as text, so ``0.0027589999999999997`` stays exactly that until it is
    rounded to the market's step: no binary float ever touches the prices. Blank lines are
    skipped; anything else that is not a candle is an ``InputError`` naming its line.
    """
    try:
        text = (path.read_bytes() if content is None else content).decode("utf-8")
        plain = _plain_columns(text)
        if plain is not None:
            return plain
        reader = csv.reader(io.StringIO(text, newline=""))
        numbered = [(reader.line_num, row) for row in reader if row]
    except OSError as e:
        raise InputError(f"cannot read OHLCV file: {e}", file=str(path)) from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(
            f"cannot read OHLCV file: {e}", hint="save it as UTF-8 CSV text", file=str(path)
        ) from e
    if not numbered:
        raise InputError(
            "the OHLCV file is empty",
            hint="export candles with a header line timestamp,open,high,low,close,volume",
            file=str(path),
        )
    header, body = numbered[0][1], numbered[1:]
    if header != CSV_HEADER:
        raise InputError(
            f"OHLCV columns must be {','.join(CSV_HEADER)}; found {','.join(header)}",
            hint="export candles in ccxt row order with a header line",
            file=str(path),
        )
    if not body:
        raise InputError(
            "the OHLCV file holds a header but no candles",
            hint="export at least one candle row under the header",
            file=str(path),
        )
    for line, row in body:
        if len(row) != len(CSV_HEADER):
            raise InputError(
                f"bad OHLCV row: {len(row)} fields where {','.join(CSV_HEADER)} are 6",
                hint="fix or remove the row",
                file=str(path),
                line=line,
            )
    fast = _columns_at_once(list(zip(*(row for _, row in body), strict=True)))
    if fast is not None:
        return fast
    # Something in the file is wrong: read it row by row to name the line.
    data: dict[str, list[Decimal | None]] = {c: [] for c in OHLCV_COLUMNS}
    stamps: list[int] = []
    for line, row in body:
        column = "timestamp"
        try:
            stamps.append(epoch_ms(int(row[0])))
            for column, cell in zip(OHLCV_COLUMNS, row[1:], strict=True):
                value = to_decimal(cell)
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
    return Candles(stamps, data)


# A file as ccxt exports it: the header, then lines of six plain fields (no quotes, no
# blank line, no carriage return), the last one ending the file or followed by one newline.
_PLAIN_CSV = re.compile(
    r"timestamp,open,high,low,close,volume\n(?:[^,\n\r\"]*(?:,[^,\n\r\"]*){5}\n)*"
    r"[^,\n\r\"]*(?:,[^,\n\r\"]*){5}\n?"
).fullmatch


def _plain_columns(text: str) -> Candles | None:
    """The candles of a plain, well-formed file, split into columns without a parser loop;
    None for anything else (the caller parses it as CSV and names any line at fault)."""
    if _PLAIN_CSV(text) is None:
        return None
    fields = text.rstrip("\n").replace("\n", ",").split(",")[len(CSV_HEADER) :]
    width = len(CSV_HEADER)
    return _columns_at_once([fields[i::width] for i in range(width)])


def _columns_at_once(columns: Sequence[Sequence[str]]) -> Candles | None:
    """The candles of a well-formed file, a column at a time (no per-row Python loop); None
    when any value is bad, so the caller reads row by row and names the line."""
    times, *texts = columns
    try:
        stamps = list(map(int, times))
        if stamps and not SECONDS_LOOK_MAX <= min(stamps) <= max(stamps) < EPOCH_MS_MAX:
            stamps = [epoch_ms(stamp) for stamp in stamps]  # (raises for the first at fault)
        data: dict[str, list[Decimal | None]] = {}
        for column, values in zip(OHLCV_COLUMNS, texts, strict=True):
            if _bounded_column("\n".join(values)):  # every one within the bounds by its text
                data[column] = list(map(Decimal, values))
                continue
            parsed = [Decimal(text) if text else None for text in values]
            for value in parsed:
                if value is not None:
                    check_amount(value, column)
            data[column] = parsed
    except (TypeError, ValueError, ArithmeticError):
        return None
    return Candles(stamps, data)
