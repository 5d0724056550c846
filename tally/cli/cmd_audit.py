"""Audit: replay the books as of a moment, reproduce a run, compare two, reconcile."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import EXIT_INTEGRITY, EXIT_OK, InputError
from tally.cli.table import Command, Invocation
from tally.values import parse_time_arg, write_text

if TYPE_CHECKING:
    from ledger.store import EventStore


def add_account_or_run(parser: argparse.ArgumentParser) -> None:
    """--account A or --run RUN (the run's own account)."""
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--account", default="main", help="the account (default: %(default)s)")
    who.add_argument("--run", metavar="RUN", help="the account of this run")


def account_of(store: EventStore, args: argparse.Namespace) -> tuple[str, str | None]:
    """(account, run id) from --run or --account (a run's account when --run is given)."""
    from projections.runs import finished_run

    run_id = getattr(args, "run", None)
    if run_id:
        return finished_run(store, run_id).start.account, run_id
    return str(args.account), None


def steps_of(store: EventStore, args: argparse.Namespace) -> dict[str, Decimal]:
    """asset -> the precision amounts are shown at: a run's own recorded ``run.markets``
    with --run, else the configuration's."""
    from projections.runs import finished_run
    from tally.amounts import asset_steps
    from tally.settings import load_settings

    run_id = getattr(args, "run", None)
    if run_id:
        config = finished_run(store, run_id).start.config
        return asset_steps(config.get("run", {}).get("markets", {}))
    return asset_steps(load_settings(args.config).run.markets)


def _repro_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("run_id", metavar="RUN")
    check.add_argument(
        "--scratch-db",
        metavar="URL",
        help="an empty ledger to re-execute into (default: a temporary SQLite)",
    )
    check.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="where the run's input files are now (checked by sha256)",
    )
    check.add_argument(
        "--strategy-path",
        type=Path,
        metavar="DIR",
        help="the folder the run's strategy module was imported from (as given to tally run)",
    )


def repro_check(call: Invocation) -> int:
    from tally import repro
    from tally.cli.cmd_run import add_strategy_path
    from tally.progress import Progress

    args = call.args
    if args.strategy_path is not None:
        add_strategy_path(args.strategy_path)
    bar = Progress("re-executing", 1)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done)

    try:
        result = repro.check(
            call.ledger,
            args.run_id,
            scratch_url=args.scratch_db,
            data_dir=args.data,
            progress=progress,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps({
            "run_id": result.run_id, "reproduced": result.reproduced, "events": result.events,
            "fingerprint": result.fingerprint,
            "replayed_fingerprint": result.replayed_fingerprint,
            "divergence": result.divergence.as_dict() if result.divergence else None,
            "notes": result.notes,
        }))  # fmt: skip
        return EXIT_OK if result.reproduced else EXIT_INTEGRITY
    for note in result.notes:
        print(f"note: {note}")
    if result.reproduced:
        print(f"reproduced: {result.events:,} events, fingerprint {result.fingerprint}")
        return EXIT_OK
    print(f"NOT reproduced: run {result.run_id} ({result.events:,} events recorded)")
    if result.divergence is not None:
        print(result.divergence.render())
    print(f"fingerprint recorded {result.fingerprint}, re-executed {result.replayed_fingerprint}")
    return EXIT_INTEGRITY


def _diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write equity A, B, delta")


def diff(call: Invocation) -> int:
    from tally import repro

    args = call.args
    found = repro.diverge(call.ledger, args.run_a, args.run_b)
    rows = found.equity
    if args.csv:
        lines = ["timestamp,equity_a,equity_b,delta"] + [
            ",".join(
                "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                for v in row
            )
            for row in rows
        ]
        write_text(args.csv, "\n".join(lines) + "\n")
    if args.json:
        print(json.dumps({
            "run_a": args.run_a, "run_b": args.run_b,
            "events_a": found.events_a, "events_b": found.events_b,
            "inputs": {k: [repro.show(a), repro.show(b)] for k, (a, b) in found.inputs.items()},
            "divergence": found.divergence.as_dict() if found.divergence else None,
            "equity": [
                [row[0].isoformat(), *(None if v is None else str(v) for v in row[1:])]
                for row in rows
            ],
        }))  # fmt: skip
        return EXIT_OK
    if found.inputs:
        print("inputs differ:")
        for name, (left, right) in found.inputs.items():
            print(f"  {name}: {repro.show(left)} vs {repro.show(right)}")
    if found.divergence is None:
        print(
            f"runs {args.run_a} and {args.run_b} record the same events "
            f"({found.events_a:,}), apart from their own names"
        )
    else:
        print(found.divergence.render(a=args.run_a, b=args.run_b))
    if args.csv:
        print(f"equity over time written to {args.csv}")
    deltas = [row[3] for row in rows if row[3] is not None]
    if deltas:
        print(
            f"equity difference (A - B) over {len(rows):,} time steps: final {deltas[-1]}, "
            f"largest {max(deltas, key=abs)}"
        )
        step = max(1, len(rows) // 10)
        print(f"{'time':<26} {'equity A':>18} {'equity B':>18} {'A - B':>16}")
        for i in sorted({*range(0, len(rows), step), len(rows) - 1}):
            moment, left, right, delta = rows[i]
            print(f"{moment.isoformat():<26} {left!s:>18} {right!s:>18} {delta!s:>16}")
    return EXIT_OK if found.divergence is None else EXIT_INTEGRITY


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--to", type=int, metavar="POSITION", help="as of this position (default: the head)"
    )
    when.add_argument(
        "--at", metavar="TIME", help="as recorded by then: ISO-8601 (UTC if no zone) or epoch ms"
    )
    when.add_argument(
        "--market-time",
        metavar="TIME",
        help="as of a moment of the market's own time (fills' execution times, candles' "
        "closes, deposits' --at), whenever it was recorded: for imported history",
    )
    add_account_or_run(parser)


def replay(call: Invocation) -> int:
    from projections.replay import replay as replay_view
    from projections.replay import replay_at_market_time

    args, store = call.args, call.ledger
    account, run_id = account_of(store, args)
    head = store.head()
    if args.to is not None:
        if args.to < 1:
            raise InputError(f"--to must be a position >= 1, got {args.to}", value=args.to)
        position = min(args.to, head)
    elif args.at is not None:
        position = store.position_at(parse_time_arg(args.at, "--at"))
        if position == 0:
            raise InputError(
                f"the ledger holds nothing recorded at or before {args.at}",
                hint="pick a later time (`tally events` shows recorded times), or use "
                "--market-time for imported history at its own time",
            )
    else:
        position = head
    if args.market_time is not None:
        moment = parse_time_arg(args.market_time, "--market-time")
        view = replay_at_market_time(store, account=account, moment=moment, run_id=run_id)
        position = view.position
    else:
        view = replay_view(store, account=account, position=position, run_id=run_id)
    if view.books.quote is None and not any(view.books.cash.values()):
        raise InputError(
            f"account {account!r} holds nothing as of position {position:,}",
            hint="pick a run with --run (`tally runs` lists them) or an account with --account"
            + ("; --market-time counts imported history at its own time" if not run_id else ""),
            account=account,
            position=position,
        )
    out = view.as_dict()
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return EXIT_OK
    from tally.amounts import show

    quote = view.books.quote
    steps = steps_of(store, args)

    def amount(value: str, asset: str | None) -> str:
        return show(value, steps.get(asset or ""))

    equity = (
        amount(out["equity"], quote)
        if out["equity"]
        else "unknown (no price for " + ", ".join(view.unpriced) + ")"
    )
    print(f"as of position {position:,} ({out['recorded_at']}), account {account}")
    print(f"  equity     {equity} {quote or ''}")
    for asset, value in out["cash"].items():
        print(f"  cash       {asset:<10} {amount(value, asset)}")
    for symbol, qty in out["positions"].items():
        print(
            f"  position   {symbol:<10} {show(qty)} @ avg "
            f"{amount(out['average_cost'][symbol], quote)} "
            f"(mark {out['marks'].get(symbol, '?')})"
        )
    for asset, value in out["fees_paid"].items():
        print(f"  fees paid  {asset:<10} {amount(value, asset)}")
    for asset, value in out["realized_pnl"].items():
        print(f"  realized   {asset:<10} {amount(value, asset)}")
    print(f"  errors     {out['errors'] or 'none'}")
    for name, breaker in out["breakers"].items():
        print(
            f"  breaker    {name}: {breaker['state']} (calls {breaker['calls']}, failures "
            f"{breaker['failures']}, rejected {breaker['rejected']})"
        )
    return EXIT_OK


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    add_account_or_run(parser)


def reconcile(call: Invocation) -> int:
    from projections.reconciliation import reconcile_with_venue
    from projections.validator import ValidatorSettings

    account, _run = account_of(call.ledger, call.args)
    report = reconcile_with_venue(call.ledger, account, settings=ValidatorSettings())
    if call.args.json:
        from tally.views import reconciliation_dict

        print(json.dumps(reconciliation_dict(report)))
    else:
        print(report.table())
    return EXIT_INTEGRITY if report.decision.outcome == "discarded" else EXIT_OK


COMMANDS = [
    Command(
        "repro check",
        "re-execute RUN into a scratch ledger and compare event by event",
        repro_check,
        _repro_arguments,
    ),
    Command(
        "diff",
        "where two runs part ways, and their equity difference over time",
        diff,
        _diff_arguments,
    ),
    Command(
        "replay",
        "the books, errors and breakers as of a position or time",
        replay,
        _replay_arguments,
    ),
    Command(
        "reconcile",
        "the ledger's books against the latest venue balances",
        reconcile,
        _reconcile_arguments,
    ),
]
