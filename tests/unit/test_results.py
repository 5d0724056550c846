"""Round trips and the summary's figures, from fills whose results are known by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import events
from ledger.recorded import RecordedEvent
from projections import results
from projections.reports import EquitySeries

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def recorded(position: int, event: events.Event, hours: float = 0) -> RecordedEvent:
    return RecordedEvent(
        position, "portfolio/a", position, type(event).__name__, T0 + timedelta(hours=hours),
        None, None, None, None, event,  # type: ignore[arg-type]
    )  # fmt: skip


def fill(
    side: str, qty: str, price: str, tid: str, symbol: str = "ETH/USDT"
) -> events.TradeExecuted:
    return events.TradeExecuted(
        account="a", symbol=symbol, side=side, qty=D(qty), price=D(price),  # type: ignore[arg-type]
        order_id=tid, trade_id=tid,
    )  # fmt: skip


def test_a_long_in_two_buys_out_in_two_sells_is_one_trade_with_its_fees() -> None:
    found = [
        recorded(1, fill("buy", "1", "100", "a")),
        recorded(2, events.FeeCharged(account="a", trade_id="a", asset="USDT", amount=D("0.1"))),
        recorded(3, fill("buy", "1", "200", "b"), 1),
        recorded(4, fill("sell", "1.5", "300", "c"), 2),
        recorded(5, fill("sell", "0.5", "100", "d"), 3),
        recorded(6, events.FeeCharged(account="a", trade_id="d", asset="ETH", amount=D("0.01"))),
    ]
    [trip] = results.round_trips(found, "a")
    # Average cost 150: +150 x 1.5 realized, then -50 x 0.5; fees 0.1 and 0.01 ETH at 100.
    assert trip.side == "long" and trip.closed_at == T0 + timedelta(hours=3)
    assert trip.fees == D("1.1") and trip.profit_abs == D("225") - D("25") - D("1.1")
    assert trip.entry_cost == D("300") and trip.qty == D("2")
    assert trip.as_dict()["entry_positions"] == [1, 3] and trip.as_dict()["exit_positions"] == [
        4,
        5,
    ]


def test_a_fill_that_flips_the_side_closes_one_trade_and_opens_the_next() -> None:
    found = [
        recorded(1, fill("buy", "1", "100", "a")),
        recorded(2, fill("sell", "3", "110", "b"), 1),  # closes the long, opens a 2 short
        recorded(3, fill("buy", "2", "100", "c"), 2),  # closes the short at a profit
    ]
    long, short = results.round_trips(found, "a")
    assert (long.side, long.profit_abs, long.closed_at) == (
        "long",
        D("10"),
        T0 + timedelta(hours=1),
    )
    assert (short.side, short.profit_abs, short.qty) == ("short", D("20"), D("2"))
    assert short.opened_at == T0 + timedelta(hours=1)


def test_an_open_position_is_an_open_trade_and_other_accounts_are_left_out() -> None:
    other = events.TradeExecuted(
        account="b", symbol="ETH/USDT", side="buy", qty=D("1"), price=D("1"), order_id="x",
        trade_id="x",
    )  # fmt: skip
    trips = results.round_trips(
        [recorded(1, fill("buy", "1", "100", "a")), recorded(2, other)], "a"
    )
    assert len(trips) == 1 and trips[0].closed_at is None


def series(equities: list[str], hours: float = 24) -> EquitySeries:
    rows = [
        (T0 + timedelta(hours=hours * i), D(e), D(e), D(0), D(0), D(0))
        for i, e in enumerate(equities)
    ]
    return EquitySeries("a", "USDT", rows)


def test_the_drawdown_is_the_largest_fall_from_a_peak_with_its_times() -> None:
    fall, share, peak_at, trough_at = results.max_drawdown(
        series(["100", "120", "90", "130", "117"])
    )
    assert fall == D("30") and share == 0.25
    assert peak_at == T0 + timedelta(days=1) and trough_at == T0 + timedelta(days=2)


def test_the_summary_adds_up_per_pair_and_in_totals() -> None:
    found = [
        recorded(1, fill("buy", "1", "100", "a")),
        recorded(2, fill("sell", "1", "110", "b"), 1),
        recorded(3, fill("buy", "1", "10", "c", "SOL/USDT"), 2),
        recorded(4, fill("sell", "1", "8", "d", "SOL/USDT"), 3),
        recorded(5, fill("buy", "1", "10", "e", "SOL/USDT"), 4),
        recorded(6, fill("sell", "1", "10", "f", "SOL/USDT"), 5),
    ]
    out = results.summary(series(["1000", "1010", "1008", "1020"]), results.round_trips(found, "a"))
    pairs = {p["symbol"]: p for p in out["pairs"]}
    assert pairs["ETH/USDT"]["profit_abs"] == "10" and pairs["SOL/USDT"]["profit_abs"] == "-2"
    assert (pairs["SOL/USDT"]["wins"], pairs["SOL/USDT"]["draws"], pairs["SOL/USDT"]["losses"]) == (
        0,
        1,
        1,
    )
    totals = out["totals"]
    assert totals["trades"] == 3 and totals["profit_abs"] == "8"
    assert totals["profit_factor"] == 5.0  # 10 won against 2 lost
    # freqtrade's expectancy: 1/3 x 10 - 1/3 x 2 = 2.67, shown at the profits' precision (units)
    assert totals["expectancy"] == "3" and totals["expectancy_ratio"] == round((1 + 5) / 3 - 1, 4)
    assert totals["max_drawdown_abs"] == "2" and totals["equity_profit_abs"] == "20"
    assert [d["profit_abs"] for d in out["days"]] == ["0", "10", "-2", "12"]
    daily = [0.0, 0.01, -2 / 1010, 12 / 1008]
    mean = sum(daily) / 4
    deviation = (sum((r - mean) ** 2 for r in daily) / 4) ** 0.5
    assert totals["sharpe"] == round(mean / deviation * 365**0.5, 4)


def candle(open_hours: float, close: str) -> events.CandleImported:
    price = D(close)
    return events.CandleImported(
        symbol="ETH/USDT", timeframe="1h", open_time=T0 + timedelta(hours=open_hours),
        open=price, high=price, low=price, close=price, volume=D(1),
    )  # fmt: skip


def test_a_fill_at_a_candles_open_counts_in_that_candle_not_the_one_closing_then() -> None:
    from projections.reports import equity_series

    bought = events.TradeExecuted(
        account="a", symbol="ETH/USDT", side="buy", qty=D(1), price=D(100), order_id="o",
        trade_id="t", executed_at=T0 + timedelta(hours=1),  # the second candle's open
    )  # fmt: skip
    found = [
        recorded(1, events.FundsDeposited(account="a", asset="USDT", amount=D(1000)), -1),
        recorded(2, candle(0, "100")),  # [00:00, 01:00) closes at 01:00
        recorded(3, candle(1, "150")),  # [01:00, 02:00) closes at 02:00
        recorded(4, bought),
    ]
    series = equity_series(found, "a")
    # 01:00: the fill is not in the candle that closes then (cash only); 02:00: it is,
    # marked at that candle's close.
    assert [(r[0].hour, r[1], r[3]) for r in series.rows] == [
        (1, D(1000), D(0)),
        (2, D(1050), D(150)),
    ]


def test_a_row_at_midnight_closes_the_day_before() -> None:
    from projections.reports import equity_series

    found = [
        recorded(1, events.FundsDeposited(account="a", asset="USDT", amount=D(1000)), -1),
        recorded(2, candle(22, "100")),
        recorded(3, candle(23, "100")),  # closes at midnight: the last row of day 1
    ]
    out = results.summary(equity_series(found, "a"), [])
    assert [d["date"] for d in out["days"]] == ["2026-01-05"]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 1)), max_size=30
    ),  # (moment in hours, kind) in ledger order
)
def test_a_timeline_is_let_through_sorted_or_refused_never_misordered(
    items: list[tuple[int, int]],
) -> None:
    from projections.reports import _in_market_order, _OutOfOrder

    timeline = [
        (T0 + timedelta(hours=hour), kind, seq, None) for seq, (hour, kind) in enumerate(items)
    ]
    try:
        through = list(_in_market_order(iter(timeline)))  # type: ignore[arg-type]
    except _OutOfOrder:
        # Refused only when an item came after a later moment had arrived.
        assert any(b[0] < a[0] for a, b in itertools.combinations(timeline, 2))
        return
    assert through == sorted(timeline)  # type: ignore[type-var]


def test_a_streamed_series_equals_the_sorted_one_and_reads_again_only_out_of_order() -> None:
    from projections.reports import equity_series, streamed_equity_series

    bought = events.TradeExecuted(
        account="a", symbol="ETH/USDT", side="buy", qty=D(1), price=D(100), order_id="o",
        trade_id="t", executed_at=T0 + timedelta(hours=1),
    )  # fmt: skip
    deposit = events.FundsDeposited(account="a", asset="USDT", amount=D(1000))
    fee = events.FeeCharged(account="a", trade_id="t", asset="USDT", amount=D("0.1"))
    in_order = [
        recorded(1, deposit, -1),
        recorded(2, candle(0, "100")),  # closes at 01:00
        recorded(3, bought),  # at 01:00, the next candle's open
        recorded(4, fee, 5),  # charged when its trade filled (01:00), recorded later
        recorded(5, candle(1, "150")),
        recorded(6, candle(2, "120")),
    ]
    imported = [in_order[0], in_order[1], in_order[4], in_order[5], in_order[2], in_order[3]]
    for found, reads in ((in_order, 1), (imported, 2)):
        asked: list[int] = []

        def read(
            found: list[RecordedEvent] = found, asked: list[int] = asked
        ) -> list[RecordedEvent]:
            asked.append(1)
            return found

        streamed = streamed_equity_series(read, "a")
        assert len(asked) == reads
        assert streamed == equity_series(found, "a")
        assert [(r[0].hour, r[1]) for r in streamed.rows] == [
            (1, D(1000)),
            (2, D("1049.9")),
            (3, D("1019.9")),
        ]
