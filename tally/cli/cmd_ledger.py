"""The ledger itself: init, verify, events, stats."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ledger.errors import EXIT_OK, InputError
from tally.cli.table import Command, Invocation

if TYPE_CHECKING:
    from ledger.recorded import RecordedEvent


def init(run: Invocation) -> int:
    from ledger.store import init_store
    from ledger.store.backend import parse_url

    before, after = init_store(run.url, run.store_settings)
    state = (
        "created"
        if before is None
        else ("already up to date" if before == after else f"upgraded from {before}")
    )
    shown = parse_url(run.url).render_as_string(hide_password=True)
    if run.args.json:
        print(json.dumps({"state": state, "ledger": shown, "schema": after}))
        return EXIT_OK
    print(f"ledger {state}: {shown} (schema {after})")
    return EXIT_OK


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect-head", metavar="HEX", help="head hash recorded earlier (catches truncation)"
    )


def verify(run: Invocation) -> int:
    import msgspec

    from tally.progress import Progress

    args, store = run.args, run.ledger
    expect = None
    if args.expect_head:
        try:
            expect = bytes.fromhex(args.expect_head)
            if len(expect) != 32:  # a sha256: a shorter one can only ever mismatch
                raise ValueError("not 32 bytes")
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
    from tally.verification import record_verified

    record_verified(store, report.head_position)  # for `tally health`'s verify lag
    if args.json:
        print(json.dumps({"ok": True, **msgspec.to_builtins(report)}))
    else:
        print(
            f"ok: {report.events:,} events verified, head position {report.head_position}, "
            f"head hash {report.head_hash}"
        )
    return EXIT_OK


def _events_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", help="only this stream")
    parser.add_argument("--type", action="append", default=[], help="only this type (repeat)")
    parser.add_argument(
        "--from-position", type=int, default=1, metavar="N", help="first position (default: 1)"
    )
    parser.add_argument(
        "--to-position", type=int, default=None, metavar="N", help="last position (default: head)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="at most N events (default: all)"
    )


def list_events(run: Invocation) -> int:
    args = run.args
    for name in ("from_position", "limit"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "from_position" else 0):
            raise InputError(
                f"--{name.replace('_', '-')} must be positive, got {value}", value=value
            )
    from ledger.events import EVENT_TYPES

    unknown = [t for t in args.type if t not in EVENT_TYPES]
    if unknown:
        raise InputError(
            f"unknown event type {unknown[0]!r}",
            hint=f"the types are: {', '.join(sorted(EVENT_TYPES))}",
            value=unknown[0],
        )
    found = run.ledger.query(
        stream=args.stream,
        types=args.type,
        from_position=args.from_position,
        to_position=args.to_position,
        limit=args.limit,
    )
    out = sys.stdout
    for recorded in found:
        out.write(event_json(recorded) if args.json else event_line(recorded))
        out.write("\n")
    return EXIT_OK


def event_dict(recorded: RecordedEvent) -> dict[str, Any]:
    """An event with its envelope, as plain JSON values."""
    from tally.views import event_view

    return event_view(recorded, "event")


def event_json(recorded: RecordedEvent) -> str:
    return json.dumps(event_dict(recorded), separators=(",", ":"))


def event_line(recorded: RecordedEvent) -> str:
    fields = event_dict(recorded)["event"]
    summary = " ".join(f"{k}={v}" for k, v in fields.items())
    when = recorded.recorded_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (
        f"{recorded.position:>8} {when} {recorded.stream:<24} "
        f"v{recorded.version:<5} {recorded.type:<16} {summary}"
    )


def stats(run: Invocation) -> int:
    import msgspec

    store = run.ledger
    found = store.stats()
    if run.args.json:
        print(json.dumps(msgspec.to_builtins(found), sort_keys=True))
        return EXIT_OK
    print(f"ledger        {store.url}")
    print(f"events        {found.events:,}")
    print(f"head position {found.head_position}")
    print(f"head hash     {found.head_hash}")
    if found.by_type:
        print("by type:")
        for name, count in found.by_type.items():
            print(f"  {name:<24} {count:>10,}")
        print("by stream:")
        for name, count in found.by_stream.items():
            print(f"  {name:<24} {count:>10,}")
    return EXIT_OK


COMMANDS = [
    Command("init", "create or upgrade the ledger", init, opens_store=False),
    Command("verify", "check the whole hash chain", verify, _verify_arguments),
    Command(
        "events",
        "list events with filters (--json: one JSON object a line)",
        list_events,
        _events_arguments,
    ),
    Command("stats", "counts by type and stream, head", stats),
]
