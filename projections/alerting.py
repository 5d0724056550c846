"""Alert rules, evaluated from the events on the events' own clock.

An ``AlertEngine`` folds a run's events one at a time; after each event it checks the rules
at that event's time and returns the ``AlertRaised`` / ``AlertResolved`` events due. It reads
nothing but the events and the rules, so the same events give the same alerts: a backtest's
alerts reproduce exactly, and a restarted run rebuilds the engine by folding what the ledger
holds (``AlertRaised`` and ``AlertResolved`` included, so nothing fires twice).

A rule fires once per key (a breaker, an error class, the run) and resolves when its
condition clears; after firing, the same rule and key cannot fire again within its cooldown
(``cooldown_s``, 5 minutes by default), so a flapping condition does not spam.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from ledger import events
from ledger.config import StrictModel

Kind = Literal[
    "error_count",  # errors (failed fetches, rejected orders) in window_s >= threshold
    "error_rate",  # errors per minute over window_s >= threshold
    "breaker_open",  # a breaker opened (key: the breaker)
    "error_class",  # an error of one of ``classes`` within window_s (key: the class)
    "reconciliation_refused",  # a cycle discarded because its diff was over the limit
    "cycle_discarded",  # any cycle discarded (negative cash, a leak, a refused diff)
    "stale_share",  # share of stale prices over the last ``snapshots`` snapshots >= threshold
    # Evaluated by `tally serve` on the wall clock (a run cannot see itself stall):
    "no_cycle",  # a running paper or live run's last cycle is threshold seconds old or more
    "spool_not_empty",  # a run's spool holds cycles waiting for the ledger (key: the file)
]
SERVICE_KINDS = ("no_cycle", "spool_not_empty")
ERRORS = (events.FetchFailed, events.OrderRejected)


class AlertRule(StrictModel):
    """One rule of ``run.alerts.rules``."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Kind
    threshold: float = Field(1.0, ge=0)
    window_s: float = Field(300.0, gt=0, le=7 * 86_400)
    classes: list[str] = Field(default_factory=list)  # error_class: the critical classes
    snapshots: int = Field(20, ge=1, le=10_000)  # stale_share: over this many snapshots
    severity: Literal["warning", "critical"] = "warning"
    cooldown_s: float = Field(300.0, ge=0, le=86_400)


class AlertSettings(StrictModel):
    """Alert rules of a run: part of what it records (its alerts are events of the run)."""

    rules: list[AlertRule] = Field(default_factory=list)


@dataclass
class _Firing:
    raised_at: datetime
    active: bool = True


@dataclass
class AlertEngine:
    rules: list[AlertRule]
    errors: deque[tuple[datetime, str]] = field(default_factory=deque)  # (time, class)
    snapshots: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=10_000))
    open_breakers: set[str] = field(default_factory=set)
    fired: dict[tuple[str, str], _Firing] = field(default_factory=dict)
    # Conditions seen from outside the events (the service's wall-clock kinds): kind -> key
    # -> message, set by the caller before ``check``.
    external: dict[str, dict[str, str]] = field(default_factory=dict)
    # Event-triggered conditions of this instant: (kind, key) seen since the last check.
    _instant: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.set_rules(self.rules)

    def set_rules(self, rules: list[AlertRule]) -> None:
        """New rules (a reloaded configuration); what was folded so far stays."""
        self.rules = list(rules)
        self._horizon = timedelta(seconds=max((r.window_s for r in self.rules), default=0.0))

    def observe(self, event: events.Event, at: datetime) -> list[events.Event]:
        """Fold one event recorded at ``at``; return the alert events it makes due."""
        match event:
            case events.AlertRaised(rule=rule, key=key):
                self.fired[(rule, key)] = _Firing(at)
                return []
            case events.AlertResolved(rule=rule, key=key):
                if (rule, key) in self.fired:
                    self.fired[(rule, key)].active = False
                return []
            case events.FetchFailed(error_class=name):
                self._error(at, name)
            case events.OrderRejected():
                self._error(at, "OrderRejected")
            case events.CircuitOpened(breaker=name):
                self.open_breakers.add(name)
            case events.CircuitClosed(breaker=name) | events.CircuitHalfOpened(breaker=name):
                self.open_breakers.discard(name)
            case events.SnapshotSealed(stale=stale, fresh=fresh, failed=failed):
                self.snapshots.append((stale, stale + fresh + failed))
            case events.CycleDiscarded(reason=reason, cycle=cycle):
                self._instant.add(("cycle_discarded", f"cycle {cycle}"))
                if "auto-reconcile limit" in reason:
                    self._instant.add(("reconciliation_refused", f"cycle {cycle}"))
            case _:
                return []
        return self.check(at)

    def _error(self, at: datetime, name: str) -> None:
        self.errors.append((at, name))
        while self.errors and self.errors[0][0] <= at - self._horizon:
            self.errors.popleft()

    def conditions(self, rule: AlertRule, at: datetime) -> dict[str, str]:
        """The keys for which ``rule`` holds at ``at``, each with its message."""
        since = at - timedelta(seconds=rule.window_s)
        recent = [name for t, name in self.errors if t > since]
        match rule.kind:
            case "error_count" if len(recent) >= rule.threshold:
                return {"all": f"{len(recent)} errors in {rule.window_s:g} s"}
            case "error_rate":
                rate = len(recent) / (rule.window_s / 60)
                if recent and rate >= rule.threshold:
                    return {"all": f"{rate:.2f} errors/min over {rule.window_s:g} s"}
            case "error_class":
                return {
                    name: f"{name} within {rule.window_s:g} s"
                    for name in sorted(set(recent) & set(rule.classes))
                }
            case "breaker_open":
                return {name: f"breaker {name} is open" for name in sorted(self.open_breakers)}
            case "stale_share":
                window = list(self.snapshots)[-rule.snapshots :]
                priced = sum(total for _, total in window)
                share = sum(stale for stale, _ in window) / priced if priced else 0.0
                if share >= rule.threshold and share > 0:
                    return {"all": f"{share:.1%} of prices stale over {len(window)} snapshots"}
            case "no_cycle" | "spool_not_empty":
                return dict(self.external.get(rule.kind, {}))
            case "cycle_discarded" | "reconciliation_refused":
                return {
                    key: f"{rule.kind.replace('_', ' ')} at {key}"
                    for kind, key in sorted(self._instant)
                    if kind == rule.kind
                }
        return {}

    def check(self, at: datetime) -> list[events.Event]:
        """Alerts due at ``at``: raised for new conditions, resolved for cleared ones."""
        out: list[events.Event] = []
        for rule in self.rules:
            holding = self.conditions(rule, at)
            for key, message in holding.items():
                firing = self.fired.get((rule.name, key))
                if firing is not None and firing.active:
                    continue
                if firing is not None and at - firing.raised_at < timedelta(
                    seconds=rule.cooldown_s
                ):
                    continue  # resolved a moment ago: the cooldown holds it back
                self.fired[(rule.name, key)] = _Firing(at)
                out.append(
                    events.AlertRaised(
                        rule=rule.name, key=key, severity=rule.severity, message=message
                    )
                )
            for (name, key), firing in sorted(self.fired.items()):
                if name == rule.name and firing.active and key not in holding:
                    firing.active = False
                    out.append(events.AlertResolved(rule=name, key=key, message="cleared"))
        self._instant.clear()
        return out
