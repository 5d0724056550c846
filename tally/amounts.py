"""Amounts as people read them: at their asset's precision, never at a fixed two decimals.

An asset's precision is the step of its smallest unit that the markets trade it in: a
quote asset's ``fee_step`` (``run.markets``: 0.01 for USDT, 1e-8 for BTC). An amount of an
asset with no known step is shown exactly. ``--json`` always carries exact amounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

EXACT_PLACES_MAX = 12  # an asset with no known step: exact, up to this many decimals


# Wide enough for any ledger amount (below 1e18) at any step shown: the default 28 digits
# would refuse 1e17 at twelve places with InvalidOperation.
_WIDE = Context(prec=60)


def show(value: Decimal | str, step: Decimal | None = None, *, group: bool = True) -> str:
    """``value`` at ``step`` (half to even), or exact when there is no step."""
    amount = Decimal(value)
    if step is not None:
        amount = amount.quantize(step.normalize(), rounding=ROUND_HALF_EVEN, context=_WIDE)
    else:
        places = Decimal(1).scaleb(-EXACT_PLACES_MAX)
        amount = amount.quantize(places, rounding=ROUND_HALF_EVEN, context=_WIDE)
        amount = amount.normalize(_WIDE)
        if amount == amount.to_integral_value():
            amount = amount.quantize(Decimal(1), context=_WIDE)
    if amount.is_zero():
        amount = abs(amount)  # no "-0.00"
    return f"{amount:,f}" if group else f"{amount:f}"


def asset_steps(markets: Mapping[str, Any]) -> dict[str, Decimal]:
    """asset -> its precision from ``run.markets`` (settings models or recorded dicts), keyed
    by quote asset; a symbol's own entry (``ETH/BTC``) gives its quote's too."""
    steps: dict[str, Decimal] = {}
    for key, market in sorted(markets.items(), key=lambda item: "/" in item[0]):
        fee_step = market["fee_step"] if isinstance(market, Mapping) else market.fee_step
        steps.setdefault(key.split("/")[-1], Decimal(str(fee_step)))
    return steps
