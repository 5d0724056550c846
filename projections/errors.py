"""Error and breaker views, folded from the same events as everything else."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger import events
from ledger.recorded import RecordedEvent

RECENT_ERRORS_MAX = 1_000


@dataclass(frozen=True)
class ErrorSeen:
    position: int
    at: datetime
    source: str
    endpoint: str
    symbol: str
    error_class: str
    message: str


@dataclass
class ErrorTracker:
    """Errors by class, the rate per minute over a window, and the last 1,000 with context."""

    window: timedelta = timedelta(minutes=5)
    by_class: Counter[str] = field(default_factory=Counter)
    recent: deque[ErrorSeen] = field(default_factory=lambda: deque(maxlen=RECENT_ERRORS_MAX))

    def apply(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, events.FetchFailed):
            self.by_class[event.error_class] += 1
            self.recent.append(
                ErrorSeen(
                    recorded.position,
                    recorded.recorded_at,
                    event.source,
                    event.endpoint,
                    event.symbol,
                    event.error_class,
                    event.message,
                )
            )
        elif isinstance(event, events.OrderRejected):
            self.by_class["OrderRejected"] += 1
            self.recent.append(
                ErrorSeen(
                    recorded.position,
                    recorded.recorded_at,
                    "venue",
                    "order",
                    "",
                    "OrderRejected",
                    event.reason,
                )
            )

    def rate_per_minute(self, now: datetime) -> float:
        since = now - self.window
        count = sum(1 for e in self.recent if since < e.at <= now)
        return count / (self.window.total_seconds() / 60)


@dataclass
class BreakerView:
    state: str = "closed"
    calls: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    open_until: datetime | None = None


@dataclass
class BreakerBoard:
    """Each breaker's state and its call, success, failure and rejected counts."""

    breakers: dict[str, BreakerView] = field(default_factory=dict)

    def _view(self, name: str) -> BreakerView:
        return self.breakers.setdefault(name, BreakerView())

    def apply(self, recorded: RecordedEvent) -> None:
        match recorded.event:
            case events.FetchSucceeded(source=source, endpoint=endpoint):
                view = self._view(f"{source}:{endpoint}")
                view.calls += 1
                view.successes += 1
            case events.SnapshotSealed(fetched=fetched) if fetched:
                for success in events.sealed_fetches(recorded.event):
                    view = self._view(f"{success.source}:{success.endpoint}")
                    view.calls += 1
                    view.successes += 1
            case events.FetchFailed(source=source, endpoint=endpoint):
                view = self._view(f"{source}:{endpoint}")
                view.calls += 1
                view.failures += 1
            case events.CallRejected(breaker=name):
                self._view(name).rejected += 1
            case events.CircuitOpened(breaker=name, open_until=until):
                view = self._view(name)
                view.state, view.open_until = "open", until
            case events.CircuitHalfOpened(breaker=name):
                self._view(name).state = "half_open"
            case events.CircuitClosed(breaker=name):
                view = self._view(name)
                view.state, view.open_until = "closed", None
