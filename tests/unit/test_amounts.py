"""Amounts as people read them: at the asset's step, or exact, never an error."""

from __future__ import annotations

from decimal import Decimal as D

from tally.amounts import asset_steps, show


def test_an_amount_is_shown_at_its_step_half_to_even() -> None:
    assert show(D("2.005"), D("0.01")) == "2.00"
    assert show(D("2.015"), D("0.01")) == "2.02"
    assert show(D("1234567.891"), D("0.01")) == "1,234,567.89"
    assert show(D("1234567.891"), D("0.01"), group=False) == "1234567.89"
    assert show(D("-0.001"), D("0.01")) == "0.00"  # never "-0.00"


def test_without_a_step_an_amount_is_exact_and_trimmed() -> None:
    assert show(D("12.5000")) == "12.5"
    assert show(D("1E+3")) == "1,000"
    assert show(D("0.00000001")) == "0.00000001"
    assert show(D("0.1234567890123456")) == "0.123456789012"  # twelve places at most


def test_the_largest_ledger_amounts_are_shown_not_refused() -> None:
    # Below the ledger's bound of 1e18, with places: more digits than Python's default 28.
    big = D("99999999999999999.123456789")
    assert show(big) == "99,999,999,999,999,999.123456789"
    assert show(big, D("1e-8")) == "99,999,999,999,999,999.12345679"


def test_asset_steps_come_from_the_quote_assets_fee_step() -> None:
    markets = {"USDT": {"fee_step": "0.01"}, "ETH/BTC": {"fee_step": "1e-8"}}
    assert asset_steps(markets) == {"USDT": D("0.01"), "BTC": D("1e-8")}
