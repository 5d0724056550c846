"""The `tally` command line: the table of commands behind one error edge.

Exit codes: 0 success, 1 integrity failure (the ledger or a cache was tampered with),
2 user or environment error (bad argument, bad file, unreachable database).
A user mistake prints one message with its context and a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from ledger.errors import EXIT_OK, TallyError
from tally import __version__
from tally.cli import cmd_audit, cmd_import, cmd_ledger, cmd_report, cmd_run
from tally.cli.table import Command, Invocation, build_parser

# The command table, in the order `tally --help` lists it.
COMMANDS: list[Command] = [
    *cmd_ledger.COMMANDS,
    *cmd_run.COMMANDS,
    *cmd_audit.COMMANDS,
    *cmd_report.COMMANDS,
    *cmd_import.COMMANDS,
]

__all__ = ["COMMANDS", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    # Start-up imports (SQLAlchemy, pydantic) allocate a few hundred thousand objects that
    # live as long as the process; collecting garbage among them found none and cost about
    # 50 ms. They are frozen out of the collector once the ledger is open (``_dispatch``).
    gc.disable()
    try:
        args = build_parser(COMMANDS, __version__).parse_args(argv)
        args.db = args.db or args.main_db
        args.config = args.config or args.main_config
        return _dispatch(args.command_entry, args)
    except TallyError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing partial was committed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # `tally events | head` closed the pipe: not an error
    finally:
        gc.enable()


def _dispatch(command: Command, args: argparse.Namespace) -> int:
    from tally.config_file import load_store_settings, resolve_db_url

    store_settings = load_store_settings(args.config)
    call = Invocation(args, store_settings, resolve_db_url(args.db, store_settings))
    if not command.opens_store:
        _imports_done()
        return command.handler(call)
    from ledger.store import open_store

    with open_store(call.url, settings=store_settings) as store:
        _imports_done()
        call.store = store
        return command.handler(call)


def _imports_done() -> None:
    """Move what start-up allocated out of the collector's sight, then collect as usual (a
    long run or a big replay needs the collector; it no longer rescans the imports)."""
    gc.freeze()
    gc.enable()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
