"""Another system's fills and prices into the ledger: validated, all or nothing.

Every row of a file is checked before anything is written; a file with one bad row imports
nothing and names every bad line. An import is one atomic append keyed by the file's
sha256, so importing the same file twice records it once.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ingest.candles import load_candles
from ledger import events
from ledger.clock import parse_time
from ledger.errors import InputError
from ledger.market import amount_problem, check_name, split_symbol
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


def _trade_row(cells: dict[str, str]) -> tuple[datetime, str, str, Decimal, Decimal, Decimal, str]:
    """Parse one row's fields; raise ``_BadField`` naming the first bad one."""
    field = "timestamp"
    try:
        at = parse_time(cells["timestamp"])
        field = "symbol"
        symbol = cells["symbol"].upper()
        if not SYMBOL.match(symbol):
            raise ValueError(f"not BASE/QUOTE: {cells['symbol']!r}")
        field = "side"
        side = cells["side"].lower()
        if side not in ("buy", "sell"):
            raise ValueError(f"must be buy or sell, got {cells['side']!r}")
        field = "qty"
        qty = _amount(cells["qty"], positive=True)
        field = "price"
        price = _amount(cells["price"], positive=True)
        field = "fee"
        fee = _amount(cells["fee"], positive=False)
        field = "fee_asset"
        fee_asset = cells["fee_asset"].upper()
        if not ASSET.match(fee_asset):
            raise ValueError(f"not an asset code: {cells['fee_asset']!r}")
    except ValueError as e:
        raise _BadField(field, str(e)) from e
    return at, symbol, side, qty, price, fee, fee_asset


def read_trades(path: Path, account: str) -> tuple[list[events.Event], str]:
    """The trade and fee events of a trade file, or an InputError naming every bad line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", file=str(path)) from e
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path.name} is not UTF-8 text (byte {e.start})",
            hint="save the file as UTF-8 CSV",
            file=str(path),
        ) from e
    rows = list(csv.reader(text.splitlines()))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if tuple(header) != TRADE_COLUMNS:
        raise InputError(
            f"{path.name}: the header must be {','.join(TRADE_COLUMNS)}; found "
            f"{','.join(header) or 'nothing'}",
            hint="put the header line first, columns in that order",
            file=str(path),
            line=1,
        )
    found: list[events.Event] = []
    problems: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(TRADE_COLUMNS):
            problems.append(f"line {line}: expected {len(TRADE_COLUMNS)} fields, got {len(row)}")
            continue
        cells = dict(zip(TRADE_COLUMNS, (c.strip() for c in row), strict=True))
        try:
            at, symbol, side, qty, price, fee, fee_asset = _trade_row(cells)
        except _BadField as e:
            problems.append(f"line {line}: {e.field}: {e}")
            continue
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
            )
        )
        if fee:
            found.append(
                events.FeeCharged(account=account, trade_id=trade_id, asset=fee_asset, amount=fee)
            )
    if problems:
        shown = "\n  ".join(problems[:ERRORS_SHOWN_MAX])
        more = len(problems) - ERRORS_SHOWN_MAX
        raise InputError(
            f"{path.name}: {len(problems)} bad row(s), nothing imported:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else ""),
            hint="fix the named lines and import the file again",
            file=str(path),
            line=int(problems[0].split()[1].rstrip(":")),
        )
    if not found:
        raise InputError(f"{path.name} holds no trades", file=str(path))
    return found, digest


def import_trades(
    store: EventStore, path: Path, account: str, *, allow_short: bool = False
) -> Imported:
    check_name(account, "account")
    found, digest = read_trades(path, account)
    if not allow_short:
        _refuse_selling_what_is_not_held(store, path, account, found)
    return _append(
        store,
        [StreamAppend(f"portfolio/{account}", found)],
        f"import/trades/{account}/{digest}",
        "trades",
    )


def import_ohlcv(store: EventStore, folder: Path) -> Imported:
    candles = load_candles(folder)
    batches = []
    for symbol in candles.symbols:
        frame = candles.frames[symbol]
        rows = zip(
            frame.index,
            frame["open"],
            frame["high"],
            frame["low"],
            frame["close"],
            frame["volume"],
            strict=True,
        )
        batches.append(
            StreamAppend(
                f"candles/{symbol}/{candles.timeframe}",
                [
                    events.CandleImported(
                        symbol=symbol,
                        timeframe=candles.timeframe,
                        open_time=stamp.to_pydatetime(),
                        open=o,
                        high=h,
                        low=lo,
                        close=c,
                        volume=v,
                    )
                    for stamp, o, h, lo, c, v in rows
                ],
            )
        )
    key = hashlib.sha256(
        "|".join(f"{f['name']}:{f['sha256']}" for f in candles.manifest).encode()
    ).hexdigest()
    return _append(store, batches, f"import/ohlcv/{key}", "candles")


def _refuse_selling_what_is_not_held(
    store: EventStore, path: Path, account: str, found: list[events.Event]
) -> None:
    """A sale of more than the account holds at that row (what the ledger holds, then the
    file's rows in order) would leave a negative balance: refused, naming the row."""
    held = portfolio.rebuild(store, account=account, checkpoint=False).cash
    for event in found:
        if not isinstance(event, events.TradeExecuted):
            continue
        base = split_symbol(event.symbol)[0]
        if event.side == "buy":
            held[base] += event.qty
            continue
        if held[base] < event.qty:
            line = int(event.trade_id.rsplit("-", 1)[1])
            raise InputError(
                f"{path.name} line {line}: sells {event.qty} {base} but account {account!r} "
                f"holds {held[base]} {base} at that row; nothing imported",
                hint="import the buys first, or pass --allow-short to record short positions",
                file=str(path),
                line=line,
            )
        held[base] -= event.qty


def _append(store: EventStore, batches: list[StreamAppend], key: str, what: str) -> Imported:
    head = store.head()
    positions = [p for batch in store.append_many(batches, idempotency_key=key) for p in batch]
    return Imported(what, len(positions), positions[0], positions[-1], already=positions[0] <= head)


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
