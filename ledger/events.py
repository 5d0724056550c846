"""The event catalog: every fact Tally records, as frozen, keyword-only, tagged msgspec Structs.

Rules that keep old ledgers readable and hashes stable:
- names are past tense; a field is never renamed or retyped;
- a new field is added at the end of its class, with a default;
- money and quantities are ``Decimal``: ``check_money`` refuses anything else before an
  event is encoded, so a float never reaches the ledger (the decoder needs no such check:
  it only ever produces ``Decimal`` for those fields);
- times are timezone-aware ``datetime`` taken from the injected clock.
"""

from __future__ import annotations

import typing
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

import msgspec

from ledger.errors import ValueOutOfBounds
from ledger.market import (
    TIME_MAX,
    TIME_MIN,
    check_amount,
    check_name,
    check_time,
    plain_amount,
)

Side = Literal["buy", "sell"]

# What new runs record, by catalog version (each run keeps the version it started with,
# in ``RunStarted.catalog``, so a run recorded before a change re-executes and resumes in
# its own shape):
# 1: a ``FetchAttempted`` before every attempt's ``FetchSucceeded`` or ``FetchFailed``;
# 2: the outcome alone. It carries the attempt number and the latency, and a cycle's
#    events commit together, so an attempt without an outcome was never stored anyway.
# 3: as 2, and where the sources are local (a backtest's files without injected faults:
#    they cannot time out, never wait and never fail in a way a breaker counts), a fetch
#    that succeeds at its first attempt is recorded in the cycle's ``SnapshotSealed``
#    (``fetched``: the symbol and its source; attempt 1 and no latency are implied) instead
#    of a ``FetchSucceeded`` each. Breakers count those successes at the seal, live and
#    rebuilt alike. Failures, retries and every other source's successes are as in 2.
CATALOG = 3


class Event(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True, omit_defaults=True
):
    """Base of every event; the class name is the stored ``type``.

    Fields left at their default are not encoded: adding a defaulted field to an event
    never changes the canonical bytes (nor the hashes) of events that do not use it.
    """

    # Filled in for every class of the catalog at import (see the end of this module).
    _decimal_fields: ClassVar[tuple[str, ...]] = ()
    _money_checks: ClassVar[tuple[tuple[str, bool], ...]] = ()  # (field, must be positive)
    _time_fields: ClassVar[tuple[str, ...]] = ()
    _account_checked: ClassVar[bool] = False
    # Declared by the classes that need them.
    _positive_fields: ClassVar[frozenset[str]] = frozenset()
    _account_required: ClassVar[bool] = True


def check_money(event: Event) -> None:
    """Refuse an event the ledger must never hold, before it is encoded.

    ``TypeError`` if a money or quantity field is not a ``Decimal`` (a programming error);
    ``ValueOutOfBounds`` (a user-facing error, exit 2) if an amount, a time or an account
    name is outside ``ledger.market``'s named limits, or an amount that must be positive is
    not. Every append encodes through here, so no path into the ledger skips it.
    """
    cls = type(event)
    for name, positive in cls._money_checks:
        value = getattr(event, name)
        if value.__class__ is Decimal and plain_amount(str(value)) is not None:
            if positive and value <= 0:
                check_amount(value, f"{cls.__name__}.{name}", positive=True, field=name)
            continue  # the common case
        if value is not None:
            _check_money(cls.__name__, name, value, positive)
    for name in cls._time_fields:
        moment = getattr(event, name)
        if moment is not None and not TIME_MIN <= moment < TIME_MAX:
            check_time(moment, f"{cls.__name__}.{name}", field=name)
    if cls is TradeExecuted and (event.fee is None) != (not event.fee_asset):  # type: ignore[attr-defined]
        raise ValueOutOfBounds(
            "TradeExecuted.fee and fee_asset go together: set both or neither",
            field="fee_asset",
        )
    if cls._account_checked:
        account = event.account  # type: ignore[attr-defined]
        if account not in _GOOD_NAMES and (account or cls._account_required):
            check_name(account, f"{cls.__name__}.account", field="account")
            if len(_GOOD_NAMES) < 10_000:
                _GOOD_NAMES.add(account)


_GOOD_NAMES: set[str] = set()  # names already checked: an account recurs in every cycle


def _holds_decimal(hint: Any) -> bool:
    if hint is Decimal:
        return True
    return any(_holds_decimal(arg) for arg in typing.get_args(hint))


def _holds_datetime(hint: Any) -> bool:
    if hint is datetime:
        return True
    return any(_holds_datetime(arg) for arg in typing.get_args(hint))


def _check_money(event: str, field: str, value: Any, positive: bool) -> None:
    values = value.values() if isinstance(value, dict) else (value,)
    for item in values:
        if (
            item.__class__ is Decimal
            and plain_amount(str(item)) is not None
            and (not positive or item > 0)
        ):
            continue  # the common case, as in check_money (a seal's marks: 7 a cycle)
        if item is None:
            continue
        if not isinstance(item, Decimal):
            raise TypeError(
                f"{event}.{field} must be a Decimal, got {type(item).__name__} {item!r}: "
                "money and quantities are exact in Tally (use Decimal('...'))"
            )
        check_amount(item, f"{event}.{field}", positive=positive, field=field)


# --- runs -------------------------------------------------------------------------------


class RunStarted(Event, frozen=True, kw_only=True):
    """A run began, with everything needed to run it again."""

    _account_required: ClassVar[bool] = False  # "" for a run with no account

    run_id: str
    mode: str
    seed: int
    config: dict[str, Any] = {}
    config_hash: str = ""
    code_version: str = ""
    account: str = ""
    # Where the run ran (python, platform, package versions): not part of its fingerprint.
    environment: dict[str, str] = {}
    # Per input file: name, symbol, rows, sha256; or the generator's parameters.
    data: dict[str, Any] = {}
    # The catalog version the run records (see CATALOG); 1 for runs recorded before it.
    catalog: int = 1


class RunFinished(Event, frozen=True, kw_only=True):
    """A run ended: its status, its summary and its fingerprint."""

    run_id: str
    cycles: int = 0
    status: str = "completed"
    summary: dict[str, Any] = {}
    # sha256 over the run's events (see tally.run.context.fingerprint).
    fingerprint: str = ""


class SweepStarted(Event, frozen=True, kw_only=True):
    """A parameter sweep: every point is a normal run of the same data and base config."""

    sweep_id: str
    base_config_hash: str
    grid: dict[str, list[Any]] = {}  # name -> values, when given as a grid
    points: list[dict[str, Any]] = []  # the strategy params of each point, in order


class SweepFinished(Event, frozen=True, kw_only=True):
    """Every point of a sweep has a finished run: their ids, in the points' order."""

    sweep_id: str
    run_ids: list[str]


class RunResumed(Event, frozen=True, kw_only=True):
    """An unfinished run was started again: what was found of it in the ledger.

    Bookkeeping of an interruption, like ``RunStopped``: not part of the run's fingerprint,
    so a run resumed any number of times fingerprints like the same run done in one go.
    """

    run_id: str
    cycles_done: int  # whole cycles committed before this start
    last_position: int  # the ledger's head when it resumed
    previously: str = ""  # stopped (by a signal or an error) or interrupted (a crash)


class RunStopped(Event, frozen=True, kw_only=True):
    """A run stopped before its last cycle, whole: it can be resumed with the same command.

    ``reason`` is ``SIGINT``/``SIGTERM`` for a graceful stop, ``error`` for a failure
    (``detail`` says which), ``spool_full`` for a ledger outage longer than the spool holds.
    """

    run_id: str
    cycles_done: int
    cycles_planned: int
    reason: str
    detail: str = ""


class LedgerUnavailable(Event, frozen=True, kw_only=True):
    """The ledger could not be written during a paper or live run: from ``cycle`` on, the
    run kept its cycles in a local durable spool (and placed no orders) until it was back.

    Written when the ledger is back, as the spool's first entry: nothing can be recorded
    in a ledger that cannot be reached, and the spool keeps the order.
    """

    run_id: str
    cycle: int  # the first cycle that went to the spool
    since: datetime  # when the write failed
    error_class: str  # the Tally error (StoreConnectionLost, StoreBusy, StoreFull)
    message: str
    spool: str  # the spool file


class LedgerRecovered(Event, frozen=True, kw_only=True):
    """The ledger answered again: the spool was drained into it, in order, after this."""

    run_id: str
    since: datetime  # when it became unavailable
    at: datetime  # when a write succeeded again
    outage_ms: int
    cycles: int  # cycles drained from the spool
    events: int  # events drained (this one and LedgerUnavailable included)


# --- market data --------------------------------------------------------------------------


class FetchAttempted(Event, frozen=True, kw_only=True):
    """A source was asked for data (one attempt)."""

    source: str
    endpoint: str
    symbol: str
    attempt: int


class FetchSucceeded(Event, frozen=True, kw_only=True):
    """A fetch answered, with its latency."""

    source: str
    endpoint: str
    symbol: str
    attempt: int
    latency_ms: int


class FetchFailed(Event, frozen=True, kw_only=True):
    """A fetch failed: the error's class, whether it is retryable, its message."""

    source: str
    endpoint: str
    symbol: str
    attempt: int
    error_class: str
    retryable: bool
    message: str
    latency_ms: int = 0


class RetryScheduled(Event, frozen=True, kw_only=True):
    """A failed fetch will be tried again after a jittered delay."""

    source: str
    endpoint: str
    symbol: str
    attempt: int
    delay_ms: int
    retry_after_ms: int | None = None


class SourceFailedOver(Event, frozen=True, kw_only=True):
    """A symbol's price is asked of the next source in its chain."""

    symbol: str
    from_source: str
    to_source: str
    reason: str


class StalePriceUsed(Event, frozen=True, kw_only=True):
    """A last good price stands in for a symbol no source priced, with its age."""

    symbol: str
    price: Decimal
    as_of: datetime
    age_s: Decimal
    reason: str


class SymbolSkipped(Event, frozen=True, kw_only=True):
    """A symbol could not be priced this cycle; the others carry on."""

    symbol: str
    reason: str


class DataRecovered(Event, frozen=True, kw_only=True):
    """Fresh data returned for a symbol after a stale spell."""

    symbol: str
    source: str
    stale_since: datetime
    stale_s: Decimal


class DataContractViolated(Event, frozen=True, kw_only=True):
    """A frame of market data broke a rule of the OHLCV contract."""

    symbol: str
    source: str
    rule: str
    rows: list[int]
    values: list[str]
    strict: bool = False


class FeedGapDetected(Event, frozen=True, kw_only=True):
    """A sequenced feed is missing a run of messages."""

    feed: str
    expected: int
    received: int
    missing: int


class FeedDuplicateDropped(Event, frozen=True, kw_only=True):
    """A sequenced feed's message was seen before and dropped."""

    feed: str
    sequence: int
    reason: str = "duplicate"


class FeedOutOfOrderReceived(Event, frozen=True, kw_only=True):
    """A missing message of a sequenced feed arrived late."""

    feed: str
    sequence: int
    after: int


# --- circuit breakers -----------------------------------------------------------------


class CircuitOpened(Event, frozen=True, kw_only=True):
    """A breaker opened: calls are refused until ``open_until``."""

    breaker: str
    reason: str
    consecutive_failures: int
    window_calls: int
    window_failures: int
    open_until: datetime


class CircuitHalfOpened(Event, frozen=True, kw_only=True):
    """A breaker lets trial calls through after its open time."""

    breaker: str
    open_s: Decimal


class CircuitClosed(Event, frozen=True, kw_only=True):
    """A breaker closed again after enough trial successes."""

    breaker: str
    trial_successes: int


class CallRejected(Event, frozen=True, kw_only=True):
    """An open breaker refused a call; the source was not asked."""

    breaker: str
    symbol: str
    open_until: datetime


class SnapshotSealed(Event, frozen=True, kw_only=True):
    """A cycle's pricing snapshot: the marks every later step uses, and counts."""

    snapshot_id: str
    fresh: int
    stale: int
    failed: int
    marks: dict[str, Decimal] = {}
    cycle: int = 0
    stale_symbols: list[str] = []
    failed_symbols: list[str] = []
    # Catalog 3, local sources: symbol -> its first source, when that source answered at
    # the first attempt, in place of the FetchSucceeded (attempt 1, latency 0, "ticker").
    fetched: dict[str, str] = {}


def fetched_by_source(sealed: SnapshotSealed) -> dict[str, list[str]]:
    """A catalog-3 seal's folded successes as source -> symbols (each in symbol order): the
    ``sealed_fetches`` of one source's ticker breaker, counted together."""
    grouped: dict[str, list[str]] = {}
    for symbol, source in sealed.fetched.items():
        grouped.setdefault(source, []).append(symbol)
    return grouped


def sealed_fetches(sealed: SnapshotSealed) -> list[FetchSucceeded]:
    """The ``FetchSucceeded`` a catalog-3 seal records in ``fetched``, in symbol order: what
    a fold that counts fetches (breakers, the monitor) applies at the seal."""
    return [
        FetchSucceeded(source=source, endpoint="ticker", symbol=symbol, attempt=1, latency_ms=0)
        for symbol, source in sealed.fetched.items()
    ]


# --- money --------------------------------------------------------------------------------


class TradeExecuted(Event, frozen=True, kw_only=True):
    """A fill: quantity at a price, on an account."""

    _positive_fields: ClassVar[frozenset[str]] = frozenset({"qty", "price"})

    account: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    order_id: str
    trade_id: str
    client_order_id: str = ""
    executed_at: datetime | None = None  # when the venue filled it, if not when recorded
    # The fill's fee, when it comes with the fill (an imported fill, a venue's trade with its
    # fee): one event instead of a TradeExecuted and a FeeCharged. Left out when unset, so
    # trades recorded before these fields existed keep their bytes and hashes.
    fee: Decimal | None = None
    fee_asset: str = ""


class FeeCharged(Event, frozen=True, kw_only=True):
    """A fee charged for a trade, in its asset."""

    account: str
    trade_id: str
    asset: str
    amount: Decimal


class FundsDeposited(Event, frozen=True, kw_only=True):
    """Funds arrived in an account."""

    _positive_fields: ClassVar[frozenset[str]] = frozenset({"amount"})

    account: str
    asset: str
    amount: Decimal
    at: datetime | None = None  # when the funds arrived, if not when recorded


class FundsWithdrawn(Event, frozen=True, kw_only=True):
    """Funds left an account."""

    _positive_fields: ClassVar[frozenset[str]] = frozenset({"amount"})

    account: str
    asset: str
    amount: Decimal


class OrderSubmitted(Event, frozen=True, kw_only=True):
    """An order was sent to a venue, under its client order id and nonce."""

    _positive_fields: ClassVar[frozenset[str]] = frozenset({"qty"})

    account: str
    client_order_id: str
    symbol: str
    side: Side
    order_type: Literal["market", "limit"]
    qty: Decimal
    price: Decimal | None = None
    nonce: int = 0


class OrderOutcomeUnknown(Event, frozen=True, kw_only=True):
    """A submission's answer was lost: the venue is asked before any retry."""

    account: str
    client_order_id: str
    reason: str


class OrderRejected(Event, frozen=True, kw_only=True):
    """A venue refused an order."""

    account: str
    client_order_id: str
    reason: str
    retryable: bool


# --- validation and reconciliation ------------------------------------------------------


class ValidationPassed(Event, frozen=True, kw_only=True):
    """A cycle's books agreed with the reference within epsilon."""

    account: str
    cycle: int
    diff: dict[str, Any]


class PortfolioReconciled(Event, frozen=True, kw_only=True):
    """A small difference was booked away, with the diff and adjustments."""

    account: str
    cycle: int
    diff: dict[str, Any]
    # Per asset, the correction booked so that the ledger agrees with the reference.
    adjustments: dict[str, Decimal] = {}


class CycleDiscarded(Event, frozen=True, kw_only=True):
    """A cycle's money events were refused, with the reason and what was staged."""

    account: str
    cycle: int
    reason: str
    diff: dict[str, Any]


class CandleImported(Event, frozen=True, kw_only=True):
    """A candle brought in from another system's file (``tally import ohlcv``)."""

    _positive_fields: ClassVar[frozenset[str]] = frozenset({"open", "high", "low", "close"})

    symbol: str
    timeframe: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandlesImported(Event, frozen=True, kw_only=True):
    """One file's candles are in (after its ``CandleImported`` events): where they came from
    and the steps its prices and volumes were rounded to, half to even."""

    symbol: str
    timeframe: str
    file: str
    sha256: str
    rows: int
    price_step: Decimal
    volume_step: Decimal


class BalanceObserved(Event, frozen=True, kw_only=True):
    """A venue reported an account's balances."""

    account: str
    venue: str
    balances: dict[str, Decimal]


# --- the service ------------------------------------------------------------------------


class TokenIssued(Event, frozen=True, kw_only=True):
    """An API token was issued; only its sha256 is kept, never the token."""

    name: str
    scope: Literal["read", "append", "admin"]
    token_sha256: str


class TokenRevoked(Event, frozen=True, kw_only=True):
    """An API token was revoked: from now on it is refused."""

    name: str


class AlertRaised(Event, frozen=True, kw_only=True):
    """An alert rule fired for a key (a breaker, a symbol, a run); once until resolved."""

    rule: str
    key: str
    severity: Literal["warning", "critical"]
    message: str


class AlertResolved(Event, frozen=True, kw_only=True):
    """A firing alert's condition cleared."""

    rule: str
    key: str
    message: str = ""


class AlertDeliveryFailed(Event, frozen=True, kw_only=True):
    """An alert could not be delivered to a sink (a webhook, a command) after its retries."""

    rule: str
    key: str
    sink: str
    attempts: int
    error: str


class ConfigChanged(Event, frozen=True, kw_only=True):
    """A reloaded configuration was valid and applied at a cycle boundary."""

    old_sha256: str
    new_sha256: str
    changed: list[str]  # the key paths whose values changed


class ConfigRejected(Event, frozen=True, kw_only=True):
    """A reloaded configuration was refused whole: nothing changed."""

    sha256: str
    errors: list[str]  # every problem, with its key path


AnyEvent = (
    RunStarted
    | RunFinished
    | RunResumed
    | RunStopped
    | SweepStarted
    | SweepFinished
    | LedgerUnavailable
    | LedgerRecovered
    | CandleImported
    | CandlesImported
    | FetchAttempted
    | FetchSucceeded
    | FetchFailed
    | RetryScheduled
    | SourceFailedOver
    | StalePriceUsed
    | SymbolSkipped
    | DataRecovered
    | DataContractViolated
    | FeedGapDetected
    | FeedDuplicateDropped
    | FeedOutOfOrderReceived
    | CircuitOpened
    | CircuitHalfOpened
    | CircuitClosed
    | CallRejected
    | SnapshotSealed
    | TradeExecuted
    | FeeCharged
    | FundsDeposited
    | FundsWithdrawn
    | OrderSubmitted
    | OrderOutcomeUnknown
    | OrderRejected
    | ValidationPassed
    | PortfolioReconciled
    | CycleDiscarded
    | BalanceObserved
    | TokenIssued
    | TokenRevoked
    | AlertRaised
    | AlertResolved
    | AlertDeliveryFailed
    | ConfigChanged
    | ConfigRejected
)

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in typing.get_args(AnyEvent)}

for _cls in EVENT_TYPES.values():
    _hints = typing.get_type_hints(_cls)
    _cls._decimal_fields = tuple(
        name for name in _cls.__struct_fields__ if _holds_decimal(_hints[name])
    )
    _cls._money_checks = tuple(
        (name, name in _cls._positive_fields) for name in _cls._decimal_fields
    )
    _cls._time_fields = tuple(
        name for name in _cls.__struct_fields__ if _holds_datetime(_hints[name])
    )
    _cls._account_checked = "account" in _cls.__struct_fields__
