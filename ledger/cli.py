"""The `tally` command line: the shell around the ledger.

Exit codes: 0 success, 1 integrity failure (the ledger or a cache was tampered with),
2 user or environment error (bad argument, bad file, unreachable database).
A user mistake prints one message with its context and a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from ledger import __version__
from ledger.errors import EXIT_INTEGRITY, EXIT_OK, InputError, TallyError
from ledger.progress import Progress
from ledger.recorded import RecordedEvent
from ledger.settings import Settings, load_settings, resolve_db_url
from ledger.store import EventStore, init_store, open_store


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a TallyError like every other user mistake."""

    def error(self, message: str) -> Any:
        raise InputError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tally", description="Event-sourced, hash-chained trading ledger.")
    parser.add_argument("--version", action="version", version=f"tally {__version__}")
    # Accepted before or after the command; argparse would let a subcommand's default
    # overwrite the main parser's value, hence the separate names merged in main().
    parser.add_argument("--db", dest="main_db", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--config", dest="main_config", type=Path, help=argparse.SUPPRESS)
    common = _Parser(add_help=False)
    common.add_argument(
        "--db", metavar="URL", help="ledger URL (default: $TALLY_DB, then the config file)"
    )
    common.add_argument("--config", metavar="FILE", type=Path, help="YAML configuration")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("init", parents=[common], help="create or upgrade the ledger")

    verify = sub.add_parser("verify", parents=[common], help="check the whole hash chain")
    verify.add_argument(
        "--expect-head", metavar="HEX", help="head hash recorded earlier (catches truncation)"
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")

    listing = sub.add_parser("events", parents=[common], help="list events with filters")
    listing.add_argument("--stream", help="only this stream")
    listing.add_argument("--type", action="append", default=[], help="only this type (repeat)")
    listing.add_argument("--from-position", type=int, default=1, metavar="N")
    listing.add_argument("--to-position", type=int, default=None, metavar="N")
    listing.add_argument("--limit", type=int, default=None, metavar="N")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")

    stats = sub.add_parser("stats", parents=[common], help="counts by type and stream, head")
    stats.add_argument("--json", action="store_true", help="print as JSON")

    run = sub.add_parser("run", parents=[common], help="the main job: a trading cycle loop "
                         "(default: a backtest on generated sample data)")
    run.add_argument("--data", type=Path, metavar="DIR",
                     help="folder of OHLCV files BASE_QUOTE-TIMEFRAME.csv|.parquet")
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("--mode", choices=["backtest", "paper", "live"], help="override run.mode")
    faults = run.add_mutually_exclusive_group()
    faults.add_argument("--faults", dest="faults", action="store_true", default=None,
                        help="inject feed faults (default: on for the sample, off for --data)")
    faults.add_argument("--no-faults", dest="faults", action="store_false")
    run.add_argument("--cycles", type=int, metavar="N", help="paper/live: cycles to run "
                     "(default run.live.cycles)")
    run.add_argument("--live", action="store_true",
                     help="required for live mode: real orders with keys from the environment")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    _add_run_family(sub, common)

    rec = sub.add_parser("reconcile", parents=[common],
                         help="the ledger's books against the latest venue balances")
    rec.add_argument("--account", default="main")
    rec.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def _add_run_family(sub: Any, common: argparse.ArgumentParser) -> None:
    """runs, repro, diff, replay, report, import, deposit (handled in runs.cli)."""
    sub.add_parser("runs", parents=[common], help="list the runs in the ledger").add_argument(
        "--json", action="store_true", help="print as JSON")

    repro = sub.add_parser("repro", help="reproduce a recorded run")
    repro_sub = repro.add_subparsers(dest="repro_command", required=True, parser_class=_Parser)
    check = repro_sub.add_parser("check", parents=[common], help="re-execute RUN into a "
                                 "scratch ledger and compare event by event")
    check.add_argument("run_id", metavar="RUN")
    check.add_argument("--scratch-db", metavar="URL",
                       help="an empty ledger to re-execute into (default: a temporary SQLite)")
    check.add_argument("--data", type=Path, metavar="DIR",
                       help="where the run's input files are now (checked by sha256)")

    diff = sub.add_parser("diff", parents=[common], help="where two runs part ways, and "
                          "their equity difference over time")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.add_argument("--csv", type=Path, metavar="FILE", help="write equity A, B, delta")

    replay = sub.add_parser("replay", parents=[common], help="the books, errors and "
                            "breakers as of a position or time")
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--to", type=int, metavar="POSITION")
    when.add_argument("--at", metavar="TIME", help="ISO-8601 (UTC if no zone) or epoch ms")
    replay.add_argument("--json", action="store_true", help="print as JSON")

    report = sub.add_parser("report", help="reports")
    report_sub = report.add_subparsers(dest="report_kind", required=True, parser_class=_Parser)
    equity = report_sub.add_parser("equity", parents=[common], help="equity per time step")
    equity.add_argument("--format", choices=["csv", "json", "html"], default="csv")
    equity.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically)")

    imports = sub.add_parser("import", help="bring another system's fills or prices in")
    import_sub = imports.add_subparsers(dest="import_kind", required=True, parser_class=_Parser)
    trades = import_sub.add_parser("trades", parents=[common], help="a CSV of fills: "
                                   "timestamp,symbol,side,qty,price,fee,fee_asset")
    trades.add_argument("file", type=Path, metavar="FILE.csv")
    trades.add_argument("--account", default="main")
    ohlcv = import_sub.add_parser("ohlcv", parents=[common],
                                  help="a folder of BASE_QUOTE-TIMEFRAME.csv|.parquet files")
    ohlcv.add_argument("folder", type=Path, metavar="DIR")

    deposit = sub.add_parser("deposit", parents=[common], help="record starting funds")
    deposit.add_argument("asset", metavar="ASSET")
    deposit.add_argument("amount", metavar="AMOUNT")
    deposit.add_argument("--account", default="main")
    deposit.add_argument("--at", metavar="TIME",
                         help="when the funds arrived (ISO-8601 or epoch ms; default: now)")

    for command in (replay, equity):
        who = command.add_mutually_exclusive_group()
        who.add_argument("--account", default="main")
        who.add_argument("--run", metavar="RUN", help="the account of this run")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    try:
        args = build_parser().parse_args(argv)
        args.db = args.db or args.main_db
        args.config = args.config or args.main_config
        return _dispatch(args)
    except TallyError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing partial was committed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # `tally events | head` closed the pipe: not an error


def _dispatch(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = resolve_db_url(args.db, settings)
    if args.command == "init":
        before, after = init_store(url)
        state = "created" if before is None else (
            "already up to date" if before == after else f"upgraded from {before}"
        )
        print(f"ledger {state}: {_display(url)} (schema {after})")
        return EXIT_OK
    if args.command == "run":
        from runs.cli import run_command

        return run_command(args, settings, url)
    with _open(url, settings) as store:
        if args.command == "verify":
            return _verify(store, args)
        if args.command == "events":
            return _events(store, args)
        if args.command == "stats":
            return _stats(store, args)
        if args.command == "reconcile":
            return _reconcile(store, args)
        from runs import cli as run_cli

        if args.command == "runs":
            return run_cli.runs_command(store, args)
        if args.command == "repro":
            return run_cli.repro_command(store, args)
        if args.command == "diff":
            return run_cli.diff_command(store, args)
        if args.command == "replay":
            return run_cli.replay_command(store, args)
        if args.command == "report":
            return run_cli.report_command(store, args)
        if args.command == "import":
            return run_cli.import_command(store, args)
        if args.command == "deposit":
            return run_cli.deposit_command(store, args)
    raise InputError(f"unknown command {args.command!r}")  # pragma: no cover


def _open(url: str, settings: Settings) -> EventStore:
    return open_store(url, durable=settings.store.durable)


def _display(url: str) -> str:
    from ledger.store.backend import parse_url

    return parse_url(url).render_as_string(hide_password=True)


def _verify(store: EventStore, args: argparse.Namespace) -> int:
    expect = None
    if args.expect_head:
        try:
            expect = bytes.fromhex(args.expect_head)
        except ValueError as e:
            raise InputError(
                "--expect-head must be a hex hash (64 characters)",
                hint="copy the head hash printed by `tally verify` or `tally stats`",
                value=args.expect_head,
            ) from e
    bar = Progress("verify", store.head())
    try:
        report = store.verify(expect_head=expect, progress=bar.update)
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"ok": True, **msgspec.to_builtins(report)}))
    else:
        print(
            f"ok: {report.events:,} events verified, head position {report.head_position}, "
            f"head hash {report.head_hash}"
        )
    return EXIT_OK


def _events(store: EventStore, args: argparse.Namespace) -> int:
    for name in ("from_position", "limit"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "from_position" else 0):
            raise InputError(
                f"--{name.replace('_', '-')} must be positive, got {value}", value=value
            )
    found = store.query(
        stream=args.stream,
        types=args.type,
        from_position=args.from_position,
        to_position=args.to_position,
        limit=args.limit,
    )
    out = sys.stdout
    for recorded in found:
        out.write(_event_json(recorded) if args.json else _event_line(recorded))
        out.write("\n")
    return EXIT_OK


def _event_dict(recorded: RecordedEvent) -> dict[str, Any]:
    fields = msgspec.to_builtins(recorded.event)
    fields.pop("type", None)
    return {
        "position": recorded.position,
        "stream": recorded.stream,
        "version": recorded.version,
        "type": recorded.type,
        "recorded_at": recorded.recorded_at.isoformat().replace("+00:00", "Z"),
        "run_id": recorded.run_id,
        "causation_id": recorded.causation_id,
        "correlation_id": recorded.correlation_id,
        "idempotency_key": recorded.idempotency_key,
        "event": fields,
        "hash": recorded.hash.hex(),
    }


def _event_json(recorded: RecordedEvent) -> str:
    return json.dumps(_event_dict(recorded), separators=(",", ":"))


def _event_line(recorded: RecordedEvent) -> str:
    fields = _event_dict(recorded)["event"]
    summary = " ".join(f"{k}={v}" for k, v in fields.items())
    when = recorded.recorded_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (
        f"{recorded.position:>8} {when} {recorded.stream:<24} "
        f"v{recorded.version:<5} {recorded.type:<16} {summary}"
    )


def _stats(store: EventStore, args: argparse.Namespace) -> int:
    stats = store.stats()
    if args.json:
        print(json.dumps(msgspec.to_builtins(stats), sort_keys=True))
        return EXIT_OK
    print(f"ledger        {store.url}")
    print(f"events        {stats.events:,}")
    print(f"head position {stats.head_position}")
    print(f"head hash     {stats.head_hash}")
    if stats.by_type:
        print("by type:")
        for name, count in stats.by_type.items():
            print(f"  {name:<24} {count:>10,}")
        print("by stream:")
        for name, count in stats.by_stream.items():
            print(f"  {name:<24} {count:>10,}")
    return EXIT_OK


def _reconcile(store: EventStore, args: argparse.Namespace) -> int:
    from ledger import events
    from projections import portfolio
    from projections.reconciliation import reconcile
    from projections.validator import ValidatorSettings

    observed = None
    marks: dict[str, Any] = {}
    for recorded in store.query(types=["BalanceObserved", "SnapshotSealed"]):
        event = recorded.event
        if isinstance(event, events.BalanceObserved) and event.account == args.account:
            observed = event
        elif isinstance(event, events.SnapshotSealed):
            marks.update(event.marks)
    if observed is None:
        raise InputError(
            f"no BalanceObserved event for account {args.account!r} in the ledger",
            hint="record the venue's balances first (a run records them every cycle)",
            account=args.account,
        )
    books = portfolio.rebuild(store, account=args.account)
    report = reconcile(books, observed.venue, observed.balances, marks,
                       settings=ValidatorSettings())
    if args.json:
        print(json.dumps({
            "account": report.account, "venue": report.venue,
            "outcome": report.decision.outcome, "reason": report.decision.reason,
            "rows": [{"asset": r.asset, "ledger": str(r.ledger), "venue": str(r.venue),
                      "delta": str(r.delta), "decision": report.row_decision(r)}
                     for r in report.rows],
        }))
    else:
        print(report.table())
    return EXIT_INTEGRITY if report.decision.outcome == "discarded" else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
