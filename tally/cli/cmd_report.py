"""Reports people read: equity over time as CSV, JSON or HTML with a plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.errors import EXIT_OK, InputError
from tally.cli.cmd_audit import account_of, add_account_or_run
from tally.cli.table import Command, Invocation
from tally.values import write_text


def _equity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["csv", "json", "html"], default="csv")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically)")
    add_account_or_run(parser)


def equity(call: Invocation) -> int:
    from projections import reports

    args, store = call.args, call.ledger
    account, run_id = account_of(store, args)
    series = reports.load_series(store, account, run_id=run_id)
    if not series.rows:
        raise InputError(
            f"no equity to report for account {account!r}",
            hint="pick a run with --run (`tally runs` lists them), or import "
            "trades and prices for the account first",
            account=account,
        )
    if args.format == "csv":
        text = reports.to_csv(series)
    elif args.format == "json":
        text = json.dumps(reports.to_json(series)) + "\n"
    else:
        text = reports.to_html(series, f"Equity of {account}" + (f" ({run_id})" if run_id else ""))
    if args.out:
        write_text(args.out, text)
        print(f"{len(series.rows):,} rows written to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


COMMANDS = [
    Command("report equity", "equity per time step", equity, _equity_arguments, json=False),
]
