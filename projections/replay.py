"""The audit view: what the system knew and held as of a position.

The account's books (``portfolio.rebuild``) beside the errors, breakers and marks folded from
the same ledger up to the same position, optionally only from one run's events. Pure data:
the command line and the service render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.recorded import RecordedEvent
from projections import portfolio
from projections.errors import BreakerBoard, ErrorTracker
from projections.portfolio import PortfolioState
from projections.runner import fold

if TYPE_CHECKING:
    from ledger.store import EventStore

RECENT_ERRORS_SHOWN = 5


@dataclass
class MarketView:
    """Errors, breakers and the latest mark per symbol."""

    errors: ErrorTracker = field(default_factory=ErrorTracker)
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    marks: dict[str, Decimal] = field(default_factory=dict)
    last_time: datetime | None = None


class MarketProjection:
    """``MarketView`` as a projection: the types its views fold, nothing else is read."""

    types = (
        "FetchFailed",
        "FetchSucceeded",
        "OrderRejected",
        "CallRejected",
        "CircuitOpened",
        "CircuitHalfOpened",
        "CircuitClosed",
        "SnapshotSealed",
        "CandleImported",
    )

    def initial(self) -> MarketView:
        return MarketView()

    def apply(self, state: MarketView, recorded: RecordedEvent) -> MarketView:
        state.errors.apply(recorded)
        state.breakers.apply(recorded)
        event = recorded.event
        if isinstance(event, events.SnapshotSealed):
            state.marks.update(event.marks)
        elif isinstance(event, events.CandleImported):
            state.marks[event.symbol] = event.close
        state.last_time = recorded.recorded_at
        return state


@dataclass(frozen=True)
class Replay:
    """The books and the market as of ``position``."""

    position: int
    account: str
    run_id: str | None
    books: PortfolioState
    market: MarketView

    @property
    def unpriced(self) -> list[str]:
        """Held symbols with no mark: equity cannot be told honestly without them."""
        marks = self.market.marks
        return [s for s, q in self.books.positions.items() if q and s not in marks]

    @property
    def equity(self) -> Decimal | None:
        if self.unpriced or self.books.quote is None:
            return None
        return self.books.equity(self.market.marks)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (amounts as strings)."""
        books, market = self.books, self.market
        held = sorted((s, v) for s, v in books.positions.items() if v)
        equity = self.equity
        return {
            "position": self.position,
            "recorded_at": market.last_time.isoformat() if market.last_time else None,
            "account": self.account,
            "run_id": self.run_id,
            "quote": books.quote,
            "cash": {a: str(v) for a, v in sorted(books.cash.items()) if v},
            "positions": {s: str(v) for s, v in held},
            "average_cost": {s: str(books.average_cost[s]) for s, _ in held},
            "realized_pnl": {a: str(v) for a, v in sorted(books.realized_pnl.items())},
            "fees_paid": {a: str(v) for a, v in sorted(books.fees_paid.items())},
            "equity": str(equity) if equity is not None else None,
            "marks": {s: str(v) for s, v in sorted(market.marks.items())},
            "errors": dict(sorted(market.errors.by_class.items())),
            "last_errors": [
                {
                    "position": e.position,
                    "class": e.error_class,
                    "symbol": e.symbol,
                    "message": e.message,
                }
                for e in list(market.errors.recent)[-RECENT_ERRORS_SHOWN:]
            ],
            "breakers": {
                n: {
                    "state": b.state,
                    "calls": b.calls,
                    "successes": b.successes,
                    "failures": b.failures,
                    "rejected": b.rejected,
                }
                for n, b in sorted(market.breakers.breakers.items())
            },
        }


def replay(store: EventStore, *, account: str, position: int, run_id: str | None = None) -> Replay:
    """The account's books and the market view as of ``position`` (one run's events only,
    for the market view, when ``run_id`` is given)."""
    books = portfolio.rebuild(store, account=account, to_position=position)
    where = None if run_id is None else (lambda r: r.run_id == run_id)
    market = fold(store, MarketProjection(), to_position=position, where=where).state
    return Replay(position, account, run_id, books, market)


def replay_at_market_time(
    store: EventStore, *, account: str, moment: datetime, run_id: str | None = None
) -> Replay:
    """The books after every money event whose *market* time is at or before ``moment``
    (a fill's execution time, a deposit's ``--at``, a candle's close), marked at the last
    prices known then: what imported history held at a moment of its own time, whenever it
    was recorded. For a run, market time is its clock, so this equals ``--at``."""
    from projections.portfolio import MONEY_TYPES
    from projections.reports import market_time

    market_projection = MarketProjection()
    found = store.query(types=(*MONEY_TYPES, *market_projection.types))
    if run_id is not None:
        found = (r for r in found if r.run_id == run_id)
    timeline: list[tuple[datetime, int, RecordedEvent]] = []
    traded_at: dict[str, datetime] = {}
    for recorded in found:
        at, event = market_time(recorded), recorded.event
        if isinstance(event, events.TradeExecuted):
            traded_at[event.trade_id] = at
        elif isinstance(event, events.FeeCharged):  # charged when its trade fills
            at = traded_at.get(event.trade_id, at)
        if at <= moment:
            timeline.append((at, recorded.position, recorded))
    timeline.sort(key=lambda item: (item[0], item[1]))
    books, market, last = PortfolioState(account=account), MarketView(), 0
    for at, position, recorded in timeline:
        if recorded.type in MONEY_TYPES:
            portfolio.apply(books, recorded.event, position)
        else:
            market_projection.apply(market, recorded)
        market.last_time, last = at, max(last, position)
    return Replay(last, account, run_id, books, market)
