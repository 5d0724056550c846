"""The service's own alerts: what only the wall clock can tell (a run that stopped cycling,
a spool that holds cycles), checked every few seconds and recorded in ``alerts/service``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ledger import events
from projections.alerting import SERVICE_KINDS, AlertEngine
from tally.views import live_cycle_ages

if TYPE_CHECKING:
    from ledger.store import EventStore
    from projections.monitor import MonitorState
    from tally.settings import Settings

STREAM = "alerts/service"
LOGGER = logging.getLogger("tally.alerts")


def service_engine(store: EventStore, settings: Settings) -> AlertEngine | None:
    """An engine of the wall-clock rules, its firing state rebuilt from ``alerts/service``."""
    rules = [r for r in settings.run.alerts.rules if r.kind in SERVICE_KINDS]
    if not rules:
        return None
    engine = AlertEngine(rules)
    for recorded in store.read(STREAM):
        engine.observe(recorded.event, recorded.recorded_at)
    return engine


def evaluate(
    engine: AlertEngine,
    settings: Settings,
    state: MonitorState,
    running: list[dict[str, object]],
    now: datetime | None = None,
) -> list[events.Event]:
    """The alerts due now from the wall-clock kinds."""
    now = now or datetime.now(UTC)
    stalled: dict[str, str] = {}
    ages = live_cycle_ages(state, running, now)
    for rule in engine.rules:
        if rule.kind == "no_cycle":
            for run_id, age in ages.items():
                if age is not None and age >= rule.threshold:
                    stalled[run_id] = f"no cycle for {age:.0f} s"
    folder = Path(settings.runner.spool_dir)
    spools = {
        f.name: f"{f.stat().st_size:,} bytes of cycles wait for the ledger"
        for f in (sorted(folder.glob("*.spool")) if folder.is_dir() else [])
        if f.stat().st_size > 0
    }
    engine.external = {"no_cycle": stalled, "spool_not_empty": spools}
    return engine.check(now)
