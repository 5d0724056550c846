"""The accountant: the portfolio fold, its postings, and the validator's decisions."""

from __future__ import annotations

import copy
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import events
from projections import portfolio
from projections.portfolio import PortfolioState, fold, postings
from projections.validator import ValidatorSettings, validate

D = Decimal
SETTINGS = ValidatorSettings()
CENT = D("0.01")


def deposit(amount: str, asset: str = "USDT") -> events.FundsDeposited:
    return events.FundsDeposited(account="main", asset=asset, amount=D(amount))


def trade(
    side: str, qty: str, price: str, symbol: str = "BTC/USDT", tid: str = "t"
) -> events.TradeExecuted:
    return events.TradeExecuted(
        account="main",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=D(qty),
        price=D(price),
        order_id="o-" + tid,
        trade_id=tid,
    )


def fee(amount: Decimal, asset: str = "USDT", tid: str = "t") -> events.FeeCharged:
    return events.FeeCharged(account="main", trade_id=tid, asset=asset, amount=amount)


@pytest.mark.smoke
def test_average_cost_realized_pnl_fees_and_equity() -> None:
    state = fold(
        "main",
        [
            deposit("10000"),
            trade("buy", "1", "100", "ETH/USDT", "a"),
            fee(D("0.10"), tid="a"),
            trade("buy", "1", "200", "ETH/USDT", "b"),
            fee(D("0.20"), tid="b"),
            trade("sell", "1.5", "300", "ETH/USDT", "c"),
            fee(D("0.45"), tid="c"),
        ],
    )
    assert state.quote == "USDT"
    assert state.positions["ETH/USDT"] == D("0.5")
    assert state.average_cost["ETH/USDT"] == D("150")
    assert state.realized_pnl["USDT"] == D("1.5") * (D("300") - D("150"))
    assert state.fees_paid["USDT"] == D("0.75")
    assert state.cash["USDT"] == D("10000") - 100 - 200 + 450 - D("0.75")
    marks = {"ETH/USDT": D("400")}
    assert state.equity(marks) == state.cash["USDT"] + D("0.5") * 400
    assert state.unrealized_pnl(marks) == D("0.5") * (400 - 150)


def test_a_trade_that_flips_the_side_realizes_then_reopens() -> None:
    state = fold("main", [deposit("1000"), trade("buy", "1", "100"), trade("sell", "3", "110")])
    assert state.positions["BTC/USDT"] == D(-2)
    assert state.realized_pnl["USDT"] == D(10)
    assert state.average_cost["BTC/USDT"] == D(110)


def test_every_money_event_posts_balanced_entries() -> None:
    for event in (deposit("5"), trade("buy", "0.5", "3"), fee(D("0.01"))):
        lines = postings(event)
        assert lines
        for asset in {a for _, a, _ in lines}:
            assert sum(v for _, a, v in lines if a == asset) == 0


def seed_rounding_books(venue_fee: Decimal) -> tuple[PortfolioState, PortfolioState]:
    qty, price = D("0.12346"), D("100000.00")
    exact_fee = qty * price * D("0.001")  # 12.346 at 10 bps
    ledger_fee = exact_fee.quantize(CENT, rounding=ROUND_HALF_EVEN)  # 12.35, as exchanges do
    history = [deposit("100000"), trade("buy", str(qty), str(price))]
    ledger = fold("main", [*history, fee(ledger_fee)])
    venue = fold("main", [*history, fee(venue_fee)])
    return ledger, venue


@pytest.mark.smoke
def test_the_seed_rounding_scenario_is_reconciled_with_its_diff() -> None:
    ledger, venue = seed_rounding_books(venue_fee=D("12.50"))  # the venue says 0.15 more
    marks = {"BTC/USDT": D("100000.00")}
    decision = validate(ledger, venue, marks, settings=SETTINGS, price_steps={"BTC/USDT": CENT})
    assert decision.diff.equity == D("0.15")
    assert decision.diff.epsilon == D("0.02")  # max(0.02, 3 * 0.01 * 0.12346)
    assert decision.outcome == "reconciled"
    assert decision.adjustments == {"USDT": D("-0.15")}
    assert decision.diff.fees == {"USDT": D("-0.15")}
    reconciled = events.PortfolioReconciled(
        account="main", cycle=1, diff=decision.diff.as_dict(), adjustments=decision.adjustments
    )
    portfolio.apply(ledger, reconciled)
    assert ledger.cash == venue.cash  # booked as an event, the books now agree
    assert "equity" in decision.diff.table() and "+0.15" in decision.diff.table()


def test_a_clean_cycle_passes_and_negative_cash_is_discarded_with_its_diff() -> None:
    ledger, venue = seed_rounding_books(venue_fee=D("12.35"))
    marks = {"BTC/USDT": D("100000.00")}
    assert validate(ledger, venue, marks, settings=SETTINGS).outcome == "passed"
    overdrawn = fold("main", [deposit("100"), trade("buy", "1", "150")])
    decision = validate(overdrawn, venue, marks | {"BTC/USDT": D("150")}, settings=SETTINGS)
    assert decision.outcome == "discarded" and "negative cash" in decision.reason
    assert decision.diff.cash  # the diff travels with the discard


def test_a_large_difference_is_discarded_not_reconciled() -> None:
    ledger, venue = seed_rounding_books(venue_fee=D("250"))
    decision = validate(ledger, venue, {"BTC/USDT": D("100000")}, settings=SETTINGS)
    assert decision.outcome == "discarded" and "auto-reconcile limit" in decision.reason


amounts = st.decimals(min_value=D("0.01"), max_value=D("1000"), places=2)
money_events = st.one_of(
    amounts.map(lambda a: deposit(str(a))),
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        amounts,
        amounts,
        st.sampled_from(["BTC/USDT", "ETH/USDT"]),
    ).map(lambda t: trade(t[0], str(t[1] / 100), str(t[2]), t[3])),
    amounts.map(lambda a: fee(a / 100)),
)


@settings(max_examples=200, derandomize=True)
@given(history=st.lists(money_events, max_size=40), cut=st.integers(0, 40))
def test_folds_balance_and_compose(history: list[events.Event], cut: int) -> None:
    whole = fold("main", history)  # raises if any posting were unbalanced
    head = fold("main", history[:cut])
    resumed = fold("main", history[cut:], state=copy.deepcopy(head))
    assert resumed == whole
    marks = {"BTC/USDT": D("50"), "ETH/USDT": D("7")}
    reference = copy.deepcopy(whole)
    decision = validate(whole, reference, marks, settings=SETTINGS)
    if any(v < 0 for v in whole.cash.values()):
        assert decision.outcome == "discarded"  # never commits negative cash
    elif whole.quote is not None and whole.equity(marks) >= 0:
        assert decision.outcome == "passed"


@settings(max_examples=100, derandomize=True)
@given(history=st.lists(money_events, max_size=30), cut=st.integers(0, 30))
def test_a_checkpointed_state_resumes_to_the_full_replay(
    history: list[events.Event], cut: int
) -> None:
    saved = portfolio.encode_state(fold("main", history[:cut]))
    resumed = fold("main", history[cut:], state=portfolio.decode_state(saved))
    assert resumed == fold("main", history)
    assert portfolio.encode_state(resumed) == portfolio.encode_state(fold("main", history))


other_accounts = st.sampled_from(["main", "other"])
wide_money_events = st.one_of(
    money_events,
    st.tuples(other_accounts, amounts).map(
        lambda t: events.FundsWithdrawn(account=t[0], asset="USDT", amount=t[1] / 10)
    ),
    st.tuples(other_accounts, amounts).map(
        lambda t: events.FundsDeposited(account=t[0], asset="ETH", amount=t[1])
    ),
    st.tuples(other_accounts, amounts).map(
        lambda t: events.PortfolioReconciled(
            account=t[0], cycle=1, diff={}, adjustments={"USDT": -t[1] / 1000, "BTC": t[1]}
        )
    ),
    st.tuples(other_accounts, amounts, amounts).map(
        lambda t: events.TradeExecuted(
            account=t[0],
            symbol="ETH/BTC",
            side="sell",
            qty=t[1] / 10,
            price=t[2] / 1000,
            order_id="o",
            trade_id="t",
        )
    ),
    st.tuples(other_accounts, amounts, amounts).map(  # a fill with its fee in one event
        lambda t: events.TradeExecuted(
            account=t[0],
            symbol="ETH/USDT",
            side="buy",
            qty=t[1] / 100,
            price=t[2] / 10,
            order_id="o",
            trade_id="f",
            fee=t[1] / 1000,
            fee_asset="BNB",
        )
    ),
)


@settings(max_examples=200, derandomize=True)
@given(history=st.lists(wide_money_events, max_size=40))
def test_the_fast_fold_equals_booking_postings_line_by_line(history: list[events.Event]) -> None:
    fast, reference = PortfolioState(account="main"), PortfolioState(account="main")
    for position, event in enumerate(history, start=1):
        portfolio.apply(fast, event, position)
        portfolio.apply_postings(reference, event, position)  # sums every posting's balance
    assert fast == reference


@pytest.mark.parametrize("bad", [D("NaN"), D("Infinity")])
def test_an_amount_that_cannot_balance_is_refused_by_both_folds(bad: Decimal) -> None:
    from ledger.errors import BacktestInvariantError

    with_fee = events.TradeExecuted(
        account="main", symbol="ETH/USDT", side="buy", qty=D("1"), price=D("2"),
        order_id="o", trade_id="t", fee=bad, fee_asset="USDT",
    )  # fmt: skip
    for event in (fee(bad), trade("buy", "1", str(bad)), deposit(str(bad)), with_fee):
        for step in (portfolio.apply, portfolio.apply_postings):
            with pytest.raises(BacktestInvariantError, match="do not balance at position 7"):
                step(PortfolioState(account="main"), event, 7)


def test_a_fee_on_its_fill_books_as_a_trade_and_a_fee_charged_do() -> None:
    fill = dict(account="main", symbol="ETH/USDT", side="buy", qty=D("2"), price=D("10"))
    one = events.TradeExecuted(**fill, order_id="o", trade_id="t", fee=D("0.02"), fee_asset="USDT")  # type: ignore[arg-type]
    two = [
        events.TradeExecuted(**fill, order_id="o", trade_id="t"),  # type: ignore[arg-type]
        events.FeeCharged(account="main", trade_id="t", asset="USDT", amount=D("0.02")),
    ]
    start = [deposit("100")]
    together, apart = fold("main", [*start, one]), fold("main", [*start, *two])
    assert together.cash == apart.cash and together.fees_paid == apart.fees_paid
    assert together.cash["USDT"] == D("79.98") and together.fees_paid["USDT"] == D("0.02")


def test_a_fee_without_its_asset_is_refused_at_encode() -> None:
    from ledger.codec import encode_event
    from ledger.errors import ValueOutOfBounds

    fill = dict(account="main", symbol="ETH/USDT", side="buy", qty=D("2"), price=D("10"))
    for half in ({"fee": D("0.02")}, {"fee_asset": "USDT"}):
        event = events.TradeExecuted(**fill, order_id="o", trade_id="t", **half)  # type: ignore[arg-type]
        with pytest.raises(ValueOutOfBounds, match="fee and fee_asset go together"):
            encode_event(event)
