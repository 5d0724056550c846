"""Faults served over real HTTP to a real ccxt exchange: what is retried, what is recorded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ingest.ccxt_source import CcxtSource
from ingest.retry import Failed, Fetched, call_with_retry
from ingest.settings import RetrySettings
from ledger import events
from ledger.clock import SystemClock
from tests.conftest import shared_data
from tests.support.recorded_exchange import Fault, RecordedExchangeServer, fixture_cases

POLICY = RetrySettings(
    fetch_attempts_max=3,
    backoff_ms_base=20,
    backoff_ms_cap=100,
    fetch_budget_ms_max=5_000,
    retry_after_ms_max=2_000,
)
Scenario = Callable[[RecordedExchangeServer, CcxtSource], Awaitable[Any]]


def with_server(scenario: Scenario) -> Any:
    async def go() -> Any:
        data = shared_data("ccxt")
        server = RecordedExchangeServer(data)
        for case in fixture_cases(data, "bitstamp", "fetchTicker"):
            await server.learn("bitstamp", "fetchTicker", case)
        await server.start()
        source = CcxtSource(server.exchange("bitstamp"), timeout_ms=300)
        try:
            return await scenario(server, source)
        finally:
            await source.close()
            await server.stop()

    return asyncio.run(go())


def fetch(*faults: Fault) -> tuple[Any, list[events.Event], int]:
    """Serve ``faults`` then the recording; return the outcome, the events, the requests."""

    async def scenario(server: RecordedExchangeServer, source: CcxtSource) -> Any:
        await source.load_markets()
        server.plan.then(*faults)
        log: list[events.Event] = []
        result = await call_with_retry(
            lambda: source.fetch_ticker("BTC/USDT"),
            source="bitstamp",
            endpoint="ticker",
            symbol="BTC/USDT",
            policy=POLICY,
            clock=SystemClock(),
            rng=random.Random(1),
            emit=lambda _stream, event: log.append(event),
        )
        return result, log, len(server.requests)

    return with_server(scenario)  # type: ignore[no-any-return]


def kinds(log: list[events.Event]) -> list[str]:
    return [type(e).__name__ for e in log]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, "RateLimitExceeded"),
        (503, "ExchangeNotAvailable"),
        (504, "RequestTimeout"),
        (418, "DDoSProtection"),
    ],
)
def test_transient_http_errors_are_retried_and_recorded(status: int, error_class: str) -> None:
    result, log, requests = fetch(Fault.http(status))
    assert isinstance(result, Fetched) and result.value.last is not None
    assert kinds(log) == [
        "FetchAttempted",
        "FetchFailed",
        "RetryScheduled",
        "FetchAttempted",
        "FetchSucceeded",
    ]
    failed = log[1]
    assert isinstance(failed, events.FetchFailed)
    assert (failed.error_class, failed.retryable, failed.attempt) == (error_class, True, 1)
    assert requests == 2


def test_retry_after_is_honoured() -> None:
    result, log, _ = fetch(Fault.http(429, retry_after_s=0.5))
    assert isinstance(result, Fetched)
    scheduled = log[2]
    assert isinstance(scheduled, events.RetryScheduled)
    assert scheduled.retry_after_ms == 500 and scheduled.delay_ms >= 500


def test_a_retry_after_beyond_the_limit_is_not_waited_for() -> None:
    result, log, requests = fetch(Fault.http(429, retry_after_s=60))
    assert isinstance(result, Failed) and result.error.error_class == "RateLimitExceeded"
    assert kinds(log) == ["FetchAttempted", "FetchFailed"] and requests == 1


def test_401_is_not_retried() -> None:
    result, log, requests = fetch(Fault.http(401))
    assert isinstance(result, Failed)
    assert result.error.error_class == "AuthenticationError" and not result.error.retryable
    assert kinds(log) == ["FetchAttempted", "FetchFailed"] and requests == 1


def test_dropped_connections_are_retried() -> None:
    # aiohttp itself retries an idempotent request once on a dropped keep-alive connection,
    # so two drops in a row are what reaches ccxt as one failed attempt.
    result, log, requests = fetch(Fault.drop(), Fault.drop())
    assert isinstance(result, Fetched)
    failed = log[1]
    assert isinstance(failed, events.FetchFailed)
    assert failed.error_class == "ExchangeNotAvailable" and failed.retryable
    assert requests == 3


def test_timeouts_are_retried() -> None:
    result, log, _ = fetch(Fault.delay(1.0))
    assert isinstance(result, Fetched)
    failed = log[1]
    assert isinstance(failed, events.FetchFailed)
    assert failed.error_class == "RequestTimeout" and failed.retryable
    assert failed.latency_ms >= 250


def test_a_malformed_body_is_a_recorded_failure_not_a_crash() -> None:
    result, log, _ = fetch(Fault.malformed())
    assert isinstance(result, Failed)
    failed = log[1]
    assert isinstance(failed, events.FetchFailed)
    assert failed.error_class == "BadResponse" and not failed.retryable


def test_persistent_failure_stops_after_the_attempts() -> None:
    result, log, requests = fetch(*[Fault.http(503)] * 5)
    assert isinstance(result, Failed) and result.attempts == 3
    assert kinds(log).count("FetchAttempted") == 3 and requests == 3
    delays = [e.delay_ms for e in log if isinstance(e, events.RetryScheduled)]
    assert len(delays) == 2 and 16 <= delays[0] <= 24 and 32 <= delays[1] <= 48
