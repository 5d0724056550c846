"""The portfolio: cash, positions, average cost, realized PnL, fees and equity, folded from
ledger events with exact Decimals.

Every money event becomes double-entry postings that balance to zero per asset (the account
on one side; the counterparty, the fee collector or the outside world on the other). The
balance is checked for every event folded, and a failure raises ``BacktestInvariantError``.

``apply`` is a fold step without I/O or clock: it changes the state it is given and returns
it. Folding a prefix and then the rest gives the state that folding everything gives (a
property test checks it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from ledger import events
from ledger.errors import BacktestInvariantError, InputError
from ledger.market import split_symbol
from ledger.recorded import RecordedEvent
from projections.runner import fold as fold_projection

if TYPE_CHECKING:
    from ledger.store import EventStore

ZERO = Decimal(0)
Posting = tuple[str, str, Decimal]  # (book, asset, amount)


# The event types that move an account's money: a rebuild reads only these.
MONEY_TYPES = (
    "FundsDeposited",
    "FundsWithdrawn",
    "TradeExecuted",
    "FeeCharged",
    "PortfolioReconciled",
)


def postings(event: events.Event) -> list[Posting]:
    """The double-entry postings of a money event (empty for other events)."""
    match event:
        case events.FundsDeposited(account=account, asset=asset, amount=amount):
            return [(account, asset, amount), ("outside", asset, -amount)]
        case events.FundsWithdrawn(account=account, asset=asset, amount=amount):
            return [(account, asset, -amount), ("outside", asset, amount)]
        case events.TradeExecuted(account=account, symbol=symbol, side=side, qty=qty, price=price):
            base, quote = split_symbol(symbol)
            sign = 1 if side == "buy" else -1
            cost = qty * price
            lines = [
                (account, base, sign * qty),
                ("counterparty", base, -sign * qty),
                (account, quote, -sign * cost),
                ("counterparty", quote, sign * cost),
            ]
            if event.fee is not None:  # a fee that came with the fill
                lines += [
                    (account, event.fee_asset, -event.fee),
                    ("fees", event.fee_asset, event.fee),
                ]
            return lines
        case events.FeeCharged(account=account, asset=asset, amount=amount):
            return [(account, asset, -amount), ("fees", asset, amount)]
        case events.PortfolioReconciled(account=account, adjustments=adjustments):
            return [
                p
                for asset, amount in sorted(adjustments.items())
                for p in ((account, asset, amount), ("reconciliation", asset, -amount))
            ]
    return []


@dataclass
class PortfolioState:
    account: str
    quote: str | None = None  # the account's valuation asset (the first deposit's, if unset)
    cash: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    positions: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    average_cost: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    realized_pnl: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fees_paid: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    position: int = 0  # the last ledger position folded

    def copy(self) -> PortfolioState:
        """An independent copy (Decimals are immutable: copying the dicts is enough)."""
        return PortfolioState(
            account=self.account,
            quote=self.quote,
            cash=defaultdict(Decimal, self.cash),
            positions=defaultdict(Decimal, self.positions),
            average_cost=defaultdict(Decimal, self.average_cost),
            realized_pnl=defaultdict(Decimal, self.realized_pnl),
            fees_paid=defaultdict(Decimal, self.fees_paid),
            position=self.position,
        )

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        """Cash plus positions at ``marks`` ({symbol: price}), in the account's quote asset."""
        quote = self.quote
        if quote is None:
            return ZERO
        # Base assets bought through a symbol are valued through that symbol's mark.
        held: dict[str, Decimal] = {}
        for symbol, qty in self.positions.items():
            if qty:
                base = split_symbol(symbol)[0]
                held[base] = held.get(base, ZERO) + qty
        total = ZERO
        for asset, amount in sorted(self.cash.items()):
            if amount == 0:
                continue
            if asset == quote:
                total += amount
                continue
            loose = amount - held.get(asset, ZERO)
            if loose != 0:
                total += loose * _mark(marks, f"{asset}/{quote}")
        for symbol, qty in sorted(self.positions.items()):
            if qty != 0:
                total += qty * _mark(marks, symbol)
        return total

    def positions_value(self, marks: dict[str, Decimal]) -> Decimal:
        return sum(
            (qty * _mark(marks, s) for s, qty in sorted(self.positions.items()) if qty != 0), ZERO
        )

    def unrealized_pnl(self, marks: dict[str, Decimal]) -> Decimal:
        return sum(
            (
                (_mark(marks, s) - self.average_cost[s]) * qty
                for s, qty in sorted(self.positions.items())
                if qty != 0
            ),
            ZERO,
        )


def _mark(marks: dict[str, Decimal], symbol: str) -> Decimal:
    price = marks.get(symbol)
    if price is None:
        raise InputError(
            f"no mark for {symbol}: equity needs a price for every holding",
            hint="value the portfolio with the cycle's sealed snapshot marks",
            symbol=symbol,
        )
    return price


def apply(state: PortfolioState, event: events.Event, position: int = 0) -> PortfolioState:
    """Fold one event into ``state`` (only this account's money events change it).

    This is the replay hot loop, so each money type has its own step instead of going
    through ``postings``. Each step books what ``postings`` says for the account's side; the
    other side is the same amount negated, so a posting set balances exactly when every
    amount in it is finite (``x + -x`` is 0 for every finite Decimal, NaN or an error
    otherwise), and that is what the step checks. A property test checks that this fold
    equals booking ``postings`` one line at a time with the balance summed.
    """
    step = _STEPS.get(type(event))
    if step is not None:
        step(state, event, position)
    if position:
        state.position = position
    return state


def _unbalanced(event: events.Event, position: int) -> BacktestInvariantError:
    return BacktestInvariantError(
        f"postings do not balance at position {position}: {postings(event)}",
        hint="an amount is NaN or infinite; the event cannot be booked",
        position=position,
    )


def _deposit(state: PortfolioState, event: events.FundsDeposited, position: int) -> None:
    if not event.amount.is_finite():
        raise _unbalanced(event, position)
    if event.account == state.account:
        state.cash[event.asset] += event.amount
        if state.quote is None:
            state.quote = event.asset


def _withdraw(state: PortfolioState, event: events.FundsWithdrawn, position: int) -> None:
    if not event.amount.is_finite():
        raise _unbalanced(event, position)
    if event.account == state.account:
        state.cash[event.asset] -= event.amount


def _fee(state: PortfolioState, event: events.FeeCharged, position: int) -> None:
    amount = event.amount
    if not amount.is_finite():
        raise _unbalanced(event, position)
    if event.account == state.account:
        state.cash[event.asset] -= amount
        state.fees_paid[event.asset] += amount


def _reconciled(state: PortfolioState, event: events.PortfolioReconciled, position: int) -> None:
    if not all(amount.is_finite() for amount in event.adjustments.values()):
        raise _unbalanced(event, position)
    if event.account == state.account:
        for asset, amount in sorted(event.adjustments.items()):
            state.cash[asset] += amount


def _traded(state: PortfolioState, event: events.TradeExecuted, position: int) -> None:
    qty, price = event.qty, event.price
    cost = qty * price  # one rounded product, booked on both sides
    if not cost.is_finite():  # (finite qty and price make a finite cost)
        raise _unbalanced(event, position)
    if event.account != state.account:
        return
    base, quote = split_symbol(event.symbol)
    cash = state.cash
    if event.side == "buy":
        cash[base] += qty
        cash[quote] -= cost
        delta = qty
    else:
        cash[base] -= qty
        cash[quote] += cost
        delta = -qty
    _trade(state, event.symbol, delta, price)
    fee = event.fee
    if fee is not None:  # a fee that came with the fill: booked as a FeeCharged would be
        if not fee.is_finite():
            raise _unbalanced(event, position)
        cash[event.fee_asset] -= fee
        state.fees_paid[event.fee_asset] += fee


_STEPS: dict[type, Any] = {
    events.FundsDeposited: _deposit,
    events.FundsWithdrawn: _withdraw,
    events.FeeCharged: _fee,
    events.PortfolioReconciled: _reconciled,
    events.TradeExecuted: _traded,
}


def apply_postings(state: PortfolioState, event: events.Event, position: int = 0) -> PortfolioState:
    """The reference fold: book ``postings`` line by line, summing the balance per asset.

    Slower than ``apply`` and equal to it (tests compare them); kept as the specification.
    """
    lines = postings(event)
    if lines:
        _check_balanced(lines, position)
        account, cash, touched = state.account, state.cash, False
        for book, asset, amount in lines:
            if book == account:
                cash[asset] += amount
                touched = True
        if touched:
            if type(event) is events.TradeExecuted:
                _trade(
                    state,
                    event.symbol,
                    event.qty if event.side == "buy" else -event.qty,
                    event.price,
                )
                if event.fee is not None:
                    state.fees_paid[event.fee_asset] += event.fee
            elif type(event) is events.FeeCharged:
                state.fees_paid[event.asset] += event.amount
            elif type(event) is events.FundsDeposited and state.quote is None:
                state.quote = event.asset
    if position:
        state.position = position
    return state


def _check_balanced(lines: list[Posting], position: int) -> None:
    totals: dict[str, Decimal] = {}
    for _book, asset, amount in lines:
        # Infinity + -Infinity would trap as InvalidOperation: it is unbalanced, say so.
        totals[asset] = totals.get(asset, ZERO) + amount if amount.is_finite() else amount
    for total in totals.values():
        if total.is_nan() or total:
            raise BacktestInvariantError(
                f"postings do not balance at position {position}: {totals}", position=position
            )


def _trade(state: PortfolioState, symbol: str, delta: Decimal, price: Decimal) -> None:
    """Move a position by ``delta`` at ``price``: average cost on the way in, realized PnL
    on the way out (a trade that flips the side does both)."""
    if delta == 0:
        return
    positions, average_cost = state.positions, state.average_cost
    held = positions[symbol]
    if held == 0 or (held > 0) == (delta > 0):
        new = held + delta
        average_cost[symbol] = (held * average_cost[symbol] + delta * price) / new
        positions[symbol] = new
        return
    closing = min(abs(delta), abs(held)) * (1 if held > 0 else -1)
    state.realized_pnl[split_symbol(symbol)[1]] += closing * (price - average_cost[symbol])
    rest = held + delta
    positions[symbol] = rest
    if rest == 0:
        average_cost[symbol] = ZERO
    elif (rest > 0) != (held > 0):  # flipped: the remainder opened at this price
        average_cost[symbol] = price


def fold(
    account: str,
    history: Iterable[events.Event],
    *,
    quote: str | None = None,
    state: PortfolioState | None = None,
) -> PortfolioState:
    """Fold events (without positions) into a portfolio."""
    state = state or PortfolioState(account=account, quote=quote)
    for event in history:
        apply(state, event)
    return state


# Bump when the fold changes what it computes: older checkpoints are then ignored and the
# portfolio is rebuilt from the first event.
CODE_VERSION = "portfolio/1"
_MONEY_DICTS = ("cash", "positions", "average_cost", "realized_pnl", "fees_paid")


def encode_state(state: PortfolioState) -> bytes:
    return msgspec.json.encode(state, order="deterministic")


def decode_state(raw: bytes) -> PortfolioState:
    state = msgspec.json.decode(raw, type=PortfolioState)
    for name in _MONEY_DICTS:  # back to defaultdicts, as the fold expects
        setattr(state, name, defaultdict(Decimal, getattr(state, name)))
    return state


@dataclass(frozen=True)
class PortfolioProjection:
    """An account's portfolio as a projection (see ``projections.runner``), checkpointed."""

    account: str
    quote: str | None = None
    types: tuple[str, ...] = MONEY_TYPES  # only money events change a portfolio

    @property
    def version(self) -> str:
        return CODE_VERSION

    @property
    def checkpoint_name(self) -> str:
        return f"portfolio/{self.account}"

    def initial(self) -> PortfolioState:
        return PortfolioState(account=self.account, quote=self.quote)

    def apply(self, state: PortfolioState, recorded: RecordedEvent) -> PortfolioState:
        return apply(state, recorded.event, recorded.position)

    def encode(self, state: PortfolioState) -> bytes:
        return encode_state(state)

    def decode(self, raw: bytes) -> PortfolioState:
        return decode_state(raw)


def rebuild(
    store: EventStore,
    account: str = "main",
    to_position: int | None = None,
    *,
    quote: str | None = None,
    checkpoint: bool = True,
) -> PortfolioState:
    """Rebuild an account's portfolio from the ledger, up to ``to_position``.

    With ``checkpoint``, start from the last checkpoint this code version made (when it is
    not past ``to_position``) and fold only the tail; a rebuild to the head saves a new one.
    """
    folded = fold_projection(
        store, PortfolioProjection(account, quote), to_position=to_position, checkpoint=checkpoint
    )
    state = folded.state
    state.position = max(state.position, folded.position)  # it reflects everything up to here
    return state
