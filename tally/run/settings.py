"""The run's configuration (the ``run:`` section of the YAML file), checked by pydantic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ingest.provider_errors import CCXT_RETRYABLE
from ledger.config import Amount, Folder, Moment, StrictModel
from ledger.errors import InputError
from ledger.market import TIME_MAX, TIME_MIN, amount_problem, split_symbol
from projections.alerting import AlertSettings
from projections.validator import ValidatorSettings
from tally.run.notify import NotifySettings


class MarketSteps(StrictModel):
    """A market's steps and fees; keyed by symbol or by quote asset in ``run.markets``."""

    price_step: Amount = Field(gt=0)
    qty_step: Amount = Field(gt=0)
    fee_step: Amount = Field(gt=0)  # precision of the fee asset (the quote asset)
    maker_bps: Amount = Field(Decimal(10), ge=0, le=1000)
    taker_bps: Amount = Field(Decimal(10), ge=0, le=1000)


DEFAULT_MARKETS = {
    "USDT": MarketSteps(
        price_step=Decimal("0.01"), qty_step=Decimal("0.0001"), fee_step=Decimal("0.01")
    ),
    "BTC": MarketSteps(
        price_step=Decimal("0.00000001"), qty_step=Decimal("0.01"), fee_step=Decimal("0.00000001")
    ),
}


def market_steps(markets: dict[str, MarketSteps], symbol: str) -> MarketSteps:
    """``symbol``'s steps: its own entry of ``run.markets``, else its quote asset's."""
    _, quote = split_symbol(symbol)
    steps = markets.get(symbol) or markets.get(quote)
    if steps is None:
        raise InputError(
            f"no market steps for {symbol}",
            hint=f"add run.markets.{quote} (or run.markets.{symbol}) with price_step, "
            "qty_step and fee_step to the configuration",
            symbol=symbol,
        )
    return steps


class OutageSettings(StrictModel):
    """A simulated outage: from ``start_cycle``, for ``cycles`` cycles."""

    start_cycle: int = Field(ge=0)
    cycles: int = Field(ge=1)
    symbols: list[str] = []  # empty: the whole source is down
    error_class: str = "ExchangeNotAvailable"  # a ccxt error class name

    @field_validator("error_class")
    @classmethod
    def _a_known_ccxt_class(cls, value: str) -> str:
        if value not in CCXT_RETRYABLE:
            raise ValueError(f"must be one of {', '.join(sorted(CCXT_RETRYABLE))}")
        return value


class FaultSettings(StrictModel):
    failure_rate: float = Field(0.02, ge=0, le=1)  # share of fetches that fail at random
    malformed_rate: float = Field(0.005, ge=0, le=1)  # share that return garbage
    latency_ms: int = Field(0, ge=0, le=60_000)
    outages: list[OutageSettings] = [
        OutageSettings(start_cycle=300, cycles=3, symbols=["SOL/USDT"]),
        OutageSettings(start_cycle=500, cycles=2),
    ]


class SampleSettings(StrictModel):
    """The generated data of the embedded default run."""

    symbols: list[str] = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
    days: int = Field(3, ge=1, le=366)
    timeframe: Literal["1m", "5m", "15m", "1h"] = "5m"
    start: Moment = datetime(2026, 1, 5, tzinfo=UTC)
    missing_share: float = Field(0.003, ge=0, le=0.5)  # candles left out, as real feeds do

    @model_validator(mode="after")
    def _within_the_ledgers_times(self) -> SampleSettings:
        start = self.start
        if start.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-01-05T00:00:00Z")
        if not TIME_MIN <= start < TIME_MAX - timedelta(days=self.days + 1):
            raise ValueError(
                f"start {start.isoformat()} (+ {self.days} days) is outside "
                f"{TIME_MIN.date()} .. {TIME_MAX.date()}"
            )
        return self


class StrategySettings(StrictModel):
    path: str = "runs.strategy:Momentum"
    params: dict[str, Any] = {}


class LiveSettings(StrictModel):
    """Paper and live runs: the exchange (a ccxt id), the symbols and the cadence."""

    exchange: str = "binance"
    symbols: list[str] = ["BTC/USDT", "ETH/USDT"]
    interval_s: float = Field(60.0, gt=0, le=86_400)
    cycles: int = Field(10, ge=1, le=10_000_000)
    # Recent candles fetched (through the parquet cache) to warm the strategy up; 0: none.
    warmup_candles: int = Field(48, ge=0, le=1000)
    warmup_timeframe: str = "5m"
    cache_dir: Folder = Path(".tally-cache")


class RunSettings(StrictModel):
    mode: Literal["backtest", "paper", "live"] = "backtest"
    seed: int = 7
    account: str = Field("main", min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    # Starting funds by quote asset: the run deposits this much of its data's quote asset.
    starting_cash: dict[str, Amount] = {"USDT": Decimal(100_000), "BTC": Decimal(10)}
    markets: dict[str, MarketSteps] = DEFAULT_MARKETS
    # A backtest commits this many whole cycles per durable transaction.
    commit_cycles: int = Field(200, ge=1, le=100_000)
    faults: FaultSettings = FaultSettings()
    sample: SampleSettings = SampleSettings()
    strategy: StrategySettings = StrategySettings()
    live: LiveSettings = LiveSettings()
    validator: ValidatorSettings = ValidatorSettings()
    # Alert rules (none by default). A run without rules records its configuration without
    # this key, exactly as before alerts existed, so its id and fingerprint are unchanged.
    alerts: AlertSettings = AlertSettings()

    @field_validator("starting_cash")
    @classmethod
    def _cash_is_a_positive_amount(cls, cash: dict[str, Decimal]) -> dict[str, Decimal]:
        for asset, amount in cash.items():
            problem = amount_problem(amount)
            if problem is None and amount <= 0:
                problem = "it must be positive"
            if problem is not None:
                raise ValueError(f"starting_cash.{asset} = {amount} is refused: {problem}")
        return cash


class RunnerSettings(StrictModel):
    """How the runner operates, not what it records: never part of a run's configuration
    (changing a heartbeat does not make a different run)."""

    # A running run renews its lease this often (a row update, not an event)...
    heartbeat_s: float = Field(2.0, gt=0, le=3600)
    # ...and is shown as interrupted (its process gone) after this long without one; a
    # second process may then take the run over.
    heartbeat_expiry_s: float = Field(30.0, gt=0, le=86_400)
    # Paper/live: while the ledger is out, cycles wait in a durable spool file here (one per
    # run), up to this many bytes; past it the run stops (exit 75) and the same command,
    # run again once the ledger is back, drains the spool and carries on.
    spool_dir: Folder = Path("tally-spool")
    spool_limit_bytes: int = Field(64 * 1024 * 1024, ge=4096, le=2**40)
    # A transient store error (lost connection, lock or statement timeout, full disk) is
    # retried this many times, the waits doubling from store_retry_backoff_s, before the
    # ledger counts as out.
    store_retries: int = Field(2, ge=0, le=10)
    store_retry_backoff_s: float = Field(0.2, ge=0, le=60)
    # Where a run's alerts go besides the ledger and the log (a webhook, a command).
    notify: NotifySettings = NotifySettings()

    @model_validator(mode="after")
    def _expiry_outlasts_heartbeat(self) -> RunnerSettings:
        if self.heartbeat_expiry_s <= self.heartbeat_s:
            raise ValueError("heartbeat_expiry_s must be > heartbeat_s")
        return self
