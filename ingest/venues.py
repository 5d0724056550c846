"""Venues: where orders go. ``PaperVenue`` fills against the cycle's snapshot; it keeps its
own balances (booking the exact fee while reporting the rounded one, so it can disagree with
the ledger by a rounding, as a real venue does) and is idempotent per client order id."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol

from ingest.market import Balance, to_decimal
from ingest.provider_errors import provider_error, simulated_error
from ledger.market import floor_to_step, round_to_step, split_symbol

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
        return split_symbol(self.symbol)[0]

    @property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]


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


# Orders a paper venue remembers. A client order id is asked again only within its own
# cycle (a retry, or the question after a lost answer), and the order executor never
# resubmits one the ledger has seen; keeping every order held about 600 bytes an order for
# the whole run: a year of 50 pairs places some 140,000.
ORDERS_KEPT_MAX = 10_000


@dataclass
class PaperVenue:
    name: str
    markets: dict[str, MarketSpec]
    balances: dict[str, Decimal]
    marks: dict[str, Decimal] = field(default_factory=dict)
    # Test hook: the next submissions are applied but their answer is lost (a timeout).
    lose_answers: int = 0
    # The latest orders by client order id (at most ORDERS_KEPT_MAX), and how many were
    # ever placed (the next order id's number).
    orders: dict[str, VenueOrder] = field(default_factory=dict)
    placed: int = 0

    def set_marks(self, marks: dict[str, Decimal]) -> None:
        """Fill against this cycle's snapshot."""
        self.marks = dict(marks)

    async def submit(self, order: OrderIntent, client_order_id: str) -> VenueOrder:
        known = self.orders.get(client_order_id)
        if known is not None:  # the same client order id never trades twice
            return known
        result = self._execute(order, client_order_id)
        self.placed += 1
        self.orders[client_order_id] = result
        if len(self.orders) > ORDERS_KEPT_MAX:
            del self.orders[next(iter(self.orders))]  # the oldest
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise simulated_error(
                "RequestTimeout",
                f"{self.name}: no answer to {client_order_id}",
                source=self.name,
                endpoint="order",
            )
        return result

    async def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        return self.orders.get(client_order_id)

    async def fetch_balance(self) -> Balance:
        total = {a: v for a, v in sorted(self.balances.items())}
        return Balance(free=dict(total), used={a: Decimal(0) for a in total}, total=total)

    def _execute(self, order: OrderIntent, cid: str) -> VenueOrder:
        market = self.markets.get(order.symbol)
        order_id = f"{self.name}-{self.placed + 1}"
        if market is None:
            return VenueOrder(cid, order_id, "rejected", reason=f"unknown symbol {order.symbol}")
        qty = floor_to_step(order.qty, market.qty_step)
        if qty <= 0:
            return VenueOrder(
                cid,
                order_id,
                "rejected",
                reason=f"quantity {order.qty} is below the step {market.qty_step}",
            )
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
        self.balances[market.quote] = (
            self.balances.get(market.quote, Decimal(0)) - sign * cost - exact_fee
        )
        fill = Fill(f"{order_id}-1", qty, price, fee, market.quote)
        return VenueOrder(cid, order_id, "filled", fill)


@dataclass(frozen=True)
class VenueTrade:
    """A fill as the venue reports it (``fetch_my_trades``)."""

    symbol: str
    side: Side
    order_id: str
    fill: Fill


class CcxtVenue:
    """A `Venue` over a ccxt exchange: orders carry the client order id; ccxt's errors are
    translated at this boundary."""

    def __init__(self, exchange: Any, name: str | None = None) -> None:
        from ingest.ccxt_source import CcxtSource

        self.exchange = exchange
        self.name = name or str(exchange.id)
        self._source = CcxtSource(exchange, self.name)

    async def submit(self, order: OrderIntent, client_order_id: str) -> VenueOrder:
        raw = await self._call(
            "order",
            lambda: self.exchange.create_order(
                order.symbol,
                order.order_type,
                order.side,
                str(order.qty),
                None if order.price is None else str(order.price),
                {"clientOrderId": client_order_id},
            ),
        )
        return _venue_order(raw, client_order_id)

    async def fetch_order(self, client_order_id: str) -> VenueOrder | None:
        """Look an order up by its client order id (support for this varies by venue)."""
        import ccxt  # loaded already: the exchange is ccxt's

        try:
            raw = await self.exchange.fetch_order(
                client_order_id, None, {"clientOrderId": client_order_id}
            )
        except ccxt.OrderNotFound:
            return None
        except Exception as e:
            raise provider_error(e, source=self.name, endpoint="order") from e
        return _venue_order(raw, client_order_id)

    async def fetch_my_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None
    ) -> list[VenueTrade]:
        rows = await self._call(
            "trades", lambda: self.exchange.fetch_my_trades(symbol, since, limit)
        )
        return [_venue_trade(row) for row in rows]

    async def fetch_balance(self) -> Balance:
        return await self._source.fetch_balance()

    async def _call(self, endpoint: str, call: Any) -> Any:
        return await self._source.call(endpoint, None, call)


def _venue_order(raw: dict[str, Any], client_order_id: str) -> VenueOrder:
    status = raw.get("status")
    order_id = str(raw.get("id"))
    filled = to_decimal(raw.get("filled")) or Decimal(0)
    if status in ("canceled", "rejected", "expired") and not filled:
        return VenueOrder(client_order_id, order_id, "rejected", reason=str(status))
    if status == "closed" and filled > 0:
        price = to_decimal(raw.get("average")) or to_decimal(raw.get("price")) or Decimal(0)
        fee = raw.get("fee") or {}
        return VenueOrder(
            client_order_id,
            order_id,
            "filled",
            Fill(
                f"{order_id}-fill",
                filled,
                price,
                to_decimal(fee.get("cost")) or Decimal(0),
                str(fee.get("currency") or ""),
            ),
        )
    # Accepted, fill not known yet (a venue that answers with an id only, as kraken does):
    # the fills arrive through fetch_my_trades.
    return VenueOrder(client_order_id, order_id, "open")


def _venue_trade(row: dict[str, Any]) -> VenueTrade:
    fee = row.get("fee") or {}
    fill = Fill(
        str(row["id"]),
        to_decimal(row["amount"]) or Decimal(0),
        to_decimal(row["price"]) or Decimal(0),
        to_decimal(fee.get("cost")) or Decimal(0),
        str(fee.get("currency") or ""),
    )
    return VenueTrade(str(row["symbol"]), row["side"], str(row.get("order")), fill)
