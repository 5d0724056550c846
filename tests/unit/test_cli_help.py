"""Every option of every command says what it is for (issue 13: no bare flags)."""

from __future__ import annotations

import argparse

from tally.cli import COMMANDS
from tally.cli.table import build_parser


def _bare(parser: argparse.ArgumentParser, name: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                found += _bare(subparser, f"{name} {sub}".strip())
        elif action.option_strings and not action.help:
            found.append(f"tally {name} {action.option_strings[0]}")
    return found


def test_every_option_has_help_text() -> None:
    assert _bare(build_parser(COMMANDS, "test")) == []
