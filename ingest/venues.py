"""Venues: where orders go. ``PaperVenue`` fills against the cycle's snapshot; it keeps its
own balances (booking the exact fee while reporting the rounded one, so it can disagree with
the ledger by a rounding, as a real venue does) and is idempotent per client order id."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Literal, Protocol

import ccxt

from ingest.market import Balance, round_to_step

Side = Literal["buy", "sell"]
BPS = Decimal(10_000)


@dataclass(frozen=True)
class MarketSpec:
    symbol: str
    price_step: Decimal
    qty_step: Decimal
    fee_step: Decimal  # precision of the fee asset (the quote asset here)
    maker_bps: Decimal = Decimal(10)
    taker_bps: Decimal = Decimal(10)

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]


@dataclass(frozen=True)
class OrderIntent:
    account: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: Literal["market", "limit"] = "market"
    price: Decimal | None = None
    intent: str = "trade"  # what the strategy meant (part of the client order id)


@dataclass(frozen=True)
class Fill:
    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True)
class VenueOrder:
    client_order_id: str
    order_id: str
    status: Literal["filled", "open", "rejected"]
    fill: Fill | None = None
    reason: str = ""


class Venue(Protocol):
    name: str

    async def submit(self, order: OrderIntent, client_order_id: str) -> VenueOrder: ...

    async def fetch_order(self, client_order_id: str) -> VenueOrder | None: ...

    async def fetch_balance(self) -> Balance: ...


@dataclass
class PaperVenue:
    name: str
    markets: dict[str, MarketSpec]
    balances: dict[str, Decimal]
    marks: dict[str, Decimal] = field(default_factory=dict)
    # Test hook: the next submissions are applied but their answer is lost (a timeout).
    lose_answers: int = 0
    orders: dict[str, VenueOrder] = field(default_factory=dict)

    def set_marks(self, marks: dict[str, Decimal]) -> None:
        """Fill against this cycle's snapshot."""
        self.marks = dict(marks)

    async def submit(self, order: OrderIntent, client_order_id: str) -> VenueOrder:
        known = self.orders.get(client_order_id)
        if known is not None:  # the same client order id never trades twice
            return known
        result = self._execute(order, client_order_id)
        self.orders[client_order_id] = result
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise ccxt.RequestTimeout(f"{self.name}: no answer to {client_order_id}")
        return result

    async def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        return self.orders.get(client_order_id)

    async def fetch_balance(self) -> Balance:
        total = {a: v for a, v in sorted(self.balances.items())}
        return Balance(free=dict(total), used={a: Decimal(0) for a in total}, total=total)

    def _execute(self, order: OrderIntent, cid: str) -> VenueOrder:
        market = self.markets.get(order.symbol)
        order_id = f"{self.name}-{len(self.orders) + 1}"
        if market is None:
            return VenueOrder(cid, order_id, "rejected", reason=f"unknown symbol {order.symbol}")
        qty = (order.qty / market.qty_step).to_integral_value(ROUND_DOWN) * market.qty_step
        if qty <= 0:
            return VenueOrder(cid, order_id, "rejected",
                              reason=f"quantity {order.qty} is below the step {market.qty_step}")
        mark = self.marks.get(order.symbol)
        if mark is None:
            return VenueOrder(cid, order_id, "rejected", reason="no price for the symbol")
        if order.order_type == "market":
            price, bps = round_to_step(mark, market.price_step), market.taker_bps
        else:
            if order.price is None:
                return VenueOrder(cid, order_id, "rejected", reason="a limit order needs a price")
            price = round_to_step(order.price, market.price_step)
            marketable = price >= mark if order.side == "buy" else price <= mark
            if not marketable:
                return VenueOrder(cid, order_id, "open")
            bps = market.maker_bps
        exact_fee = qty * price * bps / BPS
        fee = (exact_fee / market.fee_step).to_integral_value(ROUND_HALF_UP) * market.fee_step
        cost = qty * price
        if order.side == "buy" and self.balances.get(market.quote, Decimal(0)) < cost + exact_fee:
            return VenueOrder(cid, order_id, "rejected", reason="insufficient funds")
        if order.side == "sell" and self.balances.get(market.base, Decimal(0)) < qty:
            return VenueOrder(cid, order_id, "rejected", reason="insufficient balance")
        sign = 1 if order.side == "buy" else -1
        self.balances[market.base] = self.balances.get(market.base, Decimal(0)) + sign * qty
        self.balances[market.quote] = (self.balances.get(market.quote, Decimal(0))
                                       - sign * cost - exact_fee)
        fill = Fill(f"{order_id}-1", qty, price, fee, market.quote)
        return VenueOrder(cid, order_id, "filled", fill)
