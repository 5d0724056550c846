"""Hot reload of the configuration file: watched (watchfiles) and on SIGHUP.

A change is validated whole before anything uses it. Valid: the caller applies it at its
next boundary (a cycle's end for a run, at once for the service) and records
``ConfigChanged`` with the old and new sha256 and the key paths that changed. Invalid, or
touching a key that cannot change while running (the ledger, the account, the mode, where
the service listens): ``ConfigRejected`` with every error and its key path, and nothing
changes. The same rejected content is reported once, not at every look.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ledger import events
from ledger.errors import TallyError
from tally.settings import Settings

LOGGER = logging.getLogger("tally.config")

# Key paths a running process cannot take on, with the reason given when they change.
FROZEN_FOR_RUNS = {
    "store": "the ledger of a running run cannot change; stop it and start it on the other",
    "run.mode": "a run keeps its mode; start a new run",
    "run.account": "a run keeps its account; start a new run",
    "run.seed": "a run keeps its seed; start a new run",
    "run.live.exchange": "a run keeps its exchange; start a new run",
    "run.live.symbols": "a run keeps its symbols; start a new run",
    "run.starting_cash": "a run's starting funds were deposited when it began",
}
# What a paper or live run takes on at its next cycle boundary; any other change waits for
# the run to start again, and is refused with that reason.
RELOADABLE_FOR_RUNS = ("run.validator", "run.alerts", "run.live.interval_s")
FROZEN_FOR_SERVICE = {
    "store": "the service's ledger cannot change; restart `tally serve`",
    "service.host": "where the service listens changes with a restart",
    "service.port": "where the service listens changes with a restart",
}


@dataclass(frozen=True)
class Reloaded:
    """What one look at the file found: the event to record and, if valid, the settings."""

    event: events.ConfigChanged | events.ConfigRejected
    settings: Settings | None  # None: rejected, the old settings stand


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted key paths whose values differ (a whole list is one value)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out += changed_paths(old[key], new[key], path)
        return out
    return [] if old == new else [prefix]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class ConfigReloader:
    """Watches one configuration file; ``poll`` at a boundary says what changed."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        frozen: dict[str, str],
        reloadable: tuple[str, ...] | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.frozen = frozen
        self.reloadable = reloadable  # None: every key that is not frozen
        self.sha256 = _digest(path)
        self._seen = self.sha256  # the last content looked at (rejected ones included)
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Look at the file at the next boundary (SIGHUP, or the watcher saw a change)."""
        self._pending.set()

    def start(self) -> ConfigReloader:
        self._thread = threading.Thread(target=self._watch, name="tally-config", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch(self) -> None:
        from watchfiles import watch

        # The folder, not the file: editors replace a file by renaming a new one over it.
        for changes in watch(
            self.path.parent, stop_event=self._stop, debounce=200, rust_timeout=500
        ):
            if any(Path(changed).name == self.path.name for _, changed in changes):
                self.request()

    def poll(self) -> Reloaded | None:
        """The change to apply or the rejection to record, or None (nothing new)."""
        if not self._pending.is_set():
            return None
        self._pending.clear()
        digest = _digest(self.path)
        if digest in ("", self._seen):
            return None
        self._seen = digest
        errors, new = self._validate()
        if new is not None:
            old_values = self.settings.model_dump(mode="json")
            paths = changed_paths(old_values, new.model_dump(mode="json"))
            for path in paths:
                errors += self._refusals(path)
            if not errors:
                event = events.ConfigChanged(
                    old_sha256=self.sha256, new_sha256=digest, changed=paths
                )
                self.settings, self.sha256 = new, digest
                LOGGER.info("CONFIG_CHANGED file=%s changed=%s", self.path, ",".join(paths) or "-")
                return Reloaded(event, new)
        LOGGER.error("CONFIG_REJECTED file=%s errors=%s", self.path, "; ".join(errors))
        return Reloaded(events.ConfigRejected(sha256=digest, errors=errors), None)

    def _refusals(self, path: str) -> list[str]:
        def under(prefix: str) -> bool:
            return path == prefix or path.startswith(prefix + ".")

        for frozen, reason in self.frozen.items():
            if under(frozen):
                return [f"{path}: cannot change while running ({reason})"]
        if self.reloadable is not None and not any(under(p) for p in self.reloadable):
            return [
                f"{path}: takes effect only when the run starts again (while it runs, "
                f"{', '.join(self.reloadable)} can change)"
            ]
        return []

    def _validate(self) -> tuple[list[str], Settings | None]:
        from tally.config_file import read_config

        try:
            _source, raw = read_config(self.path)
        except TallyError as e:
            where = e.context.get("key") or e.context.get("line") or ""
            return [f"{where}: {e.message}" if where else e.message], None
        try:
            return [], Settings.model_validate(raw)
        except ValidationError as e:
            return [
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in e.errors()
            ], None
