"""Orders that cannot double-fill, nonces, and the paper venue's arithmetic."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import ccxt
import pytest

from ingest.orders import NonceAllocator, OrderExecutor, OrderStatus, client_order_id
from ingest.venues import MarketSpec, OrderIntent, PaperVenue, VenueOrder
from ledger import events

D = Decimal
BTC = MarketSpec("BTC/USDT", price_step=D("0.01"), qty_step=D("0.00001"), fee_step=D("0.01"))


def venue(usdt: str = "100000") -> PaperVenue:
    paper = PaperVenue("paper", {"BTC/USDT": BTC}, {"USDT": D(usdt)})
    paper.set_marks({"BTC/USDT": D("100000.004")})
    return paper


def executor(paper: PaperVenue) -> tuple[OrderExecutor, list[events.Event]]:
    log: list[events.Event] = []
    return OrderExecutor(paper, OrderStatus(), NonceAllocator(), lambda _s, e: log.append(e)), log


BUY = OrderIntent(
    account="main", symbol="BTC/USDT", side="buy", qty=D("0.123456789"), intent="enter"
)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def trades(log: list[events.Event]) -> list[events.TradeExecuted]:
    return [e for e in log if isinstance(e, events.TradeExecuted)]


@pytest.mark.smoke
def test_the_paper_venue_rounds_explicitly_and_charges_rounded_fees() -> None:
    paper = venue()
    result = run(paper.submit(BUY, "c1"))
    assert isinstance(result, VenueOrder) and result.fill is not None
    fill = result.fill
    assert fill.qty == D("0.12345")  # rounded down to the quantity step
    assert fill.price == D("100000.00")  # rounded to the price step
    assert fill.fee == D("12.35")  # 12.345 at 10 bps, rounded to the fee asset's cent
    # The venue books the exact fee: it disagrees with the ledger by a rounding.
    assert paper.balances["USDT"] == D("100000") - D("12345.00000") - D("12.345")


def test_the_same_intent_twice_trades_once() -> None:
    paper = venue()
    run_exec, log = executor(paper)
    assert run(run_exec.execute(BUY, run_id="r", cycle=3)) == "filled"
    assert run(run_exec.execute(BUY, run_id="r", cycle=3)) == "filled"
    assert len(trades(log)) == 1 and len(paper.orders) == 1
    assert client_order_id("r", 3, "BTC/USDT", "enter") == trades(log)[0].client_order_id


def test_a_paper_venue_remembers_its_latest_orders_and_keeps_counting_their_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingest import venues

    monkeypatch.setattr(venues, "ORDERS_KEPT_MAX", 3)
    paper = venue()
    ids = [run(paper.submit(BUY, f"c{i}")).order_id for i in range(5)]
    assert ids == [f"{paper.name}-{i}" for i in range(1, 6)]  # as if it held every order
    assert list(paper.orders) == ["c2", "c3", "c4"] and paper.placed == 5
    assert run(paper.fetch_order("c0")) is None  # forgotten
    again = run(paper.submit(BUY, "c4"))  # a recent one still trades once
    assert again.order_id == ids[4] and paper.placed == 5


def test_a_lost_answer_is_resolved_by_asking_the_venue_never_by_resubmitting() -> None:
    paper = venue()
    paper.lose_answers = 1  # the venue fills the order, the answer times out
    run_exec, log = executor(paper)
    assert run(run_exec.execute(BUY, run_id="r", cycle=1)) == "unknown"
    assert isinstance(log[-1], events.OrderOutcomeUnknown) and not trades(log)
    assert run(run_exec.execute(BUY, run_id="r", cycle=1)) == "filled"  # looked up
    assert len(trades(log)) == 1 and len(paper.orders) == 1
    assert sum(isinstance(e, events.OrderSubmitted) for e in log) == 1


def test_after_a_restart_an_unknown_order_is_resolved_by_lookup_before_anything_else() -> None:
    paper = venue()
    paper.lose_answers = 1
    first, log = executor(paper)
    assert run(first.execute(BUY, run_id="r", cycle=1)) == "unknown"
    # A successor knows only the events: it folds them and asks about the unknown order.
    book = OrderStatus()
    for event in log:
        book.apply(event)
    (submitted,) = [e for e in log if isinstance(e, events.OrderSubmitted)]
    assert book.status[submitted.client_order_id] == "unknown"
    after: list[events.Event] = []
    successor = OrderExecutor(paper, book, NonceAllocator(), lambda _s, e: after.append(e))
    assert run(successor.resolve(submitted)) == "filled"
    assert [type(e).__name__ for e in after] == ["TradeExecuted", "FeeCharged"]
    assert len(paper.orders) == 1  # asked, never resubmitted
    # An order the venue does not know stays unknown (nothing guessed).
    ghost = events.OrderSubmitted(
        account="main",
        client_order_id="t-ghost",
        symbol="BTC/USDT",
        side="buy",
        order_type="market",
        qty=D("1"),
        nonce=9,
    )
    assert run(successor.resolve(ghost)) == "unknown" and len(after) == 2


class DropsRequests(PaperVenue):
    """A venue that times out before taking the order (the first time)."""

    dropped: int = 1

    async def submit(self, order: OrderIntent, client_order_id: str) -> VenueOrder:
        if self.dropped:
            self.dropped -= 1
            raise ccxt.RequestTimeout("connection reset before the request was sent")
        return await super().submit(order, client_order_id)


def test_an_order_the_venue_never_got_is_resubmitted_once() -> None:
    paper = DropsRequests("paper", {"BTC/USDT": BTC}, {"USDT": D("100000")})
    paper.set_marks({"BTC/USDT": D("100000")})
    run_exec, log = executor(paper)
    assert run(run_exec.execute(BUY, run_id="r", cycle=1)) == "unknown"
    assert run(run_exec.execute(BUY, run_id="r", cycle=1)) == "filled"  # asked: not there
    assert len(trades(log)) == 1


def test_rejections_are_recorded_with_their_reason() -> None:
    run_exec, log = executor(venue(usdt="10"))
    assert run(run_exec.execute(BUY, run_id="r", cycle=1)) == "rejected"
    rejected = [e for e in log if isinstance(e, events.OrderRejected)]
    assert rejected and "insufficient funds" in rejected[0].reason
    odd = OrderIntent(account="main", symbol="DOGE/USDT", side="buy", qty=D(1), intent="x")
    assert run(run_exec.execute(odd, run_id="r", cycle=1)) == "rejected"


def test_nonces_are_unique_monotonic_reused_after_failure_and_recovered() -> None:
    allocator = NonceAllocator()

    async def use(fail: bool) -> int:
        async with allocator.reserve() as number:
            await asyncio.sleep(0)
            if fail:
                raise RuntimeError("not sent")
            return number

    async def many() -> list[int]:
        results = await asyncio.gather(*(use(i == 2) for i in range(6)), return_exceptions=True)
        return [r for r in results if isinstance(r, int)]

    got = asyncio.run(many())
    assert len(got) == len(set(got)) == 5
    assert allocator.stats() == {"next": 3, "pending": 0, "confirmed": 5}  # 3 failed: reused
    assert asyncio.run(use(False)) == 3
    assert asyncio.run(use(False)) == 7
    status = OrderStatus()
    status.apply(
        events.OrderSubmitted(
            account="main",
            client_order_id="c",
            symbol="BTC/USDT",
            side="buy",
            order_type="market",
            qty=D(1),
            nonce=41,
        )
    )
    restarted = NonceAllocator()
    restarted.recover(status.next_nonce(), from_venue=44)
    assert asyncio.run(use_with(restarted)) == 45


async def use_with(allocator: NonceAllocator) -> int:
    async with allocator.reserve() as number:
        return number


def test_a_limit_order_that_does_not_cross_stays_open() -> None:
    paper = venue()
    limit = OrderIntent(
        account="main",
        symbol="BTC/USDT",
        side="buy",
        qty=D("0.1"),
        order_type="limit",
        price=D("90000"),
        intent="bid",
    )
    result = run(paper.submit(limit, "c2"))
    assert isinstance(result, VenueOrder) and result.status == "open" and result.fill is None
