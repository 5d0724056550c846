"""Another system's history in: fills, candles, starting funds."""

from __future__ import annotations

import argparse
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


def _say(done: Imported) -> int:
    if done.already:
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
    return _say(
        imports.import_trades(call.ledger, args.file, args.account, allow_short=args.allow_short)
    )


def import_ohlcv(call: Invocation) -> int:
    from tally import imports

    return _say(imports.import_ohlcv(call.ledger, call.args.folder))


def _deposit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("asset", metavar="ASSET")
    parser.add_argument("amount", metavar="AMOUNT")
    parser.add_argument("--account", default="main")
    parser.add_argument(
        "--at", metavar="TIME", help="when the funds arrived (ISO-8601 or epoch ms; default: now)"
    )


def deposit(call: Invocation) -> int:
    from tally import imports

    args = call.args
    position = imports.deposit(call.ledger, args.asset, args.amount, args.account, args.at)
    print(f"deposited {args.amount} {args.asset.upper()} into {args.account} (position {position})")
    return EXIT_OK


COMMANDS = [
    Command(
        "import trades",
        "a CSV of fills: timestamp,symbol,side,qty,price,fee,fee_asset",
        import_trades,
        _trades_arguments,
        json=False,
    ),
    Command(
        "import ohlcv",
        "a folder of BASE_QUOTE-TIMEFRAME.csv|.parquet files",
        import_ohlcv,
        _ohlcv_arguments,
        json=False,
    ),
    Command("deposit", "record starting funds", deposit, _deposit_arguments, json=False),
]
