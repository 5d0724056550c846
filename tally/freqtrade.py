"""freqtrade's backtest export, read as it is: `tally import freqtrade FILE`.

The export is the `.zip` freqtrade writes to `user_data/backtest_results/` (or the
`backtest-result-*.json` inside it). Tally records the strategy's starting balance at the
backtest's start (`FundsDeposited`), then every filled order of every trade, in fill order,
as one `TradeExecuted` carrying its fee (the order's value times the trade's `fee_open` or
`fee_close`, in the stake currency, as freqtrade charges it). The account's final cash in
the stake currency then equals the export's `final_balance`, up to freqtrade's own rounding
of each trade's profit to 8 decimals.

Numbers are read from the JSON text as decimals (never through a float), and every field is
checked before anything is written: a damaged file imports nothing. The import is one
transaction keyed by the file's sha256, so importing it again records nothing.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from ledger import events
from ledger.errors import InputError
from ledger.market import check_amount, check_name
from ledger.store import EventStore, StreamAppend
from tally.imports import CHUNK_EVENTS, Imported, _file_digest, _import_streamed

ROUNDING_PER_TRADE = Decimal("0.000000005")  # freqtrade rounds each trade's profit to 1e-8
FEE_STEP = Decimal("1e-12")  # an imported fee's rounding (round half to even)


@dataclass(frozen=True)
class Export:
    strategy: str
    stake_currency: str
    starting_balance: Decimal
    final_balance: Decimal
    start: datetime
    trades: list[dict[str, Any]]

    @property
    def tolerance(self) -> Decimal:
        """How far the books may be from ``final_balance``: freqtrade's rounding."""
        return ROUNDING_PER_TRADE * len(self.trades)


def read_export(path: Path, strategy: str | None = None) -> Export:
    """The export's strategy results, checked; ``InputError`` naming what is wrong."""
    text = _export_text(path)
    try:
        document = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path.name}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
            hint="pass the .zip or .json freqtrade wrote, unchanged",
            file=str(path),
            line=e.lineno,
        ) from e
    strategies = document.get("strategy") if isinstance(document, dict) else None
    if not isinstance(strategies, dict) or not strategies:
        raise InputError(
            f"{path.name} holds no `strategy` results: not a freqtrade backtest export",
            hint="export with `freqtrade backtesting --export trades`",
            file=str(path),
        )
    if strategy is None:
        if len(strategies) > 1:
            raise InputError(
                f"{path.name} holds {len(strategies)} strategies: {', '.join(sorted(strategies))}",
                hint="pick one with --strategy NAME",
                file=str(path),
            )
        strategy = next(iter(strategies))
    if strategy not in strategies:
        raise InputError(
            f"{path.name} holds no strategy {strategy!r}",
            hint=f"its strategies: {', '.join(sorted(strategies))}",
            file=str(path),
        )
    results = strategies[strategy]
    where = f"strategy.{strategy}"
    trades = _field(results, "trades", list, path, where)
    start = _time(
        _field(results, "backtest_start", str, path, where), path, f"{where}.backtest_start"
    )
    return Export(
        strategy=strategy,
        stake_currency=_field(results, "stake_currency", str, path, where).upper(),
        starting_balance=_amount(results, "starting_balance", path, where),
        final_balance=_amount(results, "final_balance", path, where),
        start=start,
        trades=trades,
    )


def _export_text(path: Path) -> str:
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = [
                    n
                    for n in archive.namelist()
                    if n.endswith(".json")
                    and Path(n).name.startswith("backtest-result-")
                    and not n.endswith(("_config.json", ".meta.json"))
                ]
                if len(names) != 1:
                    raise InputError(
                        f"{path.name} holds {len(names)} backtest-result JSON files, not 1",
                        hint="pass the .zip freqtrade wrote, or the JSON inside it",
                        file=str(path),
                    )
                return archive.read(names[0]).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (zipfile.BadZipFile, EOFError) as e:
        raise InputError(
            f"{path.name} is not a readable zip archive ({e})",
            hint="pass the .zip freqtrade wrote, unchanged",
            file=str(path),
        ) from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path.name} is not UTF-8 JSON", file=str(path)) from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", file=str(path)) from e


def _field(
    record: Any, key: str, kind: type, path: Path, where: str, what: str | None = None
) -> Any:
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise InputError(
            f"{path.name}: {where}.{key} is missing or not a {what or kind.__name__}",
            hint="the export is damaged or from another tool; export it again",
            file=str(path),
            field=f"{where}.{key}",
        )
    return value


def _amount(record: Any, key: str, path: Path, where: str, *, positive: bool = True) -> Decimal:
    value: Decimal = _field(record, key, Decimal, path, where, "number")
    return check_amount(value, f"{where}.{key}", positive=positive, file=str(path))


def _time(text: str, path: Path, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise InputError(f"{path.name}: {where} = {text!r} is not a time", file=str(path)) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fills(
    export: Export, path: Path, digest: str, account: str
) -> list[tuple[datetime, int, int, events.TradeExecuted]]:
    out = []
    stake = export.stake_currency
    for number, trade in enumerate(export.trades):
        where = f"trades[{number}]"
        pair = _field(trade, "pair", str, path, where).upper()
        base, _, quote = pair.partition("/")
        quote = quote.split(":")[0]
        if quote != stake:
            raise InputError(
                f"{path.name}: {where}.pair {pair} is not quoted in the stake currency {stake}",
                file=str(path),
                field=f"{where}.pair",
            )
        if trade.get("is_short") is True:
            raise InputError(
                f"{path.name}: {where} is a short trade; Tally imports spot exports",
                file=str(path),
                field=f"{where}.is_short",
            )
        fees = {
            True: _amount(trade, "fee_open", path, where, positive=False),
            False: _amount(trade, "fee_close", path, where, positive=False),
        }
        orders = _field(trade, "orders", list, path, where)
        for index, order in enumerate(orders):
            at = f"{where}.orders[{index}]"
            side = _field(order, "ft_order_side", str, path, at)
            if side not in ("buy", "sell"):
                raise InputError(
                    f"{path.name}: {at}.ft_order_side {side!r} is not buy or sell", file=str(path)
                )
            qty = _amount(order, "amount", path, at)
            price = _amount(order, "safe_price", path, at)
            filled = _field(order, "order_filled_timestamp", Decimal, path, at, "number")
            when = datetime.fromtimestamp(int(filled) / 1000, UTC)
            # freqtrade charges the fee in floats; kept to FEE_STEP, far below its own
            # rounding of each trade's profit to 8 decimals.
            fee = (qty * price * fees[bool(order.get("ft_is_entry", side == "buy"))]).quantize(
                FEE_STEP, rounding=ROUND_HALF_EVEN
            )
            trade_id = f"ft-{digest[:12]}-{number}-{index}"
            out.append(
                (
                    when,
                    number,
                    index,
                    events.TradeExecuted(
                        account=account, symbol=f"{base}/{quote}", side=side,
                        qty=qty, price=price, order_id=trade_id, trade_id=trade_id,
                        executed_at=when, fee=fee or None, fee_asset=stake if fee else "",
                    ),
                )
            )  # fmt: skip
    out.sort(key=lambda item: (item[0], item[1], item[2]))
    return out


def import_freqtrade(
    store: EventStore, path: Path, account: str = "freqtrade", strategy: str | None = None
) -> tuple[Imported, Export]:
    """Record a freqtrade export's starting balance and fills, all or nothing."""
    check_name(account, "account")
    digest = _file_digest(path)
    export = read_export(path, strategy)
    # Bounds are checked as each event is appended; the import is one transaction, so an
    # event the catalog refuses rolls every one of them back.
    fills = _fills(export, path, digest, account)
    stream = f"portfolio/{account}"
    deposit = events.FundsDeposited(
        account=account,
        asset=export.stake_currency,
        amount=export.starting_balance,
        at=export.start,
    )

    def chunks() -> Iterator[list[StreamAppend]]:
        found: list[events.Event] = [deposit]
        for _, _, _, event in fills:
            found.append(event)
            if len(found) >= CHUNK_EVENTS:
                yield [StreamAppend(stream, found)]
                found = []
        if found:
            yield [StreamAppend(stream, found)]

    done = _import_streamed(
        store, chunks(), f"import/freqtrade/{account}/{digest}", f"freqtrade {export.strategy}"
    )
    return done, export
