"""External reconciliation: the ledger's books against what a venue says it holds.

Every asset on either side is listed with the ledger amount, the venue amount, the
difference and the decision; nothing is dropped, however small.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from ledger import events
from ledger.errors import InputError
from ledger.market import split_symbol
from ledger.recorded import RecordedEvent
from projections import portfolio
from projections.portfolio import ZERO, PortfolioState
from projections.runner import fold
from projections.validator import Decision, ValidatorSettings, validate

if TYPE_CHECKING:
    from ledger.store import EventStore


def state_from_balances(
    account: str, balances: dict[str, Decimal], *, quote: str | None, symbols: list[str]
) -> PortfolioState:
    """A venue's balances as a portfolio: base assets of known symbols become positions."""
    state = PortfolioState(account=account, quote=quote)
    state.cash = defaultdict(Decimal, {a: v for a, v in balances.items() if v != 0})
    for symbol in symbols:
        base, _ = split_symbol(symbol)
        if balances.get(base):
            state.positions[symbol] = balances[base]
    return state


@dataclass(frozen=True)
class Row:
    asset: str
    ledger: Decimal
    venue: Decimal

    @property
    def delta(self) -> Decimal:
        return self.ledger - self.venue


@dataclass(frozen=True)
class ReconciliationReport:
    account: str
    venue: str
    rows: list[Row]
    decision: Decision

    def row_decision(self, row: Row) -> str:
        if row.delta == 0:
            return "match"
        if self.decision.outcome == "passed":
            return "within epsilon"
        if self.decision.outcome == "reconciled":
            return "reconciled"
        return "refused"

    def table(self) -> str:
        lines = [
            f"reconciliation of {self.account} against {self.venue}: "
            f"{self.decision.outcome} ({self.decision.reason})",
            f"{'asset':<8} {'ledger':>22} {'venue':>22} {'delta':>16}  decision",
        ]
        for row in self.rows:
            lines.append(
                f"{row.asset:<8} {row.ledger:>22} {row.venue:>22} "
                f"{row.delta:>+16}  {self.row_decision(row)}"
            )
        lines.append(
            f"equity delta {self.decision.diff.equity:+} (epsilon {self.decision.diff.epsilon})"
        )
        return "\n".join(lines)


def reconcile(
    state: PortfolioState,
    venue: str,
    balances: dict[str, Decimal],
    marks: dict[str, Decimal],
    *,
    settings: ValidatorSettings,
    price_steps: dict[str, Decimal] | None = None,
) -> ReconciliationReport:
    """Compare the ledger's portfolio with a venue's balances, asset by asset."""
    reference = state_from_balances(
        state.account, balances, quote=state.quote, symbols=sorted(state.positions)
    )
    decision = validate(state, reference, marks, settings=settings, price_steps=price_steps)
    assets = sorted(set(state.cash) | set(balances))
    rows = [Row(a, state.cash.get(a, ZERO), balances.get(a, ZERO)) for a in assets]
    return ReconciliationReport(state.account, venue, rows, decision)


@dataclass
class Observed:
    """The latest balances a venue reported for an account, and the latest marks."""

    balances: events.BalanceObserved | None = None
    marks: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedProjection:
    """``Observed`` folded from ``BalanceObserved`` and the sealed snapshots' marks."""

    account: str
    types: tuple[str, ...] = ("BalanceObserved", "SnapshotSealed")

    def initial(self) -> Observed:
        return Observed()

    def apply(self, state: Observed, recorded: RecordedEvent) -> Observed:
        event = recorded.event
        if isinstance(event, events.BalanceObserved) and event.account == self.account:
            state.balances = event
        elif isinstance(event, events.SnapshotSealed):
            state.marks.update(event.marks)
        return state


def reconcile_with_venue(
    store: EventStore, account: str, *, settings: ValidatorSettings
) -> ReconciliationReport:
    """The account's books against the latest balances its venue reported."""
    observed = fold(store, ObservedProjection(account)).state
    if observed.balances is None:
        raise InputError(
            f"no BalanceObserved event for account {account!r} in the ledger",
            hint="record the venue's balances first (a run records them every cycle)",
            account=account,
        )
    books = portfolio.rebuild(store, account=account)
    return reconcile(
        books,
        observed.balances.venue,
        observed.balances.balances,
        observed.marks,
        settings=settings,
    )
