"""Reports people read: equity over time (CSV, JSON, or HTML with a plot).

Equity per time step: one row per time at which prices are known (a run's sealed snapshot,
an imported candle's close), after every money event up to that time, valued at the latest
price of each holding. Imported trades count at their own execution time, so a trade file
and a candle folder imported in any order give the same report.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.market import timeframe_s
from ledger.recorded import RecordedEvent
from projections.portfolio import MONEY_TYPES, ZERO, PortfolioState, apply

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

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def _time_of(recorded: RecordedEvent) -> datetime:
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
    timeline: list[tuple[datetime, int, int, RecordedEvent]] = []
    traded_at: dict[str, datetime] = {}
    for seq, recorded in enumerate(found):
        kind = 1 if recorded.type in PRICE_TYPES else 0  # at a tie, money first
        moment = _time_of(recorded)
        event = recorded.event
        if isinstance(event, events.TradeExecuted):
            traded_at[event.trade_id] = moment
        elif isinstance(event, events.FeeCharged):  # a fee is charged when its trade fills
            moment = traded_at.get(event.trade_id, moment)
        timeline.append((moment, kind, seq, recorded))
    timeline.sort(key=lambda item: (item[0], item[1], item[2]))
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

    for moment, kind, _, recorded in timeline:
        if pending is not None and moment != pending:
            emit(pending)
            pending = None
        event = recorded.event
        if kind == 0:
            if isinstance(event, events.PortfolioReconciled) and event.account == account:
                series.reconciled.append(moment)
            elif isinstance(event, events.CycleDiscarded) and event.account == account:
                series.discarded.append(moment)
            apply(state, event, recorded.position)
            continue
        if isinstance(event, events.SnapshotSealed):
            marks.update(event.marks)
            if event.stale:
                series.stale.append(moment)
        elif isinstance(event, events.CandleImported):
            marks[event.symbol] = event.close
        pending = moment
    if pending is not None:
        emit(pending)
    return series


def load_series(
    store: EventStore, account: str, *, run_id: str | None = None, quote: str | None = None
) -> EquitySeries:
    """The equity series of ``account`` (only ``run_id``'s events when given)."""
    found = store.query(types=(*MONEY_TYPES, *PRICE_TYPES, *MARKER_TYPES))
    if run_id is not None:
        found = (r for r in found if r.run_id == run_id)
    return equity_series(found, account, quote)


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


PLOT_W, PLOT_H, PAD = 960, 360, 48


def equity_svg(series: EquitySeries) -> str:
    """An SVG line plot of equity, reconciliations as dots, stale spells as bands."""
    rows = series.rows
    if not rows:
        return "<p>No equity to plot: the ledger holds no prices for this account.</p>"
    t0, t1 = rows[0][0].timestamp(), rows[-1][0].timestamp()
    values = [float(r[1]) for r in rows]
    low, high = min(values), max(values)
    if high == low:
        high, low = high + 1, low - 1
    span_t = max(t1 - t0, 1.0)

    def x(moment: datetime) -> float:
        return PAD + (moment.timestamp() - t0) / span_t * (PLOT_W - 2 * PAD)

    def y(value: float) -> float:
        return PLOT_H - PAD - (value - low) / (high - low) * (PLOT_H - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PLOT_W} {PLOT_H}" '
        f'width="{PLOT_W}" height="{PLOT_H}" role="img" aria-label="equity curve">',
        f'<rect width="{PLOT_W}" height="{PLOT_H}" fill="white"/>',
    ]
    band = max((PLOT_W - 2 * PAD) / max(len(rows), 1), 1.5)
    for moment in series.stale:
        parts.append(
            f'<rect x="{x(moment) - band / 2:.1f}" y="{PAD}" width="{band:.1f}" '
            f'height="{PLOT_H - 2 * PAD}" fill="#f5c16c" opacity="0.5">'
            f"<title>stale price {_iso(moment)}</title></rect>"
        )
    points = " ".join(f"{x(r[0]):.1f},{y(float(r[1])):.1f}" for r in rows)
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
    by_time = {r[0]: float(r[1]) for r in rows}
    for moment in series.reconciled:
        value = by_time.get(moment, values[-1])
        parts.append(
            f'<circle cx="{x(moment):.1f}" cy="{y(value):.1f}" r="4" fill="#c0392b">'
            f"<title>reconciled {_iso(moment)}</title></circle>"
        )
    for moment in series.discarded:
        parts.append(
            f'<line x1="{x(moment):.1f}" x2="{x(moment):.1f}" y1="{PAD}" '
            f'y2="{PLOT_H - PAD}" stroke="#000" stroke-dasharray="3,3">'
            f"<title>cycle discarded {_iso(moment)}</title></line>"
        )
    for value in (low, (low + high) / 2, high):
        parts.append(f'<text x="4" y="{y(value) + 4:.1f}" font-size="11">{value:,.2f}</text>')
    parts.append(f'<text x="{PAD}" y="{PLOT_H - 16}" font-size="11">{_iso(rows[0][0])}</text>')
    parts.append(
        f'<text x="{PLOT_W - PAD}" y="{PLOT_H - 16}" font-size="11" '
        f'text-anchor="end">{_iso(rows[-1][0])}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def to_html(series: EquitySeries, title: str) -> str:
    first, last = series.rows[0] if series.rows else None, series.rows[-1] if series.rows else None
    facts = ""
    if first and last:
        facts = (
            f"<p>{len(series.rows):,} time steps from {_iso(first[0])} to {_iso(last[0])}"
            f": equity {first[1]:,.2f} &rarr; {last[1]:,.2f} {html.escape(series.quote)}, "
            f"fees {last[5]:,.2f}, realized PnL {last[4]:,.2f}. "
            f"{len(series.reconciled)} reconciliation(s) (red dots), "
            f"{len(series.discarded)} discarded cycle(s) (dashed lines), "
            f"{len(series.stale)} time step(s) with stale prices (orange bands).</p>"
        )
    table = "".join(
        f"<tr><td>{_iso(r[0])}</td>" + "".join(f"<td>{v}</td>" for v in r[1:]) + "</tr>"
        for r in series.rows[-20:]
    )
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;"
        "text-align:right;font-size:12px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{facts}{equity_svg(series)}"
        f"<h2>Last {min(20, len(series.rows))} time steps</h2><table><tr>{head}</tr>"
        f"{table}</table></body></html>\n"
    )
