"""What an operator watches, folded from the events: errors, breakers, staleness, orders,
reconciliations, cycles and alerts.

One fold feeds `tally monitor`, `tally health`, the service's `/metrics`, `/v1/errors`,
`/v1/breakers` and its dashboard, so they can never disagree. It follows the ledger
incrementally (``MonitorState.apply`` one event at a time) and keeps only bounded memory:
counters, the last ``RECENT_ERRORS_MAX`` errors and an hour of error times.

Rates are counted "as of" a time the caller gives: the wall clock for a live system, or the
last recorded time for a finished backtest (whose events carry the simulated clock).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger import events
from ledger.recorded import RecordedEvent
from projections.errors import BreakerBoard, ErrorSeen

RECENT_ERRORS_MAX = 200
RATE_WINDOWS = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
STALE_SNAPSHOTS = 100  # the stale share is over this many most recent snapshots

# The event types the fold reads: a one-off fold queries only these.
MONITOR_TYPES = (
    "RunStarted",
    "RunFinished",
    "RunStopped",
    "FetchSucceeded",
    "FetchFailed",
    "CallRejected",
    "CircuitOpened",
    "CircuitHalfOpened",
    "CircuitClosed",
    "StalePriceUsed",
    "SnapshotSealed",
    "OrderSubmitted",
    "OrderRejected",
    "OrderOutcomeUnknown",
    "TradeExecuted",
    "CycleDiscarded",
    "AlertRaised",
    "AlertResolved",
)


@dataclass
class OrderStats:
    submitted: int = 0
    filled: int = 0
    rejected: int = 0
    unknown: int = 0
    nonce_in_use: int = 0  # rejections that name a nonce already used

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class MonitorState:
    """Counters and recent history of one ledger, as of ``position``."""

    position: int = 0
    errors_by_class: Counter[str] = field(default_factory=Counter)
    errors_by_source: Counter[str] = field(default_factory=Counter)
    errors_by_symbol: Counter[str] = field(default_factory=Counter)
    errors_by_class_source: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (time, class, source, symbol) of the errors of the last hour before the newest one.
    error_times: deque[tuple[datetime, str, str, str]] = field(default_factory=deque)
    recent_errors: deque[ErrorSeen] = field(default_factory=lambda: deque(maxlen=RECENT_ERRORS_MAX))
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    stale_marks: int = 0
    stale_by_symbol: Counter[str] = field(default_factory=Counter)
    snapshots: deque[tuple[int, int]] = field(  # (stale, priced) of recent snapshots
        default_factory=lambda: deque(maxlen=STALE_SNAPSHOTS)
    )
    orders: OrderStats = field(default_factory=OrderStats)
    discarded_times: deque[datetime] = field(default_factory=lambda: deque(maxlen=1_000))
    runs_started: dict[str, str] = field(default_factory=dict)  # run id -> mode
    runs_ended: set[str] = field(default_factory=set)
    last_cycle: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # run -> (n, at)
    alerts_firing: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule/key -> alert

    def apply(self, recorded: RecordedEvent) -> None:
        self.position = recorded.position
        at = recorded.recorded_at
        event = recorded.event
        self.breakers.apply(recorded)
        match event:
            case events.FetchFailed():
                self._error(recorded, event.error_class, event.source, event.symbol, event.message)
            case events.OrderRejected():
                self._error(recorded, "OrderRejected", "venue", "", event.reason)
                self.orders.rejected += 1
                if "nonce" in event.reason.lower():
                    self.orders.nonce_in_use += 1
            case events.StalePriceUsed(symbol=symbol):
                self.stale_marks += 1
                self.stale_by_symbol[symbol] += 1
            case events.SnapshotSealed():
                self.snapshots.append((event.stale, event.fresh + event.stale + event.failed))
                if recorded.run_id is not None:
                    self.last_cycle[recorded.run_id] = (event.cycle, at)
            case events.OrderSubmitted():
                self.orders.submitted += 1
            case events.OrderOutcomeUnknown():
                self.orders.unknown += 1
            case events.TradeExecuted():
                self.orders.filled += 1
            case events.CycleDiscarded():
                self.discarded_times.append(at)
            case events.RunStarted(run_id=run_id, mode=mode):
                self.runs_started[run_id] = mode
                self.runs_ended.discard(run_id)
            case events.RunFinished() | events.RunStopped():
                if recorded.run_id is not None:
                    self.runs_ended.add(recorded.run_id)
            case events.AlertRaised():
                self.alerts_firing[f"{event.rule}/{event.key}"] = {
                    "rule": event.rule,
                    "key": event.key,
                    "severity": event.severity,
                    "message": event.message,
                    "since": at.isoformat().replace("+00:00", "Z"),
                    "position": recorded.position,
                }
            case events.AlertResolved():
                self.alerts_firing.pop(f"{event.rule}/{event.key}", None)

    def _error(
        self, recorded: RecordedEvent, error_class: str, source: str, symbol: str, message: str
    ) -> None:
        at = recorded.recorded_at
        self.errors_by_class[error_class] += 1
        self.errors_by_source[source] += 1
        self.errors_by_class_source[(error_class, source)] += 1
        if symbol:
            self.errors_by_symbol[symbol] += 1
        self.recent_errors.append(
            ErrorSeen(recorded.position, at, source, "", symbol, error_class, message)
        )
        times = self.error_times
        times.append((at, error_class, source, symbol))
        horizon = at - RATE_WINDOWS["1h"]
        while times and times[0][0] <= horizon:
            times.popleft()

    # --- views -----------------------------------------------------------------------------

    def error_rates(self, now: datetime) -> dict[str, float]:
        """Errors per minute over each window ending at ``now``."""
        out = {}
        for name, width in RATE_WINDOWS.items():
            since = now - width
            count = sum(1 for t in self.error_times if since < t[0] <= now)
            out[name] = round(count / (width.total_seconds() / 60), 3)
        return out

    def error_rates_by(self, now: datetime, index: int) -> dict[str, dict[str, float]]:
        """Per class (index 1), source (2) or symbol (3): errors per minute per window."""
        out: dict[str, dict[str, float]] = {}
        for name, width in RATE_WINDOWS.items():
            since = now - width
            per: Counter[str] = Counter(
                str(t[index]) for t in self.error_times if since < t[0] <= now
            )
            for key, count in per.items():
                if key:
                    out.setdefault(key, {n: 0.0 for n in RATE_WINDOWS})[name] = round(
                        count / (width.total_seconds() / 60), 3
                    )
        return dict(sorted(out.items()))

    def stale_share(self) -> float:
        """Share of priced symbols that were stale, over the recent snapshots."""
        priced = sum(total for _, total in self.snapshots)
        return round(sum(stale for stale, _ in self.snapshots) / priced, 4) if priced else 0.0

    def discarded_since(self, since: datetime) -> int:
        return sum(1 for t in self.discarded_times if t > since)

    def running_runs(self) -> list[str]:
        return [r for r in self.runs_started if r not in self.runs_ended]

    def cycle_ages(self, now: datetime) -> dict[str, float | None]:
        """Seconds since each unfinished run's last cycle (None: no cycle yet)."""
        out: dict[str, float | None] = {}
        for run_id in self.running_runs():
            last = self.last_cycle.get(run_id)
            out[run_id] = None if last is None else round((now - last[1]).total_seconds(), 3)
        return out

    def breakers_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "state": b.state,
                "calls": b.calls,
                "successes": b.successes,
                "success_pct": round(100 * b.successes / b.calls, 2) if b.calls else None,
                "failures": b.failures,
                "rejected": b.rejected,
                "open_until": b.open_until.isoformat().replace("+00:00", "Z")
                if b.open_until
                else None,
            }
            for name, b in sorted(self.breakers.breakers.items())
        }

    def errors_dict(self, now: datetime, last: int = 20) -> dict[str, Any]:
        return {
            "as_of": now.isoformat().replace("+00:00", "Z"),
            "position": self.position,
            "total": sum(self.errors_by_class.values()),
            "by_class": dict(sorted(self.errors_by_class.items())),
            "by_source": dict(sorted(self.errors_by_source.items())),
            "by_symbol": dict(sorted(self.errors_by_symbol.items())),
            "rate_per_minute": self.error_rates(now),
            "rate_per_minute_by_class": self.error_rates_by(now, 1),
            "rate_per_minute_by_source": self.error_rates_by(now, 2),
            "rate_per_minute_by_symbol": self.error_rates_by(now, 3),
            "last": [
                {
                    "position": e.position,
                    "at": e.at.isoformat().replace("+00:00", "Z"),
                    "class": e.error_class,
                    "source": e.source,
                    "symbol": e.symbol,
                    "message": e.message,
                }
                for e in list(self.recent_errors)[-last:]
            ],
        }
