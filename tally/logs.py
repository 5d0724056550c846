"""Operator logs of ``tally run``: the marker lines (``DATA_FAILURE``, ``CIRCUIT_OPEN``, ...)
as text or JSON lines, to stderr and/or a file.

The lines themselves are rendered from committed events (``ingest.logs``); this module only
decides where they go. Their timestamps are the wall clock of the process writing them: a
log is about the process, the events carry the run's own times.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from ledger.errors import InputError
from ledger.redact import redact

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, marker (the first word) and message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname,
                "logger": record.name,
                "marker": message.split(" ", 1)[0],
                "message": message,
            },
            sort_keys=True,
        )


class TerminalLines(logging.StreamHandler[TextIO]):
    """Clears a progress bar's line before writing, so the bar and the lines do not mix.

    Without a stream of its own it writes to whatever ``sys.stderr`` is at the time (a
    command run in-process after another must not write to the first one's stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follows_stderr:
            self.stream = sys.stderr
        if self.stream.isatty():
            self.stream.write("\r\033[K")
        super().emit(record)


class Redactor(logging.Filter):
    """Masks credentials in every line, whatever its level or logger (``ledger.redact``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure(
    level: str,
    *,
    log_file: Path | None,
    fmt: str,
    stream: TextIO | None = None,
    also: tuple[str, ...] = (),
) -> None:
    """Send the ``tally`` loggers' lines (and ``also``'s: uvicorn's for the service) at
    ``level`` and above to stderr and ``log_file``."""
    formatter: logging.Formatter = (
        JsonLines() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    handlers: list[logging.Handler] = [TerminalLines(stream)]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as e:
            raise InputError(
                f"cannot open the log file: {e.strerror}",
                hint="pass a writable path to --log-file",
                file=str(log_file),
            ) from e
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(Redactor())
    # ccxt's own lines (its debug log quotes request headers) go through the same handlers,
    # so they are masked like ours.
    for name in ("tally", "ccxt", *also):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False
