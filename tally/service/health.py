"""Health checks, registered in one place, with Nagios' exit codes.

Each check reads the facts (the ledger, the monitor fold, the configuration, the clock) and
returns OK, WARNING, CRITICAL or UNKNOWN with its value and threshold. `tally health` exits
with the worst status's code (0, 1, 2, 3, as monitoring systems expect); `/health/ready`
answers 503 when any check is CRITICAL or UNKNOWN. A new check is one function decorated
with ``@check``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import TallyError

if TYPE_CHECKING:
    from ledger.store import EventStore
    from projections.monitor import MonitorState
    from tally.service.settings import FloorThreshold, Threshold
    from tally.settings import Settings

STATUSES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")  # index = Nagios exit code


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    value: float | None
    threshold: str
    summary: str

    @property
    def code(self) -> int:
        return STATUSES.index(self.status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "value": self.value,
            "threshold": self.threshold,
            "summary": self.summary,
        }


@dataclass
class Facts:
    store: EventStore
    settings: Settings
    monitor: MonitorState
    now: datetime
    runs: list[dict[str, Any]]


Check = Callable[[Facts], CheckResult]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def number(value: float | None) -> str:
    """1,000,000 rather than 1e+06; 53,900.1 rather than 53900.1; 0.0075 as is."""
    if value is None:
        return ""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:g}"


def graded(name: str, value: float, limits: Threshold, summary: str) -> CheckResult:
    status = (
        "CRITICAL" if value >= limits.critical else "WARNING" if value >= limits.warning else "OK"
    )
    return CheckResult(
        name, status, value, f">= {number(limits.warning)} / {number(limits.critical)}", summary
    )


def floored(name: str, value: float, limits: FloorThreshold, summary: str) -> CheckResult:
    status = (
        "CRITICAL" if value <= limits.critical else "WARNING" if value <= limits.warning else "OK"
    )
    return CheckResult(
        name, status, value, f"<= {number(limits.warning)} / {number(limits.critical)}", summary
    )


@check("ledger")
def _ledger(facts: Facts) -> CheckResult:
    from ledger.store.schema import SCHEMA_REVISION

    head = facts.store.head()  # a query: the ledger answers (its schema was checked at open)
    return CheckResult(
        "ledger", "OK", head, "reachable", f"head {head:,}, schema {SCHEMA_REVISION}"
    )


@check("verify_lag")
def _verify_lag(facts: Facts) -> CheckResult:
    from tally.verification import verified_position

    verified = verified_position(facts.store)
    lag = facts.store.head() - verified
    return graded(
        "verify_lag",
        lag,
        facts.settings.health.verify_lag_events,
        f"{lag:,} events after the last verified position {verified:,}",
    )


@check("cycle_age")
def _cycle_age(facts: Facts) -> CheckResult:
    from tally.views import live_cycle_ages

    ages = live_cycle_ages(facts.monitor, facts.runs, facts.now)
    if not ages:
        return CheckResult("cycle_age", "OK", None, "", "no paper or live run running")
    known = {r: a for r, a in ages.items() if a is not None}
    if not known:
        return CheckResult("cycle_age", "UNKNOWN", None, "", "running, no cycle recorded yet")
    run, age = max(known.items(), key=lambda item: item[1])
    return graded(
        "cycle_age", age, facts.settings.health.cycle_age_s, f"{age:.0f} s since {run}'s last cycle"
    )


@check("breakers_open")
def _breakers(facts: Facts) -> CheckResult:
    board = facts.monitor.breakers.breakers
    names = sorted(n for n, b in board.items() if b.state == "open")
    return graded(
        "breakers_open",
        len(names),
        facts.settings.health.breakers_open,
        f"open: {', '.join(names)}" if names else f"{len(board)} breakers, none open",
    )


@check("error_rate")
def _error_rate(facts: Facts) -> CheckResult:
    rate = facts.monitor.error_rates(facts.now)["5m"]
    return graded(
        "error_rate",
        rate,
        facts.settings.health.error_rate_per_min,
        f"{rate:g} errors/min over 5 min",
    )


@check("stale_share")
def _stale(facts: Facts) -> CheckResult:
    share = facts.monitor.stale_share()
    return graded(
        "stale_share",
        share,
        facts.settings.health.stale_share,
        f"{share:.1%} of recent snapshot prices stale",
    )


@check("refused_reconciliations")
def _discarded(facts: Facts) -> CheckResult:
    from datetime import timedelta

    count = facts.monitor.discarded_since(facts.now - timedelta(hours=1))
    return graded(
        "refused_reconciliations",
        count,
        facts.settings.health.discarded_cycles_1h,
        f"{count} cycles discarded in the last hour",
    )


@check("spool")
def _spool(facts: Facts) -> CheckResult:
    folder = Path(facts.settings.runner.spool_dir)
    files = sorted(folder.glob("*.spool")) if folder.is_dir() else []
    size = sum(f.stat().st_size for f in files)
    return graded(
        "spool",
        size,
        facts.settings.health.spool_bytes,
        f"{size:,} bytes waiting in {len(files)} spool file(s)" if files else "empty",
    )


@check("free_disk")
def _disk(facts: Facts) -> CheckResult:
    path = getattr(facts.store.backend, "path", None)
    if path is None:
        return CheckResult("free_disk", "OK", None, "", "the ledger is on a server (PostgreSQL)")
    free_mb = shutil.disk_usage(Path(path).resolve().parent).free / 2**20
    return floored(
        "free_disk",
        round(free_mb, 1),
        facts.settings.health.free_disk_mb,
        f"{free_mb:,.0f} MB free beside {path}",
    )


def run_checks(
    store: EventStore,
    settings: Settings,
    monitor: MonitorState,
    now: datetime | None = None,
) -> list[CheckResult]:
    """Every registered check; one that cannot tell is UNKNOWN, never an exception."""
    from tally.views import runs_rows

    now = now or datetime.now(UTC)
    try:
        runs = runs_rows(store)
    except TallyError:
        runs = []
    facts = Facts(store, settings, monitor, now, runs)
    out = []
    for name, fn in CHECKS.items():
        try:
            out.append(fn(facts))
        except TallyError as e:
            status = "CRITICAL" if name == "ledger" else "UNKNOWN"
            out.append(CheckResult(name, status, None, "", f"{type(e).__name__}: {e.message}"))
        except OSError as e:
            out.append(CheckResult(name, "UNKNOWN", None, "", f"{type(e).__name__}: {e}"))
    return out


def worst(results: list[CheckResult]) -> str:
    """The overall status, as Nagios plugins combine them: any CRITICAL, else any WARNING,
    else any UNKNOWN, else OK."""
    found = {r.status for r in results}
    return next((s for s in ("CRITICAL", "WARNING", "UNKNOWN") if s in found), "OK")
