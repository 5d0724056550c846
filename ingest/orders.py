"""Orders that cannot double-fill, and per-account sequence numbers.

The client order id is derived from (run, cycle, symbol, intent): submitting the same intent
twice gives the same id, which the venue accepts once. When a submission's outcome is
unknown (a timeout), the order is recorded as unknown, and before anything is resubmitted
the venue is asked what became of it. Nothing is guessed.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from hashlib import sha256

from ingest.provider_errors import provider_error
from ingest.venues import OrderIntent, Venue, VenueOrder
from ledger import events

Emit = Callable[[str, events.Event], None]


def client_order_id(run_id: str, cycle: int, symbol: str, intent: str) -> str:
    """A deterministic id for one intent: the same inputs always give the same id."""
    digest = sha256(f"{run_id}|{cycle}|{symbol}|{intent}".encode()).hexdigest()
    return f"t{digest[:31]}"  # 32 characters: within every major venue's limit


@dataclass
class OrderStatus:
    """A fold over order events: what the ledger knows of each client order id."""

    status: dict[str, str] = field(default_factory=dict)  # submitted|unknown|rejected|filled
    nonces: dict[str, int] = field(default_factory=dict)

    def apply(self, event: events.Event) -> None:
        match event:
            case events.OrderSubmitted(client_order_id=cid, nonce=nonce):
                self.status[cid] = "submitted"
                self.nonces[cid] = nonce
            case events.OrderOutcomeUnknown(client_order_id=cid):
                self.status[cid] = "unknown"
            case events.OrderRejected(client_order_id=cid):
                self.status[cid] = "rejected"
            case events.TradeExecuted(client_order_id=cid) if cid:
                self.status[cid] = "filled"

    def next_nonce(self) -> int:
        return max(self.nonces.values(), default=0) + 1


class NonceAllocator:
    """Monotonic sequence numbers for one account, safe under concurrent tasks.

    A number whose submission failed before the venue took it is handed out again (lowest
    first); a confirmed one never is.
    """

    def __init__(self, start: int = 1) -> None:
        self._next = start
        self._free: list[int] = []
        self._pending: set[int] = set()
        self.confirmed = 0
        self._lock = asyncio.Lock()

    def recover(self, from_ledger: int, from_venue: int | None = None) -> None:
        """Resume after a restart: above everything the ledger (or the venue) has seen."""
        self._next = max(self._next, from_ledger, (from_venue or 0) + 1)

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[int]:
        async with self._lock:
            number = heapq.heappop(self._free) if self._free else self._next
            if number == self._next:
                self._next += 1
            self._pending.add(number)
        try:
            yield number
        except BaseException:
            async with self._lock:
                self._pending.discard(number)
                heapq.heappush(self._free, number)
            raise
        async with self._lock:
            self._pending.discard(number)
            self.confirmed += 1

    def stats(self) -> dict[str, int]:
        return {
            "next": min([*self._free, self._next]),
            "pending": len(self._pending),
            "confirmed": self.confirmed,
        }


class SubmissionFailed(Exception):
    """The venue refused before taking the order: its nonce may be reused."""


@dataclass
class OrderExecutor:
    venue: Venue
    book: OrderStatus
    nonces: NonceAllocator
    emit: Emit

    def _record(self, stream: str, event: events.Event) -> None:
        self.emit(stream, event)
        self.book.apply(event)

    async def execute(self, order: OrderIntent, *, run_id: str, cycle: int) -> str:
        """Place an intent at most once; return what became of it."""
        cid = client_order_id(run_id, cycle, order.symbol, order.intent)
        stream = f"orders/{order.account}"
        known = self.book.status.get(cid)
        if known in ("filled", "submitted", "rejected"):
            return known  # never twice
        if known == "unknown":
            found = await self.venue.fetch_order(cid)  # ask, never guess
            if found is not None:
                self._outcome(order, found, stream)
                return self.book.status[cid]
        try:
            async with self.nonces.reserve() as nonce:
                self._record(
                    stream,
                    events.OrderSubmitted(
                        account=order.account,
                        client_order_id=cid,
                        symbol=order.symbol,
                        side=order.side,
                        order_type=order.order_type,
                        qty=order.qty,
                        price=order.price,
                        nonce=nonce,
                    ),
                )
                try:
                    result = await self.venue.submit(order, cid)
                except Exception as raw:
                    error = provider_error(raw, source=self.venue.name, endpoint="order")
                    if error.retryable:  # it may or may not have reached the venue
                        self._record(
                            stream,
                            events.OrderOutcomeUnknown(
                                account=order.account, client_order_id=cid, reason=error.message
                            ),
                        )
                        return "unknown"
                    self._record(
                        stream,
                        events.OrderRejected(
                            account=order.account,
                            client_order_id=cid,
                            reason=error.message,
                            retryable=False,
                        ),
                    )
                    raise SubmissionFailed(error.message) from raw
        except SubmissionFailed:
            return "rejected"
        self._outcome(order, result, stream)
        return self.book.status[cid]

    async def resolve(self, submitted: events.OrderSubmitted) -> str:
        """Ask the venue about an order whose outcome is unknown (after a restart) and record
        what it says; an order it does not know, or no answer, stays unknown."""
        cid = submitted.client_order_id
        try:
            found = await self.venue.fetch_order(cid)
        except Exception:  # no answer: still unknown, asked again before it is resubmitted
            return "unknown"
        if found is None:
            return "unknown"
        order = OrderIntent(
            submitted.account,
            submitted.symbol,
            submitted.side,
            submitted.qty,
            submitted.order_type,
            submitted.price,
        )
        self._outcome(order, found, f"orders/{submitted.account}")
        return self.book.status.get(cid, "unknown")

    def _outcome(self, order: OrderIntent, result: VenueOrder, stream: str) -> None:
        cid = result.client_order_id
        if result.status == "rejected":
            self._record(
                stream,
                events.OrderRejected(
                    account=order.account,
                    client_order_id=cid,
                    reason=result.reason,
                    retryable=False,
                ),
            )
        elif result.status == "filled" and result.fill is not None:
            fill = result.fill
            self._record(
                f"portfolio/{order.account}",
                events.TradeExecuted(
                    account=order.account,
                    symbol=order.symbol,
                    side=order.side,
                    qty=fill.qty,
                    price=fill.price,
                    order_id=result.order_id,
                    trade_id=fill.trade_id,
                    client_order_id=cid,
                ),
            )
            self._record(
                f"portfolio/{order.account}",
                events.FeeCharged(
                    account=order.account,
                    trade_id=fill.trade_id,
                    asset=fill.fee_asset,
                    amount=fill.fee,
                ),
            )
