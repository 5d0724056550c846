"""Settings of the service and of its health checks (the `service:` and `health:` keys)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ledger.config import StrictModel


class ServiceSettings(StrictModel):
    """How `tally serve` listens and what one request may ask for."""

    host: str = "127.0.0.1"  # anything but loopback needs TLS or --insecure-bind
    port: int = Field(8800, ge=0, le=65_535)
    body_bytes_max: int = Field(4 * 1024 * 1024, ge=1024, le=2**30)  # larger: 413
    append_events_max: int = Field(10_000, ge=1, le=1_000_000)  # events in one append
    read_limit_max: int = Field(1_000, ge=1, le=100_000)  # events in one GET /v1/events
    # A subscription looks for events appended by other processes this often; those
    # appended through this service arrive at once.
    subscribe_poll_ms: int = Field(20, ge=1, le=10_000)
    subscribe_heartbeat_s: float = Field(15.0, gt=0, le=3_600)  # a comment line when idle
    metrics_token_required: bool = False  # true: /metrics needs a read token
    graceful_shutdown_s: float = Field(3.0, ge=0, le=600)  # open subscriptions then close
    # How often the wall-clock alert rules (no_cycle, spool_not_empty) are checked.
    alert_check_s: float = Field(5.0, gt=0, le=3_600)


class Threshold(StrictModel):
    """A check's WARNING and CRITICAL levels: the value is bad at or above them."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.critical < self.warning:
            raise ValueError("critical must be >= warning")
        return self


class FloorThreshold(StrictModel):
    """A check's WARNING and CRITICAL levels: the value is bad at or below them."""

    warning: float
    critical: float

    @model_validator(mode="after")
    def _ordered(self) -> FloorThreshold:
        if self.critical > self.warning:
            raise ValueError("critical must be <= warning")
        return self


class HealthSettings(StrictModel):
    """The thresholds of `tally health`, `/health/ready` and the dashboard's health line."""

    # Events appended after the last verified position (`tally verify`, POST /v1/verify).
    verify_lag_events: Threshold = Threshold(warning=100_000, critical=10_000_000)
    cycle_age_s: Threshold = Threshold(warning=300, critical=900)  # per unfinished run
    breakers_open: Threshold = Threshold(warning=1, critical=3)
    error_rate_per_min: Threshold = Threshold(warning=10, critical=60)  # over 5 minutes
    stale_share: Threshold = Threshold(warning=0.2, critical=0.5)  # of recent snapshots
    discarded_cycles_1h: Threshold = Threshold(warning=1, critical=5)  # refused reconciliations
    spool_bytes: Threshold = Threshold(warning=1, critical=16 * 1024 * 1024)
    free_disk_mb: FloorThreshold = FloorThreshold(warning=1024, critical=100)
