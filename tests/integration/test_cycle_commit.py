"""A cycle's trades are committed atomically with their validation outcome, on a real
ledger; discards are never silent, and the venue's side still shows up afterwards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ingest.orders import NonceAllocator, OrderExecutor, OrderStatus
from ingest.venues import MarketSpec, OrderIntent, PaperVenue
from ledger import events
from ledger.recorded import RecordedEvent
from ledger.store import EventStore
from projections import portfolio
from projections.errors import BreakerBoard, ErrorTracker
from projections.reconciliation import reconcile, state_from_balances
from projections.validator import ValidatorSettings
from tally.run.commit import commit_cycle

D = Decimal
SETTINGS = ValidatorSettings()
BTC = MarketSpec("BTC/USDT", price_step=D("0.01"), qty_step=D("0.00001"), fee_step=D("0.01"))
MARKS = {"BTC/USDT": D("100000.00")}


def funded(store: EventStore, usdt: str) -> tuple[PaperVenue, portfolio.PortfolioState]:
    store.append(
        "portfolio/main",
        [events.FundsDeposited(account="main", asset="USDT", amount=D(usdt))],
        expected_version=0,
    )
    paper = PaperVenue("paper", {"BTC/USDT": BTC}, {"USDT": D(usdt)})
    paper.set_marks(MARKS)
    return paper, portfolio.rebuild(store, checkpoint=False)


def place(paper: PaperVenue, qty: str, cycle: int) -> list[tuple[str, events.Event]]:
    staged: list[tuple[str, events.Event]] = []
    executor = OrderExecutor(
        paper, OrderStatus(), NonceAllocator(), lambda s, e: staged.append((s, e))
    )
    order = OrderIntent(account="main", symbol="BTC/USDT", side="buy", qty=D(qty), intent="in")
    asyncio.run(executor.execute(order, run_id="r", cycle=cycle))
    return staged


def venue_view(paper: PaperVenue) -> portfolio.PortfolioState:
    return state_from_balances("main", paper.balances, quote="USDT", symbols=["BTC/USDT"])


def test_a_clean_cycle_commits_with_validation_passed(store: EventStore) -> None:
    paper, books = funded(store, "100000")
    staged = place(paper, "0.12346", cycle=1)
    decision = commit_cycle(
        store,
        account="main",
        cycle=1,
        run_id="r",
        staged=staged,
        books=books,
        reference=venue_view(paper),
        marks=MARKS,
        settings=SETTINGS,
        price_steps={"BTC/USDT": D("0.01")},
    )
    assert decision.outcome == "passed"  # the venue's exact fee is 0.004 off: a rounding
    kinds = [r.type for r in store.read_all()]
    assert kinds[-3:] == ["TradeExecuted", "FeeCharged", "ValidationPassed"]
    assert books == portfolio.rebuild(store, checkpoint=False)  # books advanced to the ledger


def test_the_seed_rounding_case_is_reconciled_and_booked(store: EventStore) -> None:
    paper, books = funded(store, "100000")
    staged = place(paper, "0.12346", cycle=1)
    paper.balances["USDT"] -= D("0.15")  # the venue charged 0.15 more than the fill said
    decision = commit_cycle(
        store,
        account="main",
        cycle=1,
        run_id="r",
        staged=staged,
        books=books,
        reference=venue_view(paper),
        marks=MARKS,
        settings=SETTINGS,
        price_steps={"BTC/USDT": D("0.01")},
    )
    assert decision.outcome == "reconciled"
    last = list(store.read_all())[-1].event
    assert isinstance(last, events.PortfolioReconciled)
    # The venue booked the exact fee (12.346), 0.004 under the ledger's rounded 12.35, and
    # then 0.15 more: it is 0.146 below the ledger.
    assert last.adjustments["USDT"] == D("-0.146")
    assert D(str(last.diff["equity"])) == D("0.146")  # the diff travels in the event
    report = reconcile(
        portfolio.rebuild(store, checkpoint=False),
        "paper",
        paper.balances,
        MARKS,
        settings=SETTINGS,
    )
    assert all(row.delta == 0 for row in report.rows)  # after booking, the books agree


def test_a_discard_commits_only_the_reason_and_the_venue_difference_stays_visible(
    store: EventStore,
) -> None:
    paper, books = funded(store, "100")
    paper.balances["USDT"] = D("100000")  # the venue would fill what the ledger cannot pay
    staged = place(paper, "0.5", cycle=7)
    decision = commit_cycle(
        store,
        account="main",
        cycle=7,
        run_id="r",
        staged=staged,
        books=books,
        reference=venue_view(paper),
        marks=MARKS,
        settings=SETTINGS,
    )
    assert decision.outcome == "discarded" and "negative cash" in decision.reason
    (discarded,) = [r.event for r in store.read_all() if r.type == "CycleDiscarded"]
    assert isinstance(discarded, events.CycleDiscarded) and discarded.cycle == 7
    assert [e["type"] for e in discarded.diff["staged"]] == [
        "OrderSubmitted",
        "TradeExecuted",
        "FeeCharged",
    ]
    assert not [r for r in store.read_all() if r.type == "TradeExecuted"]
    assert books == portfolio.rebuild(store, checkpoint=False)  # books did not move
    # The venue's fill happened whatever the ledger decided: reconciliation shows it.
    report = reconcile(books, "paper", paper.balances, MARKS, settings=SETTINGS)
    assert report.decision.outcome == "discarded"
    rows = {row.asset: row for row in report.rows}
    assert rows["BTC"].venue == D("0.5") and rows["BTC"].ledger == 0
    assert "refused" in report.table() and "BTC" in report.table()


def test_error_and_breaker_views() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(seconds: int, event: events.Event, position: int) -> RecordedEvent:
        return RecordedEvent(
            position,
            "s",
            position,
            type(event).__name__,
            t0 + timedelta(seconds=seconds),
            None,
            None,
            None,
            None,
            event,
        )  # type: ignore[arg-type]

    failed = events.FetchFailed(
        source="x",
        endpoint="ticker",
        symbol="S",
        attempt=1,
        error_class="RequestTimeout",
        retryable=True,
        message="m",
    )
    history = [at(i * 30, failed, i + 1) for i in range(12)] + [
        at(
            400,
            events.CircuitOpened(
                breaker="x:ticker",
                reason="r",
                consecutive_failures=5,
                window_calls=5,
                window_failures=5,
                open_until=t0 + timedelta(seconds=430),
            ),
            13,
        ),
        at(
            401,
            events.CallRejected(
                breaker="x:ticker", symbol="S", open_until=t0 + timedelta(seconds=430)
            ),
            14,
        ),
    ]
    errors, board = ErrorTracker(), BreakerBoard()
    for recorded in history:
        errors.apply(recorded)
        board.apply(recorded)
    assert errors.by_class == {"RequestTimeout": 12}
    assert errors.recent[-1].position == 12
    assert errors.rate_per_minute(t0 + timedelta(seconds=330)) == 10 / 5  # 10 in 5 minutes
    view = board.breakers["x:ticker"]
    assert (view.state, view.calls, view.failures, view.rejected) == ("open", 12, 12, 1)
