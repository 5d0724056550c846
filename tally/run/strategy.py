"""Strategies: what to trade, decided from one cycle's sealed snapshot and the books.

A strategy is any object with ``decide(view) -> list[OrderIntent]``. It must be a pure
function of what it has been shown (no clock, no global random), so a run reproduces. The
built-in ``Momentum`` buys a symbol whose close is above its moving average by a margin and
sells the whole position when the close falls back below it. Plug in your own with a dotted
path in the configuration (``run.strategy.path: mypackage.module:MyStrategy``); the
configured ``params`` are passed to its constructor as keyword arguments.
"""

from __future__ import annotations

import importlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, Rounded, getcontext
from typing import Any, Protocol

from ingest.venues import MarketSpec, OrderIntent
from ledger.errors import ConfigError
from ledger.market import floor_to_step
from projections.portfolio import PortfolioState


@dataclass(frozen=True)
class CycleView:
    """What a strategy may know in one cycle."""

    account: str
    cycle: int
    time: datetime
    marks: dict[str, Decimal]  # this cycle's sealed marks (fresh and stale)
    fresh: frozenset[str]  # symbols priced fresh this cycle
    books: PortfolioState
    equity: Decimal
    markets: dict[str, MarketSpec]


class Strategy(Protocol):
    def decide(self, view: CycleView) -> list[OrderIntent]: ...


class Momentum:
    """Long-only momentum on closes: enter above the average, leave below it."""

    def __init__(self, window: int = 48, margin: str = "0.01", allocation: str = "0.1") -> None:
        if window < 2:
            raise ConfigError("run.strategy.params.window must be at least 2", value=window)
        self.window = window
        self.margin = Decimal(margin)
        self.allocation = Decimal(allocation)  # share of equity put into one entry
        self._closes: dict[str, deque[Decimal]] = {}
        self._sums: dict[str, Decimal | None] = {}  # each window's exact sum, kept as it moves
        self._unsigned: set[str] = set()  # symbols that had a close <= 0: summed afresh

    def warm_up(self, symbol: str, closes: list[Decimal]) -> None:
        """Closes from before the run (oldest first), so the average is ready at once."""
        self._closes.setdefault(symbol, deque(maxlen=self.window)).extend(closes)
        self._sums[symbol] = _exact_sum(self._closes[symbol])

    def decide(self, view: CycleView) -> list[OrderIntent]:
        intents = []
        for symbol in sorted(view.fresh):  # stale prices are not news: no decision on them
            price = view.marks[symbol]
            average = self.moving_average(symbol, price)
            if average is None:
                continue
            held = view.books.positions.get(symbol, Decimal(0))
            market = view.markets[symbol]
            if held == 0 and price > average * (1 + self.margin):
                budget = min(
                    view.equity * self.allocation,
                    view.books.cash.get(market.quote, Decimal(0)) * Decimal("0.95"),
                )
                qty = floor_to_step(budget / price, market.qty_step)
                if qty > 0:
                    intents.append(OrderIntent(view.account, symbol, "buy", qty, intent="enter"))
            elif held > 0 and price < average:
                intents.append(OrderIntent(view.account, symbol, "sell", held, intent="exit"))
        return intents

    def moving_average(self, symbol: str, close: Decimal) -> Decimal | None:
        """Add ``close`` to ``symbol``'s window; its average once the window is full.

        Always the value of ``sum(window) / len(window)`` in the current decimal context."""
        closes = self._closes.get(symbol)
        if closes is None:
            closes = self._closes[symbol] = deque(maxlen=self.window)
            self._sums[symbol] = Decimal(0)
        total = self._sums[symbol] = _slide(self._sums[symbol], closes, close)
        if close <= 0:  # (a mark never is; the shortcut below holds for positive closes)
            self._unsigned.add(symbol)
        if len(closes) < self.window:
            return None
        if total is not None and symbol not in self._unsigned and _fits(total):
            return total / len(closes)
        return sum(closes, Decimal(0)) / len(closes)


# The window's sum is kept as closes come and go instead of being summed again every cycle
# (48 additions a symbol a cycle), in a context that never rounds: ledger amounts have at
# most 38 digits, so this precision holds any window's sum; the trap is a guard.
_EXACT = Context(prec=100, traps=[Inexact])


def _exact_sum(closes: deque[Decimal]) -> Decimal | None:
    """``sum(closes)`` with nothing rounded, or None if that cannot be had."""
    try:
        total = Decimal(0)
        for close in closes:
            total = _EXACT.add(total, close)
        return total
    except Inexact:
        return None


def _slide(total: Decimal | None, closes: deque[Decimal], price: Decimal) -> Decimal | None:
    """Append ``price`` to the window and return its exact sum (None: sum it afresh)."""
    if total is None:
        closes.append(price)
        return _exact_sum(closes)
    try:
        if len(closes) == closes.maxlen:
            total = _EXACT.subtract(total, closes[0])
        total = _EXACT.add(total, price)
    except Inexact:
        closes.append(price)
        return _exact_sum(closes)
    closes.append(price)
    return total


def _fits(total: Decimal) -> bool:
    """Whether ``total``'s digits as kept, down to the smallest place any addend had, are no
    more than the current context's precision (else ``plus`` would round them: ``Rounded``).

    Then summing the window afresh, from ``Decimal(0)`` in the window's order, rounds
    nothing on the way: every partial sum of these positive closes is no larger and no
    finer. So ``total / n`` is the very value ``sum(closes) / n`` gives, and the decisions
    are the same.
    """
    precision = getcontext().prec
    check = _FITS.get(precision)
    if check is None:
        check = _FITS[precision] = Context(prec=precision, traps=[Rounded])
    try:
        check.plus(total)
    except Rounded:
        return False
    return True


_FITS: dict[int, Context] = {}  # a trapping context per precision met


# Built-in strategies by the names a configuration may give them. ``runs.strategy`` was the
# built-in's module before the shell became one package: the default configuration and every
# run recorded since keep that name (it is part of their run id), so it stays an alias here
# rather than a module.
BUILTIN: dict[str, type] = {
    "runs.strategy:Momentum": Momentum,
    "tally.run.strategy:Momentum": Momentum,
}


def load_strategy(path: str, params: dict[str, Any]) -> Strategy:
    """Build the strategy named by ``module:Class`` (or ``module.Class``) with ``params``."""
    hint = (
        "pass --strategy module:Class (or set run.strategy.path), e.g. "
        "tally.run.strategy:Momentum; a module of your own also needs --strategy-path DIR"
    )
    factory = BUILTIN.get(path)
    if factory is None:
        module_name, sep, attribute = path.partition(":")
        if not sep:
            module_name, _, attribute = path.rpartition(".")
        if not module_name or not attribute:
            raise ConfigError(f"not a strategy path: {path!r}", hint=hint, key="run.strategy.path")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"cannot load strategy {path!r}: {e}", hint=hint, key="run.strategy.path"
            ) from e
    try:
        strategy = factory(**params)
    except Exception as e:  # a strategy's constructor is the user's code: any refusal
        said = str(e) or type(e).__name__
        if isinstance(e, ArithmeticError):  # decimal.InvalidOperation says only its class
            said = f"a parameter is not a number ({type(e).__name__})"
        raise ConfigError(
            f"strategy {path!r} refused its params {params!r}: {said}",
            hint="fix run.strategy.params to match its constructor (numbers as '0.01')",
            key="run.strategy.params",
        ) from e
    if not callable(getattr(strategy, "decide", None)):
        raise ConfigError(
            f"{path!r} has no decide(view) method", hint=hint, key="run.strategy.path"
        )
    return strategy  # type: ignore[no-any-return]
