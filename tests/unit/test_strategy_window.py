"""The built-in strategy keeps its moving window's sum as closes come and go: its decisions
must be exactly those of summing the window afresh every cycle, at any precision."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.venues import MarketSpec, OrderIntent
from projections.portfolio import PortfolioState
from tally.run.strategy import CycleView, Momentum

SYMBOLS = ("AAA/USDT", "BBB/USDT")  # BBB is held (may exit), AAA is not (may enter)
MARKETS = {s: MarketSpec(s, Decimal("1e-30"), Decimal("1e-30"), Decimal("1e-8")) for s in SYMBOLS}


class SummedAfresh:
    """The rule as first written: the window summed from zero at every decision."""

    def __init__(self, window: int, margin: str) -> None:
        self.window, self.margin = window, Decimal(margin)
        self.closes: dict[str, deque[Decimal]] = {}

    def decide(self, view: CycleView) -> list[tuple[str, str]]:
        out = []
        for symbol in sorted(view.fresh):
            price = view.marks[symbol]
            closes = self.closes.setdefault(symbol, deque(maxlen=self.window))
            closes.append(price)
            if len(closes) < self.window:
                continue
            average = sum(closes, Decimal(0)) / len(closes)
            held = view.books.positions.get(symbol, Decimal(0))
            if held == 0 and price > average * (1 + self.margin):
                out.append((symbol, "buy"))
            elif held > 0 and price < average:
                out.append((symbol, "sell"))
        return out


def sides(intents: list[OrderIntent]) -> list[tuple[str, str]]:
    return [(i.symbol, i.side) for i in intents]


# Closes from a few whole units down to many decimal places, so that a window's sum
# sometimes needs more digits than a low precision holds (the path that sums afresh).
closes = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(min_value=1, max_value=10**12),
    st.integers(min_value=0, max_value=20),
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    path=st.lists(closes, min_size=1, max_size=40),
    window=st.integers(min_value=2, max_value=6),
    precision=st.sampled_from([4, 9, 28]),
)
def test_the_kept_window_sum_averages_as_a_fresh_sum(
    path: list[Decimal], window: int, precision: int
) -> None:
    strategy, recent = Momentum(window=window), deque[Decimal](maxlen=window)
    with localcontext() as context:
        context.prec = precision
        for cycle, close in enumerate(path):
            recent.append(close)
            expected = sum(recent, Decimal(0)) / window if len(recent) == window else None
            assert strategy.moving_average("AAA/USDT", close) == expected, f"cycle {cycle}"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    path=st.lists(
        st.builds(
            lambda units, places: Decimal(units).scaleb(-places),
            st.integers(min_value=-1000, max_value=1000),
            st.integers(min_value=0, max_value=1),
        ),
        min_size=3,
        max_size=12,
    ),
    precision=st.sampled_from([2, 3]),
)
def test_closes_of_any_sign_average_as_a_fresh_sum(path: list[Decimal], precision: int) -> None:
    strategy, recent = Momentum(window=3), deque[Decimal](maxlen=3)
    with localcontext() as context:
        context.prec = precision
        for close in path:
            recent.append(close)
            expected = sum(recent, Decimal(0)) / 3 if len(recent) == 3 else None
            assert strategy.moving_average("AAA/USDT", close) == expected


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    paths=st.lists(st.tuples(closes, closes, st.booleans()), min_size=1, max_size=40),
    window=st.integers(min_value=2, max_value=6),
)
def test_the_kept_window_sum_decides_as_a_fresh_sum(
    paths: list[tuple[Decimal, Decimal, bool]], window: int
) -> None:
    books = PortfolioState(account="main", quote="USDT")
    books.positions["BBB/USDT"] = Decimal(1)
    books.cash["USDT"] = Decimal(1000)
    kept, fresh = Momentum(window=window, margin="0"), SummedAfresh(window, "0")
    for cycle, (a, b, both) in enumerate(paths):
        view = CycleView(
            "main",
            cycle,
            datetime(2026, 1, 1, tzinfo=UTC),
            {"AAA/USDT": a, "BBB/USDT": b},
            frozenset(SYMBOLS if both else SYMBOLS[:1]),  # a stale symbol is not shown
            books,
            Decimal(1000),
            MARKETS,
        )
        assert sides(kept.decide(view)) == fresh.decide(view), f"cycle {cycle}"


def test_warm_up_closes_count_in_the_kept_sum() -> None:
    books = PortfolioState(account="main", quote="USDT")
    books.cash["USDT"] = Decimal(1000)
    strategy = Momentum(window=3, margin="0")
    strategy.warm_up("AAA/USDT", [Decimal(1), Decimal(1), Decimal(1)])
    view = CycleView(
        "main", 0, datetime(2026, 1, 1, tzinfo=UTC), {"AAA/USDT": Decimal(2)},
        frozenset({"AAA/USDT"}), books, Decimal(1000), MARKETS,
    )  # fmt: skip
    # Window 1, 1, 2: the average 4/3 is below 2, so it enters (without the warm-up the
    # window would not be full yet and nothing would be decided).
    assert sides(strategy.decide(view)) == [("AAA/USDT", "buy")]
