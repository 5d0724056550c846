"""Circuit breakers, one per (source, endpoint), whose state is a fold over ledger events.

A breaker's state changes only by applying events: the outcomes of its calls
(``FetchSucceeded``, ``FetchFailed``, and a catalog-3 ``SnapshotSealed``'s ``fetched``
successes, counted at the seal) and its own transitions (``CircuitOpened``,
``CircuitHalfOpened``, ``CircuitClosed``). Live, it decides a transition and then applies the
event it emits; after a restart, replaying the same events from the ledger rebuilds exactly
the same state: an open breaker keeps refusing until its timeout, then half-opens.

Only retryable failures (the source is unavailable) count against a breaker; a bad symbol or
a rejected key says nothing about the endpoint's health.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from ingest.settings import BreakerSettings
from ledger import events
from ledger.clock import Clock
from ledger.errors import ProviderError
from ledger.market import MESSAGE_LENGTH_MAX

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
Emit = Callable[[str, events.Event], None]
P = ParamSpec("P")
R = TypeVar("R")


def breaker_name(source: str, endpoint: str) -> str:
    return f"{source}:{endpoint}"


def breaker_stream(name: str) -> str:
    return f"breaker/{name}"


@dataclass
class BreakerCounts:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0


@dataclass
class CircuitBreaker:
    name: str
    settings: BreakerSettings
    clock: Clock
    state: str = CLOSED
    open_until: datetime | None = None
    consecutive_failures: int = 0
    window: deque[bool] = field(default_factory=deque)  # True = failure
    trial_successes: int = 0
    counts: BreakerCounts = field(default_factory=BreakerCounts)
    _trials_in_flight: int = 0  # live only: calls let through while half-open

    # --- the fold -------------------------------------------------------------------------

    def apply(self, event: events.Event) -> None:
        """Apply one event that concerns this breaker (the only way its state changes)."""
        match event:
            case events.FetchSucceeded():
                self.counts.calls += 1
                self.counts.successes += 1
                self._outcome(failure=False)
            case events.FetchFailed(retryable=True):
                self.counts.calls += 1
                self.counts.failures += 1
                self._outcome(failure=True)
            case events.FetchFailed():
                self.counts.calls += 1
                self._trials_in_flight = max(0, self._trials_in_flight - 1)
            case events.CircuitOpened(open_until=until):
                self.state, self.open_until = OPEN, until
                self.trial_successes = self._trials_in_flight = 0
            case events.CircuitHalfOpened():
                self.state, self.trial_successes, self._trials_in_flight = HALF_OPEN, 0, 0
            case events.CircuitClosed():
                self.state, self.open_until = CLOSED, None
                self.consecutive_failures = self.trial_successes = 0
                self.window.clear()
            case events.CallRejected():
                self.counts.rejected += 1

    def apply_successes(self, count: int) -> None:
        """Apply ``count`` ``FetchSucceeded`` (a seal's folded first-attempt successes for this
        breaker), exactly as applying them one by one: at once, unless half-open, where each
        is a trial of its own."""
        self.counts.calls += count
        self.counts.successes += count
        if self.state == HALF_OPEN or not count:
            for _ in range(count):
                self._outcome(failure=False)
            return
        self.window.extend([False] * min(count, self.settings.window_calls))
        while len(self.window) > self.settings.window_calls:
            self.window.popleft()
        self.consecutive_failures = 0

    def record_successes(self, symbols: list[str], emit: Emit) -> None:
        """``record`` a first-attempt success for each of ``symbols`` (in that order). While
        closed or open a success decides nothing, so they count at once."""
        if self.state != HALF_OPEN:
            self.apply_successes(len(symbols))
            return
        source, _, endpoint = self.name.partition(":")
        for symbol in symbols:
            success = events.FetchSucceeded(
                source=source, endpoint=endpoint, symbol=symbol, attempt=1, latency_ms=0
            )
            self.record(success, symbol, emit)

    def _outcome(self, *, failure: bool) -> None:
        self.window.append(failure)
        while len(self.window) > self.settings.window_calls:
            self.window.popleft()
        self.consecutive_failures = self.consecutive_failures + 1 if failure else 0
        if self.state == HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            if not failure:
                self.trial_successes += 1

    def snapshot(self) -> tuple[Any, ...]:
        """Everything the fold determines (for comparing a live breaker with a replay)."""
        return (
            self.state,
            self.open_until,
            self.consecutive_failures,
            tuple(self.window),
            self.trial_successes,
            self.counts,
        )

    # --- live decisions ------------------------------------------------------------------

    def allow(self, symbol: str, emit: Emit) -> bool:
        """May a call go through now? Records the half-open transition or the refusal."""
        if self.state == OPEN and self.open_until is not None:
            if self.clock.now() < self.open_until:
                return self._reject(symbol, emit)
            self._emit(
                emit,
                events.CircuitHalfOpened(
                    breaker=self.name, open_s=Decimal(str(self.settings.open_s))
                ),
            )
        if self.state == HALF_OPEN:
            if self._trials_in_flight >= self.settings.half_open_calls_max:
                return self._reject(symbol, emit)
            self._trials_in_flight += 1
        return True

    def record(self, outcome: events.Event, symbol: str, emit: Emit) -> None:
        """Apply a call's outcome, then open or close the breaker if the counts say so."""
        self.apply(outcome)
        failed = isinstance(outcome, events.FetchFailed) and outcome.retryable
        if self.state == HALF_OPEN:
            if failed:
                self._open(emit, "a trial call failed while half-open")
            elif self.trial_successes >= self.settings.successes_to_close:
                self._emit(
                    emit,
                    events.CircuitClosed(breaker=self.name, trial_successes=self.trial_successes),
                )
        elif self.state == CLOSED and failed:
            failures = sum(self.window)
            if self.consecutive_failures >= self.settings.failures_consecutive_max:
                self._open(emit, f"{self.consecutive_failures} consecutive failures")
            elif (
                len(self.window) >= self.settings.calls_min
                and failures / len(self.window) >= self.settings.failure_rate_max
            ):
                self._open(emit, f"{failures} of the last {len(self.window)} calls failed")

    def _open(self, emit: Emit, reason: str) -> None:
        self._emit(
            emit,
            events.CircuitOpened(
                breaker=self.name,
                reason=reason,
                consecutive_failures=self.consecutive_failures,
                window_calls=len(self.window),
                window_failures=sum(self.window),
                open_until=self.clock.now() + timedelta(seconds=self.settings.open_s),
            ),
        )

    def _reject(self, symbol: str, emit: Emit) -> bool:
        until = self.open_until or self.clock.now()
        self._emit(emit, events.CallRejected(breaker=self.name, symbol=symbol, open_until=until))
        return False

    def _emit(self, emit: Emit, event: events.Event) -> None:
        emit(breaker_stream(self.name), event)
        self.apply(event)

    # --- conveniences for code that is not a fetch pipeline --------------------------------

    @asynccontextmanager
    async def guard(
        self, emit: Emit, *, source: str, endpoint: str, symbol: str = ""
    ) -> AsyncIterator[None]:
        """``async with breaker.guard(...)``: refuse while open, record the outcome."""
        if not self.allow(symbol, emit):
            raise ProviderError(
                f"circuit breaker {self.name} is open", error_class="CircuitOpen", retryable=False
            )
        try:
            yield
        except ProviderError as e:
            self.record(
                events.FetchFailed(
                    source=source,
                    endpoint=endpoint,
                    symbol=symbol,
                    attempt=1,
                    error_class=e.error_class,
                    retryable=e.retryable,
                    message=e.message[:MESSAGE_LENGTH_MAX],
                ),
                symbol,
                emit,
            )
            raise
        self.record(
            events.FetchSucceeded(
                source=source,
                endpoint=endpoint,
                symbol=symbol,
                attempt=1,
                latency_ms=0,
            ),
            symbol,
            emit,
        )

    def protect(
        self, emit: Emit, *, source: str, endpoint: str
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorator form of ``guard`` for an async function."""

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @wraps(function)
            async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
                async with self.guard(emit, source=source, endpoint=endpoint):
                    return await function(*args, **kwargs)

            return wrapped

        return decorate


class BreakerRegistry:
    """Breakers by name, created on first use; rebuilt from the ledger after a restart."""

    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, source: str, endpoint: str) -> CircuitBreaker:
        name = breaker_name(source, endpoint)
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(name, self.settings, self.clock)
        return breaker

    def __iter__(self) -> Any:
        return iter(sorted(self._breakers.items()))

    def apply(self, event: events.Event) -> None:
        """Route one ledger event to the breaker it concerns (others are ignored)."""
        match event:
            case events.FetchSucceeded() | events.FetchFailed():
                self.get(event.source, event.endpoint).apply(event)
            case events.SnapshotSealed(fetched=fetched) if fetched:
                for source, symbols in events.fetched_by_source(event).items():
                    self.get(source, "ticker").apply_successes(len(symbols))
            case (
                events.CircuitOpened()
                | events.CircuitHalfOpened()
                | events.CircuitClosed()
                | events.CallRejected()
            ):
                source, _, endpoint = event.breaker.partition(":")
                self.get(source, endpoint).apply(event)

    def rebuild(self, history: Iterable[events.Event]) -> BreakerRegistry:
        for event in history:
            self.apply(event)
        return self
