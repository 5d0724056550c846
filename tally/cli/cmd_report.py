"""Reports people read: equity over time as CSV, JSON or HTML with a plot."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import EXIT_OK, InputError
from tally.amounts import show
from tally.cli.cmd_audit import account_of, add_account_or_run
from tally.cli.table import Command, Invocation
from tally.values import write_text

if TYPE_CHECKING:
    from ledger.store import EventStore
    from projections.reports import EquitySeries
    from tally.run.backtest import RunSummary


def _equity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=["csv", "json", "html"], default="csv", help="(default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically)")
    add_account_or_run(parser)


def _series_of(call: Invocation) -> tuple[str, str | None, EquitySeries]:
    """(account, run id, its equity series) of --account or --run; an error if empty."""
    from projections import reports

    account, run_id = account_of(call.ledger, call.args)
    series = reports.load_series(call.ledger, account, run_id=run_id)
    if not series.rows:
        raise _why_empty(account, series)
    return account, run_id, series


def _iso_z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _why_empty(account: str, series: EquitySeries) -> InputError:
    """The real reason an account has no equity to report, and what to do about it."""
    first, last = series.first_money, series.last_price
    if first is None:
        return InputError(
            f"no equity to report for account {account!r}: it holds no money events",
            hint="pick a run with --run (`tally runs` lists them), or deposit and import "
            "trades for the account first",
            account=account,
        )
    if last is None:
        return InputError(
            f"no equity to report for account {account!r}: the ledger holds no prices",
            hint="import candles with `tally import ohlcv DIR`",
            account=account,
        )
    if first >= last:
        return InputError(
            f"no equity to report for account {account!r}: its first money event is dated "
            f"{_iso_z(first)}, after the last price ({_iso_z(last)}); a deposit "
            "without --at is dated when it is recorded",
            hint="the ledger is append-only: deposit into a new account with --at before the "
            "data (e.g. `tally deposit BTC 10 --at "
            f"{_iso_z(series.first_price or last)} --account main2`), or import later prices",
            account=account,
            first_money=_iso_z(first),
            last_price=_iso_z(last),
        )
    return InputError(
        f"no equity to report for account {account!r}: a holding has no price",
        hint="import candles for every symbol the account trades",
        account=account,
    )


def _html_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        default=Path("report.html"),
        help="write the page here, atomically (default: %(default)s)",
    )
    parser.add_argument(
        "--freqtrade",
        type=Path,
        metavar="EXPORT",
        help="draw this freqtrade export's per-candle wallet (.zip or *_wallet.feather) "
        "beside Tally's equity",
    )
    add_account_or_run(parser)


def html_page(call: Invocation, series: EquitySeries, account: str, run_id: str | None) -> str:
    """The interactive page of ``report html`` and ``report equity --format html``."""
    from tally import charts
    from tally.cli.cmd_audit import steps_of

    args, store = call.args, call.ledger
    title = f"Results of {account}" + (f" ({run_id})" if run_id else "")
    data = charts.gather(
        store,
        account,
        run_id,
        series,
        title=title,
        quote_step=steps_of(store, args).get(series.quote),
        candles=_run_candles(store, run_id) if run_id else None,
    )
    if getattr(args, "freqtrade", None) is not None:
        data.wallet = charts.read_wallet(args.freqtrade)
    return charts.render(data)


def _run_candles(store: EventStore, run_id: str) -> dict[str, Any] | None:
    """The OHLC candles a backtest ran on (regenerated, or its files re-read and checked by
    sha256); None when they are gone (the page then draws the run's marks)."""
    from projections.runs import finished_run
    from tally.run.backtest import inputs_from_record
    from tally.settings import Settings

    started = finished_run(store, run_id).start
    if started.mode != "backtest":
        return None
    try:
        if started.data.get("kind") == "files":
            return _files_for_chart(started.data)
        settings = Settings.model_validate(started.config)
        recorded = inputs_from_record(started, settings.run, None, compact=False)
        return dict(recorded.candles.frames)
    except (InputError, ValueError, OSError):
        return None


def _files_for_chart(data: dict[str, Any]) -> dict[str, Any] | None:
    """A run's CSV candles as floats, for drawing only: each file must still be the one the
    run recorded (sha256); the run's time range applies. Other formats: read exactly."""
    import pandas as pd

    from ingest.candles import read_ohlcv_file, sha256_file
    from tally.run.backtest import Selection

    folder = Path(str(data.get("folder", "")))
    start, stop = Selection(data.get("timerange")).bounds()
    frames = {}
    for entry in data.get("files", []):
        path = folder / str(entry["name"])
        if sha256_file(path) != entry["sha256"]:
            return None
        if path.suffix == ".csv":
            frame = pd.read_csv(path, index_col=0)
            frame.index = pd.to_datetime(frame.index, unit="ms", utc=True)
        else:
            frame = read_ohlcv_file(path)
        if start is not None:
            frame = frame[frame.index >= start]
        if stop is not None:
            frame = frame[frame.index <= stop]
        frames[str(entry["symbol"])] = frame
    return frames


def html_report(call: Invocation) -> int:
    account, run_id, series = _series_of(call)
    text = html_page(call, series, account, run_id)
    write_text(call.args.out, text)
    if call.args.json:
        print(json.dumps({"out": str(call.args.out), "bytes": len(text.encode())}))
    else:
        print(f"report written to {call.args.out} ({len(series.rows):,} time steps)")
    return EXIT_OK


def _deliver(text: str, out: Path | None, what: str) -> int:
    """A report to --out (atomically, saying so) or to stdout."""
    if out is not None:
        write_text(out, text)
        print(f"{what} written to {out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def equity(call: Invocation) -> int:
    from projections import reports

    args = call.args
    account, run_id, series = _series_of(call)
    if args.json:
        args.format = "json"
    if args.format == "csv":
        text = reports.to_csv(series)
    elif args.format == "json":
        text = json.dumps(reports.to_json(series)) + "\n"
    else:
        text = html_page(call, series, account, run_id)
    return _deliver(text, args.out, f"{len(series.rows):,} rows")


def _summary_arguments(parser: argparse.ArgumentParser) -> None:
    add_account_or_run(parser)


def summary(call: Invocation) -> int:
    from projections import results
    from tally.cli.cmd_audit import steps_of
    from tally.cli.table_text import render

    args, store = call.args, call.ledger
    account, run_id, series = _series_of(call)
    out = results.summary(series, results.load_trips(store, account, run_id=run_id))
    if args.json:
        print(json.dumps(out))
        return EXIT_OK
    quote, totals = out["quote"], out["totals"]
    step = steps_of(store, args).get(quote)

    def money(text: str) -> str:
        return show(text, step)

    of_run = f" (run {run_id})" if run_id else ""
    print(f"results of account {account}{of_run}: {out['from']} .. {out['to']}")
    rows = [
        [
            p["symbol"],
            str(p["trades"]),
            f"{p['wins']} / {p['draws']} / {p['losses']}",
            f"{p['win_pct']:.1f}",
            money(p["profit_abs"]),
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
    print(render(headers, rows, title="Per pair (closed round trips)", numeric=(1, 3, 4, 5)))
    figures = [
        ("start equity", f"{money(totals['start_equity'])} {quote}"),
        ("end equity", f"{money(totals['end_equity'])} {quote}"),
        (
            "profit",
            f"{money(totals['equity_profit_abs'])} {quote} ({totals['equity_profit_pct']:.2f}%)",
        ),
        ("fees", f"{money(totals['fees'])} {quote}"),
        ("CAGR", f"{totals['cagr_pct']:.2f}%"),
        (
            "max drawdown",
            f"{money(totals['max_drawdown_abs'])} {quote} ({totals['max_drawdown_pct']:.2f}%)"
            f" {totals['max_drawdown_start'] or ''} .. {totals['max_drawdown_end'] or ''}",
        ),
        ("Sharpe / Sortino / Calmar", " / ".join(_ratio(totals[k]) for k in RATIOS)),
        ("profit factor", _ratio(totals["profit_factor"])),
        (
            "expectancy (ratio)",
            f"{money(totals['expectancy'])} ({_ratio(totals['expectancy_ratio'])})",
        ),
        ("exposure", f"{totals['exposure_pct']:.2f}% of time steps"),
        ("open trades", str(totals["open_trades"])),
    ]
    print(render(["figure", "value"], [list(f) for f in figures], title="Totals"))
    days = [
        [
            d["date"],
            money(d["end_equity"]),
            money(d["profit_abs"]),
            f"{d['profit_pct']:.2f}",
            str(d["trades_closed"]),
        ]
        for d in out["days"]
    ]
    print(
        render(
            ["day", f"end equity {quote}", "profit", "%", "closed"],
            days,
            title="Days",
            numeric=(1, 2, 3, 4),
        )
    )
    return EXIT_OK


def compact_results(store: EventStore, run: RunSummary) -> str:
    """The few lines of ``report summary`` that ``tally run`` ends with ("" for none)."""
    from projections import results

    step, run_id = run.quote_step, run.run_id
    out = results.load_summary(
        store, run.account, run_id=run.run_id, span=(run.first_position, run.last_position)
    )
    if out is None:
        return ""
    t, quote = out["totals"], out["quote"]
    return "\n".join(
        [
            f"  round trips      {t['trades']:,}: won {t['wins']:,}, drew {t['draws']:,}, "
            f"lost {t['losses']:,} ({t['win_pct']:.1f}% won), open {t['open_trades']:,}",
            f"  profit           {show(t['equity_profit_abs'], step)} {quote} "
            f"({t['equity_profit_pct']:.2f}%), fees {show(t['fees'], step)} {quote}",
            f"  max drawdown     {show(t['max_drawdown_abs'], step)} {quote} "
            f"({t['max_drawdown_pct']:.2f}%)",
            "  Sharpe / Sortino / Calmar  "
            + " / ".join(_ratio(t[k]) for k in RATIOS)
            + f", profit factor {_ratio(t['profit_factor'])}",
            f"  more             tally report summary --run {run_id}   "
            f"(html: tally report html --run {run_id} --out report.html)",
        ]
    )


RATIOS = ("sharpe", "sortino", "calmar")


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
    parser.add_argument(
        "--format",
        choices=["csv", "json", "parquet"],
        default="csv",
        help="parquet needs --out (default: %(default)s)",
    )
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
    if args.json:
        args.format = "json"
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
    return _deliver(text, args.out, f"{len(rows):,} trades")


COMMANDS = [
    Command(
        "report equity",
        "equity per time step (--json: as --format json)",
        equity,
        _equity_arguments,
    ),
    Command(
        "report html",
        "an interactive page: candles with buys and sells, equity, drawdown, markers",
        html_report,
        _html_arguments,
    ),
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
    ),
]
