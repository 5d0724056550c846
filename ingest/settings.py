"""Ingest limits, validated when the configuration loads. Every limit names its unit."""

from __future__ import annotations

from pydantic import Field, model_validator

from ledger.config import StrictModel


class RetrySettings(StrictModel):
    fetch_attempts_max: int = Field(3, ge=1, le=20)
    backoff_ms_base: int = Field(100, ge=0, le=60_000)
    backoff_ms_cap: int = Field(1_000, ge=0, le=600_000)
    # Each delay is multiplied by a factor drawn from [1 - ratio, 1 + ratio].
    backoff_jitter_ratio: float = Field(0.2, ge=0, le=1)
    # All attempts and sleeps of one fetch together; a retry that would overrun is not made.
    fetch_budget_ms_max: int = Field(3_000, ge=1, le=3_600_000)
    # A Retry-After above this is not waited for: the fetch fails over instead.
    retry_after_ms_max: int = Field(5_000, ge=0, le=3_600_000)

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> RetrySettings:
        if self.backoff_ms_cap < self.backoff_ms_base:
            raise ValueError("backoff_ms_cap must be >= backoff_ms_base")
        return self


class BreakerSettings(StrictModel):
    failures_consecutive_max: int = Field(5, ge=1, le=1_000)
    failure_rate_max: float = Field(0.5, gt=0, le=1)
    window_calls: int = Field(20, ge=1, le=10_000)
    # The failure rate only counts once the window holds at least this many calls.
    calls_min: int = Field(10, ge=1, le=10_000)
    open_s: float = Field(30.0, gt=0, le=86_400)
    half_open_calls_max: int = Field(1, ge=1, le=100)
    successes_to_close: int = Field(2, ge=1, le=100)

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> BreakerSettings:
        if self.calls_min > self.window_calls:
            raise ValueError("calls_min must be <= window_calls")
        return self


class FeedSettings(StrictModel):
    # How far behind the newest sequence a missing one may still arrive before it is a gap.
    reorder_window_max: int = Field(100, ge=0, le=1_000_000)


class IngestSettings(StrictModel):
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    feed: FeedSettings = FeedSettings()
    fetch_timeout_ms: int = Field(10_000, ge=1, le=600_000)
    # Symbols fetched at once in one cycle.
    fetch_concurrency_max: int = Field(32, ge=1, le=10_000)
    # A last good price older than this is not used: the symbol is skipped instead.
    stale_age_s_max: float = Field(300.0, ge=0, le=7 * 86_400)
    # true: a data-contract violation raises DataContractError instead of being recorded only.
    strict_contracts: bool = False
