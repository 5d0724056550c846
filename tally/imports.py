"""Another system's fills and prices into the ledger: validated, all or nothing.

Every row of a file is checked before anything is written; a file with one bad row imports
nothing and names every bad line. An import is one atomic append keyed by the file's
sha256, so importing the same file twice records it once.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from ingest.candles import ohlcv_files, read_ohlcv_file, sha256_file
from ingest.contracts import VOLUME_STEP, epoch_ms
from ingest.market import OHLCV_COLUMNS, utc_from_ms
from ledger import events
from ledger.clock import parse_time
from ledger.errors import IdempotencyConflict, InputError
from ledger.market import amount_problem, check_amount, check_name, split_symbol, step_rounder
from ledger.store import EventStore, StreamAppend
from projections import portfolio
from tally.values import parse_time_arg

TRADE_COLUMNS = ("timestamp", "symbol", "side", "qty", "price", "fee", "fee_asset")
ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
ERRORS_SHOWN_MAX = 20


@dataclass(frozen=True)
class Imported:
    what: str
    count: int  # events
    first_position: int
    last_position: int
    already: bool

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _amount(text: str, *, positive: bool) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    problem = amount_problem(value)
    if problem is not None:
        raise ValueError(f"{text.strip()} is refused: {problem}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"must be {'positive' if positive else 'zero or more'}: {text}")
    return value


class _BadField(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


# Symbols and asset codes already checked, by pattern: they recur on every row.
_KNOWN: dict[re.Pattern[str], set[str]] = {}


def _known(code: str, pattern: re.Pattern[str]) -> str:
    """``code`` if it matches ``pattern`` (remembered), else ""."""
    seen = _KNOWN.setdefault(pattern, set())
    if code in seen:
        return code
    if not pattern.match(code):
        return ""
    if len(seen) < 10_000:
        seen.add(code)
    return code


def _trade_row(row: list[str]) -> tuple[datetime, str, str, Decimal, Decimal, Decimal, str]:
    """Parse one row's cells (``TRADE_COLUMNS`` order); raise ``_BadField`` naming the
    first bad one."""
    stamp, raw_symbol, raw_side, raw_qty, raw_price, raw_fee, raw_asset = row
    field = "timestamp"
    try:
        at = parse_time(stamp)
        field = "symbol"
        symbol = _known(raw_symbol.strip().upper(), SYMBOL)
        if not symbol:
            raise ValueError(f"not BASE/QUOTE: {raw_symbol.strip()!r}")
        field = "side"
        side = raw_side.strip().lower()
        if side not in ("buy", "sell"):
            raise ValueError(f"must be buy or sell, got {raw_side.strip()!r}")
        field = "qty"
        qty = _amount(raw_qty, positive=True)
        field = "price"
        price = _amount(raw_price, positive=True)
        field = "fee"
        fee = _amount(raw_fee, positive=False)
        field = "fee_asset"
        fee_asset = _known(raw_asset.strip().upper(), ASSET)
        if not fee_asset:
            raise ValueError(f"not an asset code: {raw_asset.strip()!r}")
    except ValueError as e:
        raise _BadField(field, str(e)) from e
    return at, symbol, side, qty, price, fee, fee_asset


CHUNK_EVENTS = 10_000  # events appended at a time inside the import's one transaction


class _AlreadyImported(Exception):
    def __init__(self, last: int) -> None:
        super().__init__(last)
        self.last = last


def _rows(path: Path, header: tuple[str, ...], name: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of a CSV file, streamed: the header checked, blank lines skipped."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", file=str(path)) from e
    line = 1
    with handle:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
            found = [c.strip().lower() for c in first] if first else []
            if tuple(found) != header:
                raise InputError(
                    f"{path.name}: the header must be {','.join(header)}; found "
                    f"{','.join(found) or 'nothing'}",
                    hint="put the header line first, columns in that order",
                    file=str(path),
                    line=1,
                )
            for row in reader:
                line = reader.line_num
                if row and any(cell.strip() for cell in row):
                    yield line, row
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path.name} is not UTF-8 text (after line {line})",
                hint=f"save the {name} file as UTF-8 CSV",
                file=str(path),
                line=line + 1,
            ) from e
        except csv.Error as e:
            raise InputError(f"{path.name}: {e}", file=str(path), line=line + 1) from e


def _refuse(path: Path, problems: list[str], count: int) -> InputError:
    shown = "\n  ".join(problems[:ERRORS_SHOWN_MAX])
    more = count - min(count, ERRORS_SHOWN_MAX)
    first = problems[0].split()
    return InputError(
        f"{path.name}: {count} bad row(s), nothing imported:\n  {shown}"
        + (f"\n  ... and {more} more" if more > 0 else ""),
        hint="fix the named lines and import the file again",
        file=str(path),
        **({"line": int(first[1].rstrip(":"))} if first[0] == "line" else {}),
    )


def _file_digest(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", file=str(path)) from e


def _import_streamed(
    store: EventStore,
    chunks: Iterator[list[StreamAppend]],
    key: str,
    what: str,
) -> Imported:
    """Append ``chunks`` in one transaction: all of them, or nothing if the reader refuses
    the file on the way (it raises). The idempotency key goes with the last chunk, so a file
    imported before is found there and the transaction rolls back."""
    head = store.head()
    first = last = 0
    count = 0
    try:
        with store.unit_of_work():
            pending: list[StreamAppend] | None = None
            for batches in chunks:
                if pending is not None:
                    placed = [p for b in store.append_many(pending) for p in b]
                    first, last, count = first or placed[0], placed[-1], count + len(placed)
                pending = batches
            if pending is None:
                raise InputError(f"nothing to import ({what})")
            try:
                placed = [p for b in store.append_many(pending, idempotency_key=key) for p in b]
            except IdempotencyConflict as conflict:
                # The same file (the key holds its sha256), recorded by an earlier Tally in
                # an older shape of its events (fills and fees as two events each).
                first_seen = int(conflict.context["first_position"])
                last_seen = first_seen + int(conflict.context["original_count"]) - 1
                placed = list(range(first_seen, last_seen + 1))
            if placed[0] <= head:  # the last chunk replayed: this file is in the ledger
                raise _AlreadyImported(placed[-1])
            first, last, count = first or placed[0], placed[-1], count + len(placed)
    except _AlreadyImported as seen:
        total = count + len(placed)
        return Imported(what, total, seen.last - total + 1, seen.last, already=True)
    return Imported(what, count, first, last, already=False)


def import_trades(
    store: EventStore, path: Path, account: str, *, allow_short: bool = False
) -> Imported:
    """Import a trade file (``TRADE_COLUMNS``), streamed with flat memory, all or nothing.

    Every row is checked; any bad row (or a sale of more than the account holds at that
    row, unless ``allow_short``) refuses the whole file, naming every bad line."""
    check_name(account, "account")
    digest = _file_digest(path)
    held = None if allow_short else portfolio.rebuild(store, account=account, checkpoint=False).cash
    stream = f"portfolio/{account}"

    def chunks() -> Iterator[list[StreamAppend]]:
        found: list[events.Event] = []
        problems: list[str] = []
        bad = 0
        for line, row in _rows(path, TRADE_COLUMNS, "trade"):
            if len(row) != len(TRADE_COLUMNS):
                bad += 1
                problems.append(
                    f"line {line}: expected {len(TRADE_COLUMNS)} fields, got {len(row)}"
                )
                continue
            try:
                at, symbol, side, qty, price, fee, fee_asset = _trade_row(row)
            except _BadField as e:
                bad += 1
                problems.append(f"line {line}: {e.field}: {e}")
                continue
            if held is not None:
                base = split_symbol(symbol)[0]
                if side == "sell" and held[base] < qty:
                    bad += 1
                    problems.append(
                        f"line {line}: sells {qty} {base} but account {account!r} holds "
                        f"{held[base]} {base} at that row (--allow-short records short "
                        "positions)"
                    )
                    continue
                held[base] += qty if side == "buy" else -qty
            if bad:
                continue  # refused already: keep reading only to name every bad line
            trade_id = f"import-{digest[:12]}-{line}"
            found.append(
                events.TradeExecuted(
                    account=account,
                    symbol=symbol,
                    side=side,  # type: ignore[arg-type]
                    qty=qty,
                    price=price,
                    order_id=trade_id,
                    trade_id=trade_id,
                    executed_at=at,
                    # The fee rides on its fill: one event per row, not two.
                    fee=fee or None,
                    fee_asset=fee_asset if fee else "",
                )
            )
            if len(found) >= CHUNK_EVENTS:
                yield [StreamAppend(stream, found)]
                found = []
        if bad:
            raise _refuse(path, problems, bad)
        if found:
            yield [StreamAppend(stream, found)]

    return _import_streamed(store, chunks(), f"import/trades/{account}/{digest}", "trades")


def _candle_rows(path: Path, problems: list[str]) -> Iterator[tuple[int, list[Decimal]]]:
    """(epoch ms, [open, high, low, close, volume]) of an OHLCV CSV file, streamed, with
    the data contract checked row by row; a bad row goes to ``problems``, not out."""
    previous = -1
    for line, row in _rows(path, ("timestamp", *OHLCV_COLUMNS), "OHLCV"):
        if len(row) != 1 + len(OHLCV_COLUMNS):
            problems.append(f"line {line}: expected 6 fields, got {len(row)}")
            continue
        column = "timestamp"
        try:
            stamp = epoch_ms(int(row[0]))
            values = []
            for column, text in zip(OHLCV_COLUMNS, row[1:], strict=True):
                if not text.strip():
                    raise ValueError("missing value")
                value = Decimal(text)  # as written: no float ever touches a price
                values.append(check_amount(value, column, positive=column != "volume"))
        except InvalidOperation:
            problems.append(
                f"line {line}: {column}: not a number: {row[1 + OHLCV_COLUMNS.index(column)]!r}"
            )
            continue
        except (TypeError, ValueError, ArithmeticError) as e:
            problems.append(f"line {line}: {column}: {e}")
            continue
        o, h, low, c, v = values
        if h < max(o, c) or low > min(o, c) or v < 0:
            problems.append(f"line {line}: high/low: h={h} l={low} not around o={o} c={c}")
            continue
        if stamp <= previous:
            problems.append(f"line {line}: timestamp: {stamp} is not after the row before")
            continue
        previous = stamp
        yield stamp, values


def import_ohlcv(
    store: EventStore, folder: Path, price_steps: Callable[[str], Decimal]
) -> Imported:
    """Import a folder of OHLCV files as ``CandleImported`` events, streamed, all or
    nothing, keyed by the files' names and sha256 (the same files import once).

    Prices are rounded to ``price_steps(symbol)`` and volumes to ``VOLUME_STEP``, exactly
    as ``tally run --data`` rounds them (``round_candle_columns``); a ``CandlesImported`` after each
    file records the steps used."""
    files = ohlcv_files(folder)
    digests = {p: _file_digest(p) for p, _, _ in files}
    manifest = "|".join(f"{p.name}:{digests[p]}" for p, _, _ in files)
    key = hashlib.sha256(manifest.encode()).hexdigest()
    steps = {symbol: price_steps(symbol) for _, symbol, _ in files}  # all known before a row

    def chunks() -> Iterator[list[StreamAppend]]:
        for path, symbol, timeframe in files:
            stream = f"candles/{symbol}/{timeframe}"
            problems: list[str] = []
            rows = _candle_rows(path, problems) if path.suffix == ".csv" else _parquet_rows(path)
            price, volume = step_rounder(steps[symbol]), step_rounder(VOLUME_STEP)
            found: list[events.Event] = []
            count = 0
            for stamp, (o, h, raw_low, c, v) in rows:
                if problems:
                    continue
                count += 1
                low = price(raw_low)
                if not low:
                    problems.append(
                        f"candle at {utc_from_ms(stamp).isoformat()}: low {raw_low} rounds to 0 at "
                        f"the price step {steps[symbol]} (set a finer "
                        f"run.markets.{symbol}.price_step)"
                    )
                    continue
                found.append(
                    events.CandleImported(
                        symbol=symbol,
                        timeframe=timeframe,
                        open_time=utc_from_ms(stamp),
                        open=price(o),
                        high=price(h),
                        low=low,
                        close=price(c),
                        volume=volume(v),
                    )
                )
                if len(found) >= CHUNK_EVENTS:
                    yield [StreamAppend(stream, found)]
                    found = []
            if problems:
                raise _refuse(path, problems, len(problems))
            found.append(
                events.CandlesImported(
                    symbol=symbol,
                    timeframe=timeframe,
                    file=path.name,
                    sha256=digests[path],
                    rows=count,
                    price_step=steps[symbol],
                    volume_step=VOLUME_STEP,
                )
            )
            yield [StreamAppend(stream, found)]

    return _import_streamed(store, chunks(), f"import/ohlcv/{key}", "candles")


def _parquet_rows(path: Path) -> Iterator[tuple[int, list[Decimal]]]:
    """A parquet file's candles (read whole: parquet is columnar), contract-checked."""
    frame = read_ohlcv_file(path)
    stamps = pd.DatetimeIndex(frame.index).as_unit("ms").asi8
    columns = [list(frame[c]) for c in OHLCV_COLUMNS]
    for i, stamp in enumerate(stamps):
        yield int(stamp), [column[i] for column in columns]


def deposit(store: EventStore, asset: str, amount: str, account: str, at: str | None = None) -> int:
    check_name(account, "account")
    code = asset.upper()
    if not ASSET.match(code):
        raise InputError(f"not an asset code: {asset!r}", hint="e.g. USDT or BTC")
    try:
        value = _amount(amount, positive=True)
    except ValueError as e:
        raise InputError(f"the amount {e}", hint="e.g. tally deposit USDT 10000") from e
    when = parse_time_arg(at, "--at") if at is not None else None
    return store.append(
        f"portfolio/{account}",
        [events.FundsDeposited(account=account, asset=code, amount=value, at=when)],
        expected_version=None,
    )[0]
