"""The command table: every command's name, help, arguments and handler in one place.

A command module lists its ``Command``s beside their handlers; this module turns the table
into an argparse parser and finds the handler for what was parsed. Handlers import what
they need (ccxt, pandas, SQLAlchemy) inside themselves, so building the parser for
``tally --help`` costs nothing but argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import InputError

if TYPE_CHECKING:
    from ledger.store import EventStore, StoreSettings


@dataclass
class Invocation:
    """What a handler is given: the parsed arguments, the store's settings and the ledger URL.

    ``store`` is the opened ledger for commands that declare ``opens_store``. A handler that
    needs the rest of the configuration (``tally run``) loads it from ``args.config``.
    """

    args: argparse.Namespace
    store_settings: StoreSettings
    url: str
    store: EventStore | None = None

    @property
    def ledger(self) -> EventStore:
        if self.store is None:  # pragma: no cover - a table mistake, not a user's
            raise RuntimeError("this command does not open the ledger")
        return self.store


Handler = Callable[[Invocation], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    """One command: ``name`` is one word, or two for a member of a group (``repro check``)."""

    name: str
    help: str
    handler: Handler
    arguments: Arguments = _no_arguments
    opens_store: bool = True  # the edge opens the ledger before the handler, closes it after


GROUP_HELP = {
    "repro": "reproduce a recorded run",
    "report": "reports of an account or a run",
    "import": "bring another system's fills or prices in",
    "token": "API tokens of `tally serve`",
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a TallyError like every other user mistake."""

    def error(self, message: str) -> Any:
        raise InputError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def _common() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--db", metavar="URL", help="ledger URL (default: $TALLY_DB, then the config file)"
    )
    common.add_argument("--config", metavar="FILE", type=Path, help="YAML configuration")
    return common


def build_parser(commands: Sequence[Command], version: str) -> argparse.ArgumentParser:
    """The whole command line, from the table."""
    parser = Parser(prog="tally", description="Event-sourced, hash-chained trading ledger.")
    parser.add_argument("--version", action="version", version=f"tally {version}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an internal error (exit 70), print the Python traceback too",
    )
    # Accepted before or after the command; argparse would let a subcommand's default
    # overwrite the main parser's value, hence the separate names merged by the edge.
    parser.add_argument("--db", dest="main_db", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--config", dest="main_config", type=Path, help=argparse.SUPPRESS)
    common = _common()
    top = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    groups: dict[str, Any] = {}
    for command in commands:
        group, _, member = command.name.partition(" ")
        if member:
            if group not in groups:
                holder = top.add_parser(group, help=GROUP_HELP.get(group, ""))
                groups[group] = holder.add_subparsers(
                    dest=f"{group}_command", required=True, parser_class=Parser
                )
            where, name = groups[group], member
        else:
            where, name = top, group
        sub = where.add_parser(name, parents=[common], help=command.help, description=command.help)
        command.arguments(sub)
        sub.add_argument(
            "--json",
            action="store_true",
            help="print the result as JSON, and an error as one JSON object (serve: log lines)",
        )
        sub.set_defaults(command_entry=command)
    return parser
