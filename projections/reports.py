"""Reports people read: equity over time (CSV, JSON, or HTML with a plot).

Equity per time step: one row per time at which prices are known (a run's sealed snapshot,
an imported candle's close), valued at the latest price of each holding. Candles are
half-open intervals ``[open, open + timeframe)``: the row stamped at a close holds every money
event *before* that instant, and a fill at exactly that instant (the next candle's open, where
backtest engines fill) counts in the next candle's row. Imported trades count at their own
execution time, so a trade file and a candle folder imported in any order give the same report.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.market import timeframe_s
from ledger.recorded import RecordedEvent
from projections.portfolio import MONEY_TYPES, ZERO, PortfolioState, apply
from projections.runs import run_events

if TYPE_CHECKING:
    import pandas as pd

    from ledger.store import EventStore

COLUMNS = ("timestamp", "equity", "cash", "positions_value", "realized_pnl", "fees")
PRICE_TYPES = ("SnapshotSealed", "CandleImported")
MARKER_TYPES = ("PortfolioReconciled", "CycleDiscarded")


@dataclass
class EquitySeries:
    account: str
    quote: str
    rows: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]
    reconciled: list[datetime] = field(default_factory=list)
    discarded: list[datetime] = field(default_factory=list)
    stale: list[datetime] = field(default_factory=list)  # times a mark was stale
    # Why a series can be empty: the account's first money, and the last price seen.
    first_money: datetime | None = None
    first_price: datetime | None = None
    last_price: datetime | None = None

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def market_time(recorded: RecordedEvent) -> datetime:
    event = recorded.event
    if isinstance(event, events.TradeExecuted) and event.executed_at is not None:
        return event.executed_at
    if isinstance(event, events.FundsDeposited) and event.at is not None:
        return event.at
    if isinstance(event, events.CandleImported):
        return event.open_time + timedelta(seconds=timeframe_s(event.timeframe))
    return recorded.recorded_at


def equity_series(
    found: Iterable[RecordedEvent], account: str, quote: str | None = None
) -> EquitySeries:
    """Equity per price time from money and price events (in any ledger order)."""
    return _fold(sorted(_timeline(found)), account, quote)


def streamed_equity_series(
    read: Callable[[], Iterable[RecordedEvent]], account: str, quote: str | None = None
) -> EquitySeries:
    """``equity_series`` of the events ``read()`` gives, holding only the events of the
    moments not yet passed while they come in market-time order (a run's own events, as it
    recorded them: a long run's seals would otherwise all be held at once, each with every
    symbol's mark). At the first event out of that order (an import's, say) the events are
    read again and sorted whole, as ``equity_series`` does: the same series either way."""
    try:
        return _fold(_in_market_order(_timeline(read())), account, quote)
    except _OutOfOrder:
        return equity_series(read(), account, quote)


# (moment, kind, seq, event): ordered by market time, prices before money at a tie, and
# then as recorded.
_Item = tuple[datetime, int, int, RecordedEvent]


class _OutOfOrder(Exception):
    """An event came after a later moment was already folded."""


def _timeline(found: Iterable[RecordedEvent]) -> Iterator[_Item]:
    """Each event with its place in market time."""
    traded_at: dict[str, datetime] = {}
    for seq, recorded in enumerate(found):
        # At a tie, prices first: a price stamped at t is the close of the candle that ends
        # at t, while money at t belongs to the candle that opens at t.
        kind = 0 if recorded.type in PRICE_TYPES else 1
        moment = market_time(recorded)
        event = recorded.event
        if isinstance(event, events.TradeExecuted):
            traded_at[event.trade_id] = moment
        elif isinstance(event, events.FeeCharged):  # a fee is charged when its trade fills
            moment = traded_at.get(event.trade_id, moment)
        yield (moment, kind, seq, recorded)


def _in_market_order(items: Iterable[_Item]) -> Iterator[_Item]:
    """``items`` sorted, if no item's moment is at or before one already let through
    (``_OutOfOrder`` else): an item waits only until a later moment arrives."""
    waiting: list[_Item] = []  # a heap
    passed: datetime | None = None  # the last moment let through
    for item in items:
        moment = item[0]
        if passed is not None and moment <= passed:
            raise _OutOfOrder
        while waiting and waiting[0][0] < moment:
            passed = waiting[0][0]
            yield heapq.heappop(waiting)
        heapq.heappush(waiting, item)
    while waiting:
        yield heapq.heappop(waiting)


def _fold(timeline: Iterable[_Item], account: str, quote: str | None) -> EquitySeries:
    """The series of ``account`` from its events in market-time order."""
    state = PortfolioState(account=account, quote=quote)
    marks: dict[str, Decimal] = {}
    series = EquitySeries(account, quote or "", [])
    pending: datetime | None = None

    def emit(moment: datetime) -> None:
        if state.quote is None:
            return  # the account holds nothing yet
        q = state.quote
        series.quote = q
        if any(qty and s not in marks for s, qty in state.positions.items()):
            return  # a holding with no price yet: no honest equity for this time
        series.rows.append(
            (
                moment,
                state.equity(marks),
                state.cash.get(q, ZERO),
                state.positions_value(marks),
                state.realized_pnl.get(q, ZERO),
                state.fees_paid.get(q, ZERO),
            )
        )

    money_after: datetime | None = None  # the last money moment not yet in a row
    for moment, kind, _, recorded in timeline:
        if pending is not None and (kind == 1 or moment != pending):
            emit(pending)  # the row of the prices at `pending`, before any money at it
            pending, money_after = None, None
        event = recorded.event
        if kind == 1:
            if recorded.type in MONEY_TYPES and getattr(event, "account", None) == account:
                money_after = moment
                if series.first_money is None:
                    series.first_money = moment
            if isinstance(event, events.PortfolioReconciled) and event.account == account:
                series.reconciled.append(moment)
            elif isinstance(event, events.CycleDiscarded) and event.account == account:
                series.discarded.append(moment)
            apply(state, event, recorded.position)
            continue
        _take_prices(series, marks, event, moment)
        pending = moment
    if pending is not None:
        emit(pending)
    elif money_after is not None and series.rows:
        # Fills at or after the last price time (a run's last cycle) have no later close to
        # be marked at: one closing row, at the latest prices, so the report ends where the
        # books do. It may share its stamp with the row before it (that row is before them).
        # Money with no price before it at all has no row: the report says why instead.
        emit(money_after)
    return series


def _take_prices(
    series: EquitySeries, marks: dict[str, Decimal], event: events.Event, moment: datetime
) -> None:
    series.last_price = moment
    series.first_price = series.first_price or moment
    if isinstance(event, events.SnapshotSealed):
        marks.update(event.marks)
        if event.stale:
            series.stale.append(moment)
    elif isinstance(event, events.CandleImported):
        marks[event.symbol] = event.close


def load_series(
    store: EventStore,
    account: str,
    *,
    run_id: str | None = None,
    quote: str | None = None,
    span: tuple[int, int | None] | None = None,
) -> EquitySeries:
    """The equity series of ``account`` (only ``run_id``'s events when given, read from its
    ``span``: see ``run_events``)."""
    types = (*MONEY_TYPES, *PRICE_TYPES, *MARKER_TYPES)
    return streamed_equity_series(lambda: run_events(store, types, run_id, span), account, quote)


def equity_frame(
    store: EventStore, account: str = "main", *, run_id: str | None = None, quote: str | None = None
) -> pd.DataFrame:
    """Equity per time step as a pandas frame (columns: ``COLUMNS``, Decimals)."""
    return load_series(store, account, run_id=run_id, quote=quote).frame()


def to_csv(series: EquitySeries) -> str:
    lines = [",".join(COLUMNS)]
    for row in series.rows:
        lines.append(",".join([_iso(row[0]), *(str(v) for v in row[1:])]))
    return "\n".join(lines) + "\n"


def to_json(series: EquitySeries) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": _iso(row[0]),
            **{c: str(v) for c, v in zip(COLUMNS[1:], row[1:], strict=True)},
        }
        for row in series.rows
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
