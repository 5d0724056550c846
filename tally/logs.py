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
    """Clears a progress bar's line before writing, so the bar and the lines do not mix."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream.isatty():
            self.stream.write("\r\033[K")
        super().emit(record)


def configure(level: str, *, log_file: Path | None, fmt: str, stream: TextIO | None = None) -> None:
    """Send the ``tally`` loggers' lines at ``level`` and above to stderr and ``log_file``."""
    formatter: logging.Formatter = (
        JsonLines() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    handlers: list[logging.Handler] = [TerminalLines(stream or sys.stderr)]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as e:
            raise InputError(
                f"cannot open the log file: {e.strerror}",
                hint="pass a writable path to --log-file",
                file=str(log_file),
            ) from e
    logger = logging.getLogger("tally")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
