"""Another system's history in: fills, candles, starting funds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import EXIT_OK
from tally.cli.table import Command, Invocation

if TYPE_CHECKING:
    from tally.imports import Imported


def _trades_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE.csv")
    parser.add_argument("--account", default="main", help="the account the fills belong to")
    parser.add_argument(
        "--allow-short",
        action="store_true",
        help="let a sale exceed what the account holds (records a short position); "
        "refused by default",
    )


def _ohlcv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, metavar="DIR")


def _say(done: Imported, as_json: bool = False) -> int:
    if as_json:
        print(json.dumps(done.as_dict()))
    elif done.already:
        print(
            f"already imported: {done.count:,} events at positions {done.first_position:,}.."
            f"{done.last_position:,}; nothing new recorded"
        )
    else:
        print(
            f"imported {done.what}: {done.count:,} events at positions "
            f"{done.first_position:,}..{done.last_position:,}"
        )
    return EXIT_OK


def import_trades(call: Invocation) -> int:
    from tally import imports

    args = call.args
    done = imports.import_trades(call.ledger, args.file, args.account, allow_short=args.allow_short)
    return _say(done, args.json)


def import_ohlcv(call: Invocation) -> int:
    from tally import imports
    from tally.run.settings import market_steps
    from tally.settings import load_settings

    markets = load_settings(call.args.config).run.markets
    done = imports.import_ohlcv(
        call.ledger, call.args.folder, lambda symbol: market_steps(markets, symbol).price_step
    )
    return _say(done, call.args.json)


def _freqtrade_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="EXPORT.zip|.json")
    parser.add_argument("--account", default="freqtrade", help="the account to book into")
    parser.add_argument("--strategy", help="the strategy to import (when the export holds several)")


def import_freqtrade(call: Invocation) -> int:
    from projections import portfolio
    from tally.freqtrade import import_freqtrade as run_import

    args = call.args
    done, export = run_import(call.ledger, args.file, args.account, args.strategy)
    books = portfolio.rebuild(call.ledger, account=args.account, checkpoint=False)
    cash = books.cash.get(export.stake_currency)
    gap = (cash or 0) - export.final_balance
    held = {s: str(q) for s, q in sorted(books.positions.items()) if q}
    if args.json:
        print(json.dumps({
            "imported": done.count, "already": done.already,
            "first_position": done.first_position, "last_position": done.last_position,
            "strategy": export.strategy, "trades": len(export.trades),
            "account": args.account, "stake_currency": export.stake_currency,
            "final_cash": str(cash), "final_balance": str(export.final_balance),
            "difference": str(gap), "within_rounding": abs(gap) <= export.tolerance,
            "open_positions": held,
        }))  # fmt: skip
        return EXIT_OK
    from tally.amounts import asset_steps, show
    from tally.settings import load_settings

    step = asset_steps(load_settings(args.config).run.markets).get(export.stake_currency)
    _say(done)
    print(
        f"{export.strategy}: {len(export.trades)} trades; account {args.account} holds "
        f"{show(cash or '0', step)} {export.stake_currency}, the export's final_balance is "
        f"{show(export.final_balance, step)} (difference {show(gap)}, within freqtrade's "
        f"rounding of each trade's profit to 8 decimals: up to "
        f"{export.tolerance.normalize():f} over {len(export.trades)} trades; --json: exact)"
    )
    if held:
        print(f"open positions: {held}")
    return EXIT_OK


def _deposit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("asset", metavar="ASSET")
    parser.add_argument("amount", metavar="AMOUNT")
    parser.add_argument(
        "--account", default="main", help="the account to credit (default: %(default)s)"
    )
    parser.add_argument(
        "--at", metavar="TIME", help="when the funds arrived (ISO-8601 or epoch ms; default: now)"
    )


def deposit(call: Invocation) -> int:
    from tally import imports

    args = call.args
    position = imports.deposit(call.ledger, args.asset, args.amount, args.account, args.at)
    if args.json:
        print(json.dumps({
            "asset": args.asset.upper(), "amount": args.amount, "account": args.account,
            "at": args.at, "position": position,
        }))  # fmt: skip
        return EXIT_OK
    print(f"deposited {args.amount} {args.asset.upper()} into {args.account} (position {position})")
    return EXIT_OK


COMMANDS = [
    Command(
        "import trades",
        "a CSV of fills: timestamp,symbol,side,qty,price,fee,fee_asset",
        import_trades,
        _trades_arguments,
    ),
    Command(
        "import ohlcv",
        "a folder of OHLCV files (BASE_QUOTE-TIMEFRAME .csv, .parquet, .feather, .json), "
        "rounded to each market's price step",
        import_ohlcv,
        _ohlcv_arguments,
    ),
    Command(
        "import freqtrade",
        "a freqtrade backtest export (.zip or .json): its balance and every fill",
        import_freqtrade,
        _freqtrade_arguments,
    ),
    Command("deposit", "record starting funds", deposit, _deposit_arguments),
]
