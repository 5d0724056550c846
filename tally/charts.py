"""The interactive results page: ``tally report html``.

One self-contained HTML file (plotly's JavaScript inline, so it opens offline): per pair,
its candles with the account's buys and sells on them; beneath, equity with the drawdown
under it, and the moments a trader asks about marked on the equity curve (stale prices,
reconciliations, discarded cycles, alerts). With a freqtrade export, freqtrade's own
per-candle wallet is drawn beside Tally's equity. Zoom and hover are plotly's.

Candles are stamped at their open and span ``[open, open + timeframe)``; a fill is drawn at
its own time, so a fill at a candle's open sits on that candle. Equity rows are stamped at
the close of the candle they end (see ``projections.reports``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.errors import InputError
from ledger.recorded import RecordedEvent
from tally.amounts import show

if TYPE_CHECKING:
    import pandas as pd

    from ledger.store import EventStore
    from projections.reports import EquitySeries

BUY, SELL = "#00c853", "#ff1744"


@dataclass
class Fill:
    at: datetime
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    position: int


@dataclass
class ChartData:
    """Everything the page shows, gathered from the ledger (and the run's own inputs)."""

    title: str
    series: EquitySeries
    quote_step: Decimal | None
    fills: list[Fill]
    candles: dict[str, pd.DataFrame]  # symbol -> OHLC frame indexed by open time
    closes: dict[str, list[tuple[datetime, Decimal]]]  # symbol -> marks, when no candles
    alerts: list[tuple[datetime, str]] = field(default_factory=list)
    wallet: pd.Series | None = None  # freqtrade's total_quote per candle


def gather(
    store: EventStore,
    account: str,
    run_id: str | None,
    series: EquitySeries,
    *,
    title: str,
    quote_step: Decimal | None,
    candles: Mapping[str, pd.DataFrame] | None = None,
) -> ChartData:
    """Fills, prices and markers of ``account`` (``run_id``'s only, when given)."""
    wanted = ("TradeExecuted", "CandleImported", "SnapshotSealed", "AlertRaised")
    found: Iterable[RecordedEvent] = store.query(types=wanted)
    if run_id is not None:
        found = (r for r in found if r.run_id == run_id)
    fills: list[Fill] = []
    imported: dict[str, list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]] = {}
    closes: dict[str, list[tuple[datetime, Decimal]]] = {}
    alerts: list[tuple[datetime, str]] = []
    for recorded in found:
        event = recorded.event
        if isinstance(event, events.TradeExecuted):
            if event.account == account:
                at = event.executed_at or recorded.recorded_at
                fills.append(
                    Fill(at, event.symbol, event.side, event.qty, event.price, recorded.position)
                )
        elif isinstance(event, events.CandleImported):
            imported.setdefault(event.symbol, []).append(
                (event.open_time, event.open, event.high, event.low, event.close)
            )
        elif isinstance(event, events.SnapshotSealed):
            for symbol, mark in event.marks.items():
                closes.setdefault(symbol, []).append((recorded.recorded_at, mark))
        elif isinstance(event, events.AlertRaised):
            alerts.append((recorded.recorded_at, f"{event.rule} {event.key}: {event.message}"))
    traded = sorted({f.symbol for f in fills} | set(candles or {}))
    frames = {s: f for s, f in (candles or {}).items() if s in traded}
    for symbol in traded:
        if symbol not in frames and symbol in imported:
            frames[symbol] = _frame(imported[symbol])
    return ChartData(
        title=title,
        series=series,
        quote_step=quote_step,
        fills=sorted(fills, key=lambda f: f.position),
        candles=frames,
        closes={s: closes[s] for s in traded if s not in frames and s in closes},
        alerts=alerts,
    )


def _frame(rows: list[tuple[datetime, Decimal, Decimal, Decimal, Decimal]]) -> pd.DataFrame:
    import pandas as pd

    rows.sort(key=lambda r: r[0])
    frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close"])
    return frame.set_index("timestamp")


def read_wallet(export: Path) -> pd.Series:
    """freqtrade's per-candle wallet value (``total_quote`` summed by ``date``) from its
    export zip, or from a ``*_wallet.feather`` file."""
    import io
    import zipfile

    import pandas as pd

    try:
        if export.suffix == ".zip":
            with zipfile.ZipFile(export) as archive:
                names = [n for n in archive.namelist() if n.endswith("_wallet.feather")]
                if not names:
                    raise InputError(
                        f"{export.name} holds no *_wallet.feather",
                        hint="export with a freqtrade that writes the wallet "
                        "(2024.x or later), or leave --freqtrade out",
                        file=str(export),
                    )
                frame = pd.read_feather(io.BytesIO(archive.read(names[0])))
        else:
            frame = pd.read_feather(export)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(f"cannot read the wallet of {export}: {e}", file=str(export)) from e
    missing = {"date", "total_quote"} - set(frame.columns)
    if missing:
        raise InputError(
            f"the wallet of {export.name} lacks columns {sorted(missing)}", file=str(export)
        )
    return frame.groupby("date")["total_quote"].sum()


def render(data: ChartData) -> str:
    """The page: facts on top, then one plotly figure (pairs, equity, drawdown)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pairs = sorted(set(data.candles) | set(data.closes))
    rows = len(pairs) + 2
    heights = [*([0.9 / max(len(pairs), 1) * 1.6] * len(pairs)), 1.4, 0.6]
    figure = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.02,
        row_heights=heights,
        subplot_titles=[*pairs, f"equity ({data.series.quote})", "drawdown"],
    )
    for row, symbol in enumerate(pairs, start=1):
        _pair_traces(figure, go, data, symbol, row)
    _equity_traces(figure, go, data, rows - 1)
    _drawdown_trace(figure, go, data, rows)
    figure.update_layout(
        height=260 * len(pairs) + 520,
        margin={"l": 60, "r": 20, "t": 40, "b": 30},
        hovermode="x unified",
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"},
        template="plotly_white",
    )
    figure.update_xaxes(rangeslider_visible=False)
    figure.update_xaxes(title_text="UTC", row=rows, col=1)
    body = figure.to_html(full_html=False, include_plotlyjs=True, div_id="tally-report")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(data.title)}</title><style>body{{font-family:sans-serif;"
        "margin:1.5em}p{max-width:70em}</style></head><body>"
        f"<h1>{html.escape(data.title)}</h1>{_facts(data)}{body}</body></html>\n"
    )


def _facts(data: ChartData) -> str:
    rows = data.series.rows
    first, last = rows[0], rows[-1]
    step, quote = data.quote_step, html.escape(data.series.quote)
    buys = sum(1 for f in data.fills if f.side == "buy")
    return (
        f"<p>{len(rows):,} time steps from {_iso(first[0])} to {_iso(last[0])}: equity "
        f"{show(first[1], step)} &rarr; {show(last[1], step)} {quote}, fees "
        f"{show(last[5], step)}, realized PnL {show(last[4], step)}. {buys:,} buys (green "
        f"triangles) and {len(data.fills) - buys:,} sells (red) on the candles. Marked on the "
        f"equity curve: stale-price time steps {len(data.series.stale):,} (orange), "
        f"reconciliations {len(data.series.reconciled):,} (purple), discarded cycles "
        f"{len(data.series.discarded):,} (black), alerts {len(data.alerts):,} (red).</p>"
    )


def _pair_traces(figure: Any, go: Any, data: ChartData, symbol: str, row: int) -> None:
    import pandas as pd

    frame = data.candles.get(symbol)
    if frame is not None:
        figure.add_trace(
            go.Candlestick(
                x=_times(pd.DatetimeIndex(frame.index)),
                open=_floats(frame["open"]),
                high=_floats(frame["high"]),
                low=_floats(frame["low"]),
                close=_floats(frame["close"]),
                name=symbol,
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    else:
        marks = data.closes[symbol]
        figure.add_trace(
            go.Scatter(
                x=_times(m[0] for m in marks),
                y=_floats(m[1] for m in marks),
                name=f"{symbol} marks",
                mode="lines",
                line={"width": 1, "color": "#555"},
                showlegend=False,
            ),
            row=row,
            col=1,
        )
    for side, color, symbol_shape in (("buy", BUY, "triangle-up"), ("sell", SELL, "triangle-down")):
        fills = [f for f in data.fills if f.symbol == symbol and f.side == side]
        if not fills:
            continue
        figure.add_trace(
            go.Scatter(
                x=_times(f.at for f in fills),
                y=_floats(f.price for f in fills),
                mode="markers",
                name=side,
                legendgroup=side,
                showlegend=row == 1,
                marker={
                    "symbol": symbol_shape,
                    "size": 11,
                    "color": color,
                    "line": {"width": 1.5, "color": "#111"},  # apart from the candles' colors
                },
                text=[
                    f"{side} {f.qty} {symbol} @ {f.price} (position {f.position})" for f in fills
                ],
                hoverinfo="text",
            ),
            row=row,
            col=1,
        )


def _equity_traces(figure: Any, go: Any, data: ChartData, row: int) -> None:
    import pandas as pd

    series = data.series
    times = [r[0] for r in series.rows]
    equity = [float(r[1]) for r in series.rows]
    figure.add_trace(
        go.Scatter(
            x=_times(times), y=_floats(equity), name="Tally equity", line={"color": "#1f5fa8"}
        ),
        row=row,
        col=1,
    )
    if data.wallet is not None:
        figure.add_trace(
            go.Scatter(
                x=_times(pd.DatetimeIndex(data.wallet.index)),
                y=_floats(data.wallet),
                name="freqtrade wallet",
                line={"color": "#ff7f0e", "dash": "dot"},
            ),
            row=row,
            col=1,
        )
    by_time = dict(zip(times, equity, strict=True))
    marked: list[tuple[str, list[datetime], str, str, list[str] | None]] = [
        ("stale price", series.stale, "#f5a623", "square", None),
        ("reconciled", series.reconciled, "#7b3294", "circle", None),
        ("cycle discarded", series.discarded, "#000000", "x", None),
        ("alert", [a[0] for a in data.alerts], "#d7191c", "diamond", [a[1] for a in data.alerts]),
    ]
    for name, moments, color, shape, texts in marked:
        if not moments:
            continue
        figure.add_trace(
            go.Scatter(
                x=_times(moments),
                y=[_nearest(by_time, times, m) for m in moments],
                mode="markers",
                name=name,
                marker={"color": color, "symbol": shape, "size": 8},
                text=texts,
            ),
            row=row,
            col=1,
        )


def _drawdown_trace(figure: Any, go: Any, data: ChartData, row: int) -> None:
    peak: Decimal | None = None
    shares: list[float] = []
    for r in data.series.rows:
        peak = r[1] if peak is None or r[1] > peak else peak
        shares.append(float((r[1] - peak) / peak * 100) if peak else 0.0)
    figure.add_trace(
        go.Scatter(
            x=_times(r[0] for r in data.series.rows),
            y=_floats(shares),
            name="drawdown %",
            fill="tozeroy",
            line={"color": "#c0392b", "width": 1},
        ),
        row=row,
        col=1,
    )


def _nearest(by_time: dict[datetime, float], times: list[datetime], moment: datetime) -> float:
    """The equity at ``moment``, else at the last row before it (markers sit on the curve)."""
    if moment in by_time:
        return by_time[moment]
    import bisect

    index = max(bisect.bisect_right(times, moment) - 1, 0)
    return by_time[times[index]] if times else 0.0


def _floats(values: Iterable[Any]) -> Any:
    """A float array: plotly takes numpy arrays whole (and writes them as typed arrays),
    where a list is validated element by element."""
    import numpy as np

    return np.fromiter((float(v) for v in values), dtype=float)


def _times(values: Any) -> Any:
    """UTC times as a plain datetime64 array (a zone-aware one is an array of objects that
    plotly copies one by one); the axes say UTC."""
    import pandas as pd

    index = pd.DatetimeIndex(values if isinstance(values, pd.Index) else list(values))
    return (index.tz_convert(None) if index.tz is not None else index).to_numpy()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
