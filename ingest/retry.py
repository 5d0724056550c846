"""Retry with exponential backoff and jitter, bounded by attempts and by total time.

Only retryable errors are retried; a server's Retry-After is honoured (up to a limit). The
jitter comes from the seeded RNG the caller passes, and sleeps go through the injected clock,
so a simulated run records the same delays in zero wall time. Every step is an event:
``FetchFailed``, ``RetryScheduled``, ``FetchSucceeded``, and the breaker's ``CallRejected``
when it refuses the call; with ``announce`` (runs of catalog 1) also a ``FetchAttempted``
before each attempt. With ``fold`` (catalog 3, local sources), a success at the first
attempt with no latency is neither emitted nor given to the breaker: it is returned as
``Fetched.folded`` and the caller records it (in the sealed snapshot).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from ingest.breaker import CircuitBreaker
from ingest.provider_errors import provider_error
from ingest.settings import RetrySettings
from ledger import events
from ledger.clock import Clock
from ledger.errors import ProviderError
from ledger.market import MESSAGE_LENGTH_MAX

T = TypeVar("T")
Emit = Callable[[str, events.Event], None]


def symbol_stream(symbol: str) -> str:
    return f"symbol/{symbol}"


@dataclass(frozen=True)
class Fetched(Generic[T]):
    value: T
    source: str
    attempts: int
    folded: bool = False  # not recorded here: the caller records it (see ``fold``)


@dataclass(frozen=True)
class Failed:
    error: ProviderError
    source: str
    attempts: int
    rejected: bool = False  # refused by an open breaker, the source was not called


def backoff_ms(attempt: int, policy: RetrySettings, rng: random.Random) -> int:
    """Delay before retry number ``attempt`` (1 = the first retry), with jitter."""
    nominal: int = min(policy.backoff_ms_cap, policy.backoff_ms_base << (attempt - 1))
    factor = 1 + policy.backoff_jitter_ratio * (2 * rng.random() - 1)
    return max(0, round(nominal * factor))


def _ms_between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    *,
    source: str,
    endpoint: str,
    symbol: str,
    policy: RetrySettings,
    clock: Clock,
    rng: random.Random,
    emit: Emit,
    breaker: CircuitBreaker | None = None,
    announce: bool = True,
    fold: bool = False,
) -> Fetched[T] | Failed:
    """Call ``call`` until it succeeds, fails for good, or the budget is spent."""
    stream = symbol_stream(symbol)
    started = clock.now()
    attempt = 0
    while True:
        attempt += 1
        if breaker is not None and not breaker.allow(symbol, emit):
            error = ProviderError(
                f"{source} {endpoint}: circuit breaker {breaker.name} is open",
                error_class="CircuitOpen",
                retryable=False,
                source=source,
                endpoint=endpoint,
            )
            return Failed(error, source, attempt - 1, rejected=True)
        if announce:
            emit(
                stream,
                events.FetchAttempted(
                    source=source, endpoint=endpoint, symbol=symbol, attempt=attempt
                ),
            )
        called = clock.now()
        try:
            value = await call()
        except Exception as raw:  # every failure of a source is recorded, none escapes
            error = provider_error(raw, source=source, endpoint=endpoint, symbol=symbol)
            failed = events.FetchFailed(
                source=source,
                endpoint=endpoint,
                symbol=symbol,
                attempt=attempt,
                error_class=error.error_class,
                retryable=error.retryable,
                message=error.message[:MESSAGE_LENGTH_MAX],
                latency_ms=_ms_between(called, clock.now()),
            )
            emit(stream, failed)
            if breaker is not None:
                breaker.record(failed, symbol, emit)
            delay = _next_delay(error, attempt, policy, rng)
            spent = _ms_between(started, clock.now())
            if delay is None or spent + delay > policy.fetch_budget_ms_max:
                return Failed(error, source, attempt)
            emit(
                stream,
                events.RetryScheduled(
                    source=source,
                    endpoint=endpoint,
                    symbol=symbol,
                    attempt=attempt,
                    delay_ms=delay,
                    retry_after_ms=None
                    if error.retry_after_s is None
                    else round(error.retry_after_s * 1000),
                ),
            )
            await clock.sleep(delay / 1000)
            continue
        latency_ms = _ms_between(called, clock.now())
        if fold and attempt == 1 and latency_ms == 0:
            return Fetched(value, source, attempt, folded=True)
        succeeded = events.FetchSucceeded(
            source=source,
            endpoint=endpoint,
            symbol=symbol,
            attempt=attempt,
            latency_ms=latency_ms,
        )
        emit(stream, succeeded)
        if breaker is not None:
            breaker.record(succeeded, symbol, emit)
        return Fetched(value, source, attempt)


def _next_delay(
    error: ProviderError, attempt: int, policy: RetrySettings, rng: random.Random
) -> int | None:
    """The delay before the next attempt, or None when there is none to make."""
    if not error.retryable or attempt >= policy.fetch_attempts_max:
        return None
    delay = backoff_ms(attempt, policy, rng)
    if error.retry_after_s is not None:
        hinted = round(error.retry_after_s * 1000)
        if hinted > policy.retry_after_ms_max:
            return None  # the server asks for longer than we wait: fail over instead
        delay = max(delay, hinted)
    return delay
