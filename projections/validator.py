"""The validator: compare a portfolio with a reference and decide, never silently.

The reference is an incremental state against a full replay, the ledger against a venue's
balances, or run A against run B. The diff holds the cash, positions value, realized PnL,
equity, fee, rounding and per-symbol differences. Tolerance:
``epsilon = max(base_epsilon, sum over symbols of 3 * price_step * |qty|)``.

- Within epsilon: **passed**.
- Above it but within ``max_auto_reconcile_pct`` of equity: **reconciled**, booked as an event
  with the diff and the per-asset adjustments.
- Critical (negative cash, negative equity, a quantity leak across symbols above
  ``leak_pct_max`` of value) or larger: **discarded**, with the reason and the diff.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from ledger.config import Amount, StrictModel
from projections.portfolio import ZERO, PortfolioState

Outcome = Literal["passed", "reconciled", "discarded"]


class ValidatorSettings(StrictModel):
    """The validator's tolerances (``run.validator`` in the configuration)."""

    base_epsilon: Amount = Field(Decimal("0.02"), ge=0)
    # Share of equity (0.001 = 0.1%) up to which a difference is reconciled, not refused.
    max_auto_reconcile_pct: Amount = Field(Decimal("0.001"), ge=0, le=1)
    # Share of equity a quantity may move between symbols before it is a critical leak.
    leak_pct_max: Amount = Field(Decimal("0.01"), ge=0, le=1)
    # Price step used where a market's own is unknown.
    price_step_default: Amount = Field(Decimal("0.01"), gt=0)


@dataclass(frozen=True)
class Diff:
    cash: dict[str, Decimal]
    positions_value: Decimal
    realized_pnl: dict[str, Decimal]
    equity: Decimal
    fees: dict[str, Decimal]
    rounding: Decimal  # the part of the equity difference that price-step rounding explains
    per_symbol: dict[str, Decimal]  # position quantity differences
    epsilon: Decimal
    equity_reference: Decimal

    def as_dict(self) -> dict[str, Any]:
        """The diff as plain values for an event (Decimals are encoded as strings)."""
        return {
            "cash": dict(sorted(self.cash.items())),
            "positions_value": self.positions_value,
            "realized_pnl": dict(sorted(self.realized_pnl.items())),
            "equity": self.equity,
            "fees": dict(sorted(self.fees.items())),
            "rounding": self.rounding,
            "per_symbol": dict(sorted(self.per_symbol.items())),
            "epsilon": self.epsilon,
            "equity_reference": self.equity_reference,
        }

    def table(self) -> str:
        """The diff as a readable table (only the lines that differ, plus the totals)."""
        rows = [
            ("equity", self.equity),
            ("positions value", self.positions_value),
            ("rounding", self.rounding),
            ("epsilon", self.epsilon),
        ]
        rows += [(f"cash {a}", v) for a, v in sorted(self.cash.items()) if v]
        rows += [(f"realized pnl {a}", v) for a, v in sorted(self.realized_pnl.items()) if v]
        rows += [(f"fees {a}", v) for a, v in sorted(self.fees.items()) if v]
        rows += [(f"qty {s}", v) for s, v in sorted(self.per_symbol.items()) if v]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value:>+20}" for name, value in rows)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    diff: Diff
    adjustments: dict[str, Decimal]


def _delta(ours: dict[str, Decimal], theirs: dict[str, Decimal]) -> dict[str, Decimal]:
    keys = sorted(set(ours) | set(theirs))
    return {
        k: ours.get(k, ZERO) - theirs.get(k, ZERO)
        for k in keys
        if ours.get(k, ZERO) != theirs.get(k, ZERO)
    }


def diff(
    candidate: PortfolioState,
    reference: PortfolioState,
    marks: dict[str, Decimal],
    *,
    settings: ValidatorSettings,
    price_steps: dict[str, Decimal] | None = None,
) -> Diff:
    """The differences candidate - reference, valued at ``marks``."""
    ours, theirs = _equities(candidate, reference, marks)
    return _diff(candidate, reference, marks, settings, price_steps, ours, theirs)


def _equities(
    candidate: PortfolioState, reference: PortfolioState, marks: dict[str, Decimal]
) -> tuple[Decimal, Decimal]:
    """Both portfolios' equity at ``marks``, each valued once (the same one once)."""
    ours = candidate.equity(marks)
    return ours, ours if reference is candidate else reference.equity(marks)


def _diff(
    candidate: PortfolioState,
    reference: PortfolioState,
    marks: dict[str, Decimal],
    settings: ValidatorSettings,
    price_steps: dict[str, Decimal] | None,
    ours: Decimal,
    theirs: Decimal,
) -> Diff:
    """``diff`` with both equities already valued (a cycle values each once)."""
    steps = price_steps or {}
    per_symbol = _delta(candidate.positions, reference.positions)
    equity = ours - theirs
    epsilon = max(
        settings.base_epsilon,
        sum(
            (
                3 * steps.get(s, settings.price_step_default) * abs(q)
                for s, q in sorted(candidate.positions.items())
                if q
            ),
            ZERO,
        ),
    )
    rounding = equity if abs(equity) <= epsilon else ZERO
    return Diff(
        cash=_delta(candidate.cash, reference.cash),
        positions_value=candidate.positions_value(marks) - reference.positions_value(marks),
        realized_pnl=_delta(candidate.realized_pnl, reference.realized_pnl),
        equity=equity,
        fees=_delta(candidate.fees_paid, reference.fees_paid),
        rounding=rounding,
        per_symbol=per_symbol,
        epsilon=epsilon,
        equity_reference=theirs,
    )


def validate(
    candidate: PortfolioState,
    reference: PortfolioState,
    marks: dict[str, Decimal],
    *,
    settings: ValidatorSettings,
    price_steps: dict[str, Decimal] | None = None,
) -> Decision:
    """Decide whether ``candidate`` may be committed, given what ``reference`` says."""
    ours, theirs = _equities(candidate, reference, marks)
    found = _diff(candidate, reference, marks, settings, price_steps, ours, theirs)
    critical = _critical(candidate, marks, found, settings, ours)
    if critical:
        return Decision("discarded", critical, found, {})
    if abs(found.equity) <= found.epsilon:
        return Decision("passed", "within epsilon", found, {})
    limit = settings.max_auto_reconcile_pct * abs(found.equity_reference)
    if abs(found.equity) <= limit:
        adjustments = {a: -v for a, v in found.cash.items()}
        return Decision(
            "reconciled",
            f"|equity diff| {abs(found.equity)} is above epsilon "
            f"{found.epsilon} and within {settings.max_auto_reconcile_pct} of "
            f"equity ({limit})",
            found,
            adjustments,
        )
    return Decision(
        "discarded",
        f"|equity diff| {abs(found.equity)} is above the auto-reconcile limit {limit}",
        found,
        {},
    )


def _critical(
    candidate: PortfolioState,
    marks: dict[str, Decimal],
    found: Diff,
    settings: ValidatorSettings,
    equity: Decimal,
) -> str:
    """The reason ``candidate`` (worth ``equity`` at ``marks``) must never be committed."""
    negative = {a: v for a, v in sorted(candidate.cash.items()) if v < 0}
    if negative:
        return f"negative cash: {negative}"
    if equity < 0:
        return f"negative equity: {equity}"
    moved = sum((abs(q) * marks.get(s, ZERO) for s, q in found.per_symbol.items()), ZERO)
    if (
        found.per_symbol
        and len(found.per_symbol) > 1
        and equity > 0
        and moved > settings.leak_pct_max * equity
    ):
        return (
            f"quantity leak across symbols worth {moved} (over {settings.leak_pct_max} "
            f"of equity {equity})"
        )
    return ""
