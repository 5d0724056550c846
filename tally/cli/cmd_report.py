"""Reports people read: equity over time as CSV, JSON or HTML with a plot."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import EXIT_OK, InputError
from tally.cli.cmd_audit import account_of, add_account_or_run
from tally.cli.table import Command, Invocation
from tally.values import write_text

if TYPE_CHECKING:
    from projections.reports import EquitySeries


def _equity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["csv", "json", "html"], default="csv")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically)")
    add_account_or_run(parser)


def _series_of(call: Invocation) -> tuple[str, str | None, EquitySeries]:
    """(account, run id, its equity series) of --account or --run; an error if empty."""
    from projections import reports

    account, run_id = account_of(call.ledger, call.args)
    series = reports.load_series(call.ledger, account, run_id=run_id)
    if not series.rows:
        raise InputError(
            f"no equity to report for account {account!r}",
            hint="pick a run with --run (`tally runs` lists them), or import "
            "trades and prices for the account first",
            account=account,
        )
    return account, run_id, series


def equity(call: Invocation) -> int:
    from projections import reports

    args = call.args
    account, run_id, series = _series_of(call)
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


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    add_account_or_run(parser)


def summary(call: Invocation) -> int:
    from projections import results
    from tally.cli.table_text import render

    args, store = call.args, call.ledger
    account, run_id, series = _series_of(call)
    out = results.summary(series, results.load_trips(store, account, run_id=run_id))
    if args.json:
        print(json.dumps(out))
        return EXIT_OK
    quote, totals = out["quote"], out["totals"]
    of_run = f" (run {run_id})" if run_id else ""
    print(f"results of account {account}{of_run}: {out['from']} .. {out['to']}")
    rows = [
        [
            p["symbol"],
            str(p["trades"]),
            f"{p['wins']} / {p['draws']} / {p['losses']}",
            f"{p['win_pct']:.1f}",
            _money(p["profit_abs"]),
            f"{p['profit_pct']:.2f}",
            _duration(p["avg_duration_s"]),
        ]
        for p in [*out["pairs"], totals]
    ]
    headers = [
        "pair",
        "trades",
        "win / draw / loss",
        "win %",
        f"profit {quote}",
        "profit %",
        "avg duration",
    ]
    print(render(headers, rows, title="Per pair (closed round trips)"))
    figures = [
        ("start equity", f"{_money(totals['start_equity'])} {quote}"),
        ("end equity", f"{_money(totals['end_equity'])} {quote}"),
        (
            "profit",
            f"{_money(totals['equity_profit_abs'])} {quote} ({totals['equity_profit_pct']:.2f}%)",
        ),
        ("fees", f"{_money(totals['fees'])} {quote}"),
        ("CAGR", f"{totals['cagr_pct']:.2f}%"),
        (
            "max drawdown",
            f"{_money(totals['max_drawdown_abs'])} {quote} ({totals['max_drawdown_pct']:.2f}%)"
            f" {totals['max_drawdown_start'] or ''} .. {totals['max_drawdown_end'] or ''}",
        ),
        ("Sharpe / Sortino / Calmar", " / ".join(_ratio(totals[k]) for k in RATIOS)),
        ("profit factor", _ratio(totals["profit_factor"])),
        (
            "expectancy (ratio)",
            f"{_money(totals['expectancy'])} ({_ratio(totals['expectancy_ratio'])})",
        ),
        ("exposure", f"{totals['exposure_pct']:.2f}% of time steps"),
        ("open trades", str(totals["open_trades"])),
    ]
    print(render(["figure", "value"], [list(f) for f in figures], title="Totals"))
    days = [
        [
            d["date"],
            d["end_equity"],
            d["profit_abs"],
            f"{d['profit_pct']:.2f}",
            str(d["trades_closed"]),
        ]
        for d in out["days"]
    ]
    print(render(["day", f"end equity {quote}", "profit", "%", "closed"], days, title="Days"))
    return EXIT_OK


RATIOS = ("sharpe", "sortino", "calmar")


MONEY_PLACES = Decimal("1e-8")  # the tables' rounding of amounts; --json is exact


def _money(text: str) -> str:
    """An exact amount as the tables show it: fixed point, at most 8 decimals."""
    value = Decimal(text)
    if value == value.quantize(MONEY_PLACES):
        return f"{value.normalize():f}" if value else "0"
    return f"{value.quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN):f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}:{minutes:02d}"


def _trades_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically)")
    add_account_or_run(parser)


TRADE_COLUMNS = (
    "symbol",
    "side",
    "opened_at",
    "closed_at",
    "duration_s",
    "qty",
    "entry_cost",
    "profit_abs",
    "profit_pct",
    "fees",
    "entry_positions",
    "exit_positions",
)


def trades(call: Invocation) -> int:
    import csv
    import io

    from projections import results

    args, store = call.args, call.ledger
    account, run_id = account_of(store, args)
    rows = [t.as_dict() for t in results.load_trips(store, account, run_id=run_id)]
    if args.format == "parquet":
        if args.out is None:
            raise InputError("--format parquet needs --out FILE", hint="pass --out trades.parquet")
        import pandas as pd

        frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
        frame.to_parquet(args.out, index=False)
        print(f"{len(rows):,} trades written to {args.out}")
        return EXIT_OK
    if args.format == "json":
        text = json.dumps(rows) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(TRADE_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            for key in ("entry_positions", "exit_positions"):
                row[key] = " ".join(map(str, row[key]))
            writer.writerow(row)
        text = buffer.getvalue()
    if args.out:
        write_text(args.out, text)
        print(f"{len(rows):,} trades written to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


COMMANDS = [
    Command("report equity", "equity per time step", equity, _equity_arguments, json=False),
    Command(
        "report summary",
        "per pair, totals (drawdown, Sharpe, Sortino, Calmar ...) and days",
        summary,
        _summary_arguments,
    ),
    Command(
        "report trades",
        "round trips with their fills, fees, profit and ledger positions",
        trades,
        _trades_arguments,
        json=False,
    ),
]
