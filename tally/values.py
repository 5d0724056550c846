"""User values from the command line, checked at the edge: a bad one is an ``InputError``."""

from __future__ import annotations

import errno
from datetime import datetime
from pathlib import Path

from ledger.atomic import atomic_write
from ledger.clock import parse_time
from ledger.errors import InputError


def parse_time_arg(text: str, flag: str) -> datetime:
    """``parse_time`` for a command-line flag: a bad value is a user error with a hint."""
    try:
        return parse_time(text)
    except ValueError as e:
        raise InputError(
            f"{flag} must be an ISO-8601 time or epoch milliseconds, got {text!r}: {e}",
            hint=f"e.g. {flag} 2026-01-05T10:15:30Z",
        ) from e


def write_text(path: Path, text: str) -> None:
    """Write a report atomically; a failure is the user's to fix (a path, a permission)."""
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise InputError(
                f"cannot write {path}: the disk is full",
                hint="free some space (or write elsewhere with --out) and run it again; "
                "nothing was written",
                file=str(path),
            ) from e
        raise InputError(f"cannot write {path}: {e.strerror}", file=str(path)) from e
