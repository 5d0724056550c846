"""The `tally` command line: the table of commands behind one error edge.

Exit codes: 0 success, 1 integrity failure (the ledger or a cache was tampered with),
2 user or environment error (bad argument, bad file, unreachable database).
A user mistake prints one message with its context and a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence

from ledger.errors import EXIT_INTERNAL, EXIT_OK, TallyError
from tally import __version__
from tally.cli import (
    cmd_audit,
    cmd_import,
    cmd_ledger,
    cmd_report,
    cmd_run,
    cmd_service,
    cmd_sweep,
)
from tally.cli.table import Command, Invocation, build_parser

# The command table, in the order `tally --help` lists it.
COMMANDS: list[Command] = [
    *cmd_ledger.COMMANDS,
    *cmd_run.COMMANDS,
    *cmd_sweep.COMMANDS,
    *cmd_audit.COMMANDS,
    *cmd_report.COMMANDS,
    *cmd_import.COMMANDS,
    *cmd_service.COMMANDS,
]

__all__ = ["COMMANDS", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    # Start-up imports (SQLAlchemy, pydantic) allocate a few hundred thousand objects that
    # live as long as the process; collecting garbage among them found none and cost about
    # 50 ms. They are frozen out of the collector once the ledger is open (``_dispatch``).
    gc.disable()
    given = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in given
    as_json = "--json" in given
    try:
        if not given:  # `tally` alone: what it can do, not an error
            build_parser(COMMANDS, __version__).print_help()
            return EXIT_OK
        args = build_parser(COMMANDS, __version__).parse_args(argv)
        args.db = args.db if args.db is not None else args.main_db
        args.config = args.config if args.config is not None else args.main_config
        return _dispatch(args.command_entry, args)
    except TallyError as e:
        if as_json:  # a script asked for JSON: the error is one object too (on stdout)
            print(json.dumps(e.as_dict(), default=str))
        else:
            print(e.render(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing partial was committed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK  # `tally events | head` closed the pipe: not an error
    except Exception as e:  # a bug, not a user mistake: one line, and the way to see more
        if debug:
            import traceback

            traceback.print_exc()
        where = _innermost_frame(e)
        print(
            f"internal error: {type(e).__name__}: {str(e)[:300]} ({where})\n"
            "  this is a bug in Tally, not in your input; nothing partial was committed\n"
            "  hint: run the same command with --debug for the traceback, and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
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


def _innermost_frame(error: BaseException) -> str:
    """Where the error was raised: file:line of the innermost frame."""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is None:
        return "no traceback"
    code = trace.tb_frame.f_code
    return f"{code.co_filename.rsplit('/', 1)[-1]}:{trace.tb_lineno} in {code.co_name}"


def _imports_done() -> None:
    """Move what start-up allocated out of the collector's sight, then collect as usual (a
    long run or a big replay needs the collector; it no longer rescans the imports)."""
    gc.freeze()
    gc.enable()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
