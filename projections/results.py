"""Results a trader reads after a run: round trips, per-pair figures, totals and days.

A *trade* is a round trip of one symbol on one account: it opens when the position leaves
zero and closes when it is back at zero (a fill that flips the side closes one trade and
opens the next with the rest). Its profit is what the fills realized at average cost, less
its fees valued in the quote asset (a fee paid in the base asset is valued at its fill's
price). Everything is exact (``Decimal``); only ratios are floats.

Totals come from the equity series (``projections.reports``), so fees, reconciliations and
open positions are all in them; the metrics follow freqtrade's definitions where it has one
(CAGR, profit factor, expectancy, win/draw/loss), and use daily equity where freqtrade uses
trades (Sharpe, Sortino, Calmar): the README states each.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.market import split_symbol
from ledger.recorded import RecordedEvent
from projections.reports import EquitySeries
from projections.runs import run_events, run_span

if TYPE_CHECKING:
    from ledger.store import EventStore

ZERO = Decimal(0)
DAYS_PER_YEAR = 365


@dataclass(slots=True)  # (slots: a long run's trips hold every one of its fills)
class Fill:
    position: int
    at: datetime
    side: str
    qty: Decimal
    price: Decimal
    fee_quote: Decimal


@dataclass(slots=True)
class RoundTrip:
    """One trade: from the position leaving zero to its return to zero."""

    symbol: str
    side: str  # long | short
    opened_at: datetime
    closed_at: datetime | None = None
    qty: Decimal = ZERO  # the largest position held
    entry_cost: Decimal = ZERO  # quote paid (long) or received (short) on the way in
    profit_abs: Decimal = ZERO  # realized, fees included
    fees: Decimal = ZERO  # in the quote asset
    fills: list[Fill] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.closed_at is None:
            return None
        return (self.closed_at - self.opened_at).total_seconds()

    @property
    def profit_ratio(self) -> Decimal:
        return self.profit_abs / self.entry_cost if self.entry_cost else ZERO

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side,
            "opened_at": _iso(self.opened_at),
            "closed_at": _iso(self.closed_at) if self.closed_at else None,
            "duration_s": self.duration_s,
            "qty": str(self.qty),
            "entry_cost": str(self.entry_cost),
            "profit_abs": str(self.profit_abs),
            "profit_pct": round(float(self.profit_ratio) * 100, 4),
            "fees": str(self.fees),
            "entry_positions": [f.position for f in self.fills if _opens(self.side, f.side)],
            "exit_positions": [f.position for f in self.fills if not _opens(self.side, f.side)],
        }


def _opens(trade_side: str, fill_side: str) -> bool:
    return (trade_side == "long") == (fill_side == "buy")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def round_trips(found: Iterable[RecordedEvent], account: str) -> list[RoundTrip]:
    """The account's round trips, in the order they opened (open ones last, unclosed)."""
    held = list(found)
    return trips_of_fills(held, account, fees_by_trade(held, account))


def fees_by_trade(found: Iterable[RecordedEvent], account: str) -> dict[str, list[Fee]]:
    """The account's ``FeeCharged`` events, by the trade they were charged for."""
    fees: dict[str, list[Fee]] = defaultdict(list)
    for recorded in found:
        event = recorded.event
        if isinstance(event, events.FeeCharged) and event.account == account:
            fees[event.trade_id].append((event.asset, event.amount))
    return fees


def trips_of_fills(
    found: Iterable[RecordedEvent], account: str, fees: dict[str, list[Fee]]
) -> list[RoundTrip]:
    """The account's round trips from its fills, each taken as it comes (with its fees from
    ``fees``): no fill is held but in the trip it belongs to."""
    books: dict[str, _SymbolTrips] = {}
    for recorded in found:
        event = recorded.event
        if isinstance(event, events.TradeExecuted) and event.account == account:
            book = books.get(event.symbol)
            if book is None:
                book = books[event.symbol] = _SymbolTrips(event.symbol)
            at = event.executed_at or recorded.recorded_at
            book.take(recorded.position, at, event, fees.get(event.trade_id, []))
    trips: list[RoundTrip] = []
    for symbol in sorted(books):
        trips += books[symbol].trips
    trips.sort(key=lambda t: (t.opened_at, t.symbol))
    return trips


Fee = tuple[str, Decimal]  # (asset, amount)


def _fee_in_quote(event: events.TradeExecuted, fees: list[Fee]) -> Decimal:
    base, quote = split_symbol(event.symbol)
    paid = list(fees)
    if event.fee is not None:
        paid.append((event.fee_asset, event.fee))
    total = ZERO
    for asset, amount in paid:
        if asset == quote:
            total += amount
        elif asset == base:
            total += amount * event.price
    return total


class _SymbolTrips:
    """One symbol's trips, fill by fill in ledger order: the position held, its average
    cost and the trip it is in."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.trips: list[RoundTrip] = []
        self.held, self.average = ZERO, ZERO
        self.trip: RoundTrip | None = None

    def take(
        self, position: int, at: datetime, event: events.TradeExecuted, fees: list[Fee]
    ) -> None:
        delta = event.qty if event.side == "buy" else -event.qty
        fee = _fee_in_quote(event, fees)
        remaining = delta
        fee_left = fee
        while remaining:
            held = self.held
            if held == 0:
                self.trip = RoundTrip(self.symbol, "long" if remaining > 0 else "short", at)
                self.trips.append(self.trip)
            trip = self.trip
            assert trip is not None
            if held == 0 or (held > 0) == (remaining > 0):  # opening or adding
                step = remaining
                cost = abs(step) * event.price
                self.average = (self.average * abs(held) + cost) / (abs(held) + abs(step))
                trip.entry_cost += cost
            else:  # reducing: at most what is held; a flip continues with the rest
                step = -held if abs(remaining) > abs(held) else remaining
                gain = (event.price - self.average) * abs(step)
                trip.profit_abs += gain if held > 0 else -gain
            share = fee_left if step == remaining else fee * abs(step) / abs(delta)
            fee_left -= share
            trip.fees += share
            trip.profit_abs -= share
            trip.fills.append(Fill(position, at, event.side, abs(step), event.price, share))
            self.held = held = held + step
            remaining -= step
            trip.qty = max(trip.qty, abs(held))
            if held == 0:
                trip.closed_at = at
                self.average = ZERO


# --- the summary ---------------------------------------------------------------------------


@dataclass
class PairResult:
    symbol: str
    trades: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    profit_abs: Decimal = ZERO
    durations_s: list[float] = field(default_factory=list)

    def add(self, trip: RoundTrip) -> None:
        self.trades += 1
        if trip.profit_abs > 0:
            self.wins += 1
        elif trip.profit_abs < 0:
            self.losses += 1
        else:
            self.draws += 1
        self.profit_abs += trip.profit_abs
        if trip.duration_s is not None:
            self.durations_s.append(trip.duration_s)

    def as_dict(self, start_equity: Decimal) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "trades": self.trades,
            "wins": self.wins,
            "draws": self.draws,
            "losses": self.losses,
            "win_pct": round(100 * self.wins / self.trades, 2) if self.trades else 0.0,
            "profit_abs": str(self.profit_abs),
            "profit_pct": _pct(self.profit_abs, start_equity),
            "avg_duration_s": round(sum(self.durations_s) / len(self.durations_s), 1)
            if self.durations_s
            else None,
        }


def _pct(part: Decimal, whole: Decimal) -> float:
    return round(float(part / whole) * 100, 4) if whole else 0.0


def summary(series: EquitySeries, trips: list[RoundTrip]) -> dict[str, Any]:
    """Per pair, totals and days of an equity series and its round trips."""
    if not series.rows:
        raise ValueError("an empty equity series")
    closed = [t for t in trips if t.closed_at is not None]
    pairs: dict[str, PairResult] = {}
    for trip in closed:
        pairs.setdefault(trip.symbol, PairResult(trip.symbol)).add(trip)
    total = PairResult("TOTAL")
    for trip in closed:
        total.add(trip)
    first, last = series.rows[0], series.rows[-1]
    start, end = first[1], last[1]
    days = _daily(series)
    returns = _daily_returns(start, days)
    drawdown = max_drawdown(series)
    span_days = max((last[0] - first[0]).total_seconds() / 86_400, 1.0)
    cagr = (float(end / start) ** (DAYS_PER_YEAR / span_days) - 1) if start > 0 and end > 0 else 0.0
    wins = [t.profit_abs for t in closed if t.profit_abs > 0]
    losses = [-t.profit_abs for t in closed if t.profit_abs < 0]
    gross_win, gross_loss = sum(wins, ZERO), sum(losses, ZERO)
    expectancy, expectancy_ratio = _expectancy(closed, wins, losses)
    exposed = sum(1 for row in series.rows if row[3] != 0)
    return {
        "account": series.account,
        "quote": series.quote,
        "from": _iso(first[0]),
        "to": _iso(last[0]),
        "pairs": [pairs[s].as_dict(start) for s in sorted(pairs)],
        "totals": {
            **total.as_dict(start),
            "open_trades": len(trips) - len(closed),
            "start_equity": str(start),
            "end_equity": str(end),
            "equity_profit_abs": str(end - start),
            "equity_profit_pct": _pct(end - start, start),
            "fees": str(last[5]),
            "cagr_pct": round(cagr * 100, 4),
            "max_drawdown_abs": str(drawdown[0]),
            "max_drawdown_pct": round(drawdown[1] * 100, 4),
            "max_drawdown_start": _iso(drawdown[2]) if drawdown[2] else None,
            "max_drawdown_end": _iso(drawdown[3]) if drawdown[3] else None,
            "sharpe": _ratio(_sharpe(returns)),
            "sortino": _ratio(_sortino(returns)),
            "calmar": _ratio(cagr / drawdown[1] if drawdown[1] else None),
            "profit_factor": _ratio(float(gross_win / gross_loss) if gross_loss else None),
            "expectancy": str(expectancy),
            "expectancy_ratio": _ratio(expectancy_ratio),
            "exposure_pct": round(100 * exposed / len(series.rows), 2),
        },
        "days": [
            {
                "date": day.isoformat(),
                "end_equity": str(equity),
                "profit_abs": str(equity - before),
                "profit_pct": _pct(equity - before, before),
                "trades_closed": sum(
                    1 for t in closed if t.closed_at and t.closed_at.date() == day
                ),
            }
            for (day, equity), before in zip(days, [start, *(e for _, e in days)], strict=False)
        ],
    }


def _ratio(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 4)


JUST_BEFORE = timedelta(microseconds=1)


def _daily(series: EquitySeries) -> list[tuple[date, Decimal]]:
    """The last equity of each calendar day (UTC). A row is stamped at a candle's close, the
    end of a half-open interval: the row at midnight closes the day before."""
    last: dict[date, Decimal] = {}
    for row in series.rows:
        last[(row[0] - JUST_BEFORE).date()] = row[1]
    return sorted(last.items())


def _daily_returns(start: Decimal, days: list[tuple[date, Decimal]]) -> list[float]:
    out, before = [], start
    for _, equity in days:
        out.append(float(equity / before) - 1 if before else 0.0)
        before = equity
    return out


def _sharpe(returns: list[float]) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    deviation = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    return mean / deviation * math.sqrt(DAYS_PER_YEAR) if deviation else None


def _sortino(returns: list[float]) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return mean / downside * math.sqrt(DAYS_PER_YEAR) if downside else None


def max_drawdown(series: EquitySeries) -> tuple[Decimal, float, datetime | None, datetime | None]:
    """(largest fall from a peak in the quote asset, as a share of that peak, the peak's time,
    the trough's time)."""
    peak, peak_at = series.rows[0][1], series.rows[0][0]
    worst: tuple[Decimal, float, datetime | None, datetime | None] = (ZERO, 0.0, None, None)
    for moment, equity, *_ in series.rows:
        if equity > peak:
            peak, peak_at = equity, moment
        fall = peak - equity
        if fall > worst[0]:
            worst = (fall, float(fall / peak) if peak else 0.0, peak_at, moment)
    return worst


def _exponent(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return min(int(exponent), 0) if isinstance(exponent, int) else 0


def _expectancy(
    closed: list[RoundTrip], wins: list[Decimal], losses: list[Decimal]
) -> tuple[Decimal, float | None]:
    """freqtrade's: win rate x average win - loss rate x average loss, and its ratio."""
    if not closed:
        return ZERO, None
    count = len(closed)
    average_win = sum(wins, ZERO) / len(wins) if wins else ZERO
    average_loss = sum(losses, ZERO) / len(losses) if losses else ZERO
    win_rate, loss_rate = Decimal(len(wins)) / count, Decimal(len(losses)) / count
    expectancy = win_rate * average_win - loss_rate * average_loss
    # Shown at the precision of the profits it comes from, not the 28 digits of a division.
    places = min(_exponent(t.profit_abs) for t in closed)
    expectancy = expectancy.quantize(Decimal(1).scaleb(places))
    ratio = float((1 + average_win / average_loss) * win_rate - 1) if average_loss else None
    return expectancy, ratio


def load_trips(
    store: EventStore,
    account: str,
    *,
    run_id: str | None = None,
    span: tuple[int, int | None] | None = None,
) -> list[RoundTrip]:
    """The round trips of ``account`` in the ledger (only ``run_id``'s when given, read from
    its ``span``: see ``run_events``). Two reads: the fees first, then the fills, each
    folded into its trip as it comes, so a long run's fills are never all held at once."""
    if run_id is not None and span is None:
        span = run_span(store, run_id)
    fees = fees_by_trade(run_events(store, ("FeeCharged",), run_id, span), account)
    return trips_of_fills(run_events(store, ("TradeExecuted",), run_id, span), account, fees)


def load_summary(
    store: EventStore,
    account: str,
    *,
    run_id: str | None = None,
    span: tuple[int, int | None] | None = None,
) -> dict[str, Any] | None:
    """``summary`` of ``account`` (``run_id``'s events only, when given, from its ``span``)
    from the ledger; None when there is no equity to report."""
    from projections.reports import load_series

    if run_id is not None and span is None:
        span = run_span(store, run_id)
    series = load_series(store, account, run_id=run_id, span=span)
    if not series.rows:
        return None
    return summary(series, load_trips(store, account, run_id=run_id, span=span))
