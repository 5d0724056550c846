"""ccxt's errors are classified by class at one boundary; simulated faults become exactly
what the same ccxt exception would, without importing ccxt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ingest.provider_errors import CCXT_RETRYABLE, provider_error, simulated_error

pytestmark = pytest.mark.smoke


def test_the_retryable_table_matches_ccxts_own_hierarchy() -> None:
    import ccxt

    for name, retryable in CCXT_RETRYABLE.items():
        cls = getattr(ccxt, name)
        assert issubclass(cls, ccxt.BaseError)
        assert issubclass(cls, ccxt.NetworkError) == retryable, name


@pytest.mark.parametrize("name", sorted(CCXT_RETRYABLE))
def test_a_simulated_fault_is_the_error_its_ccxt_exception_becomes(name: str) -> None:
    import ccxt

    real = provider_error(
        getattr(ccxt, name)("binance: it broke\nsecond line"),
        source="binance",
        endpoint="ticker",
        symbol="BTC/USDT",
    )
    fake = simulated_error(
        name,
        "binance: it broke\nsecond line",
        source="binance",
        endpoint="ticker",
        symbol="BTC/USDT",
    )
    assert (fake.message, fake.error_class, fake.retryable, dict(fake.context)) == (
        real.message,
        real.error_class,
        real.retryable,
        dict(real.context),
    )


def test_an_unknown_class_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a ccxt error class"):
        simulated_error("Bogus", "x", source="s", endpoint="ticker")


def test_other_exceptions_are_classified_without_ccxt() -> None:
    assert provider_error(TimeoutError(), source="s", endpoint="e").error_class == "RequestTimeout"
    assert provider_error(ConnectionResetError("x"), source="s", endpoint="e").retryable
    bad = provider_error(KeyError("last"), source="s", endpoint="e")
    assert (bad.error_class, bad.retryable) == ("BadResponse", False)


def test_a_backtest_imports_no_ccxt() -> None:
    code = (
        "import sys; from tally.cli import main; "
        "main(['run', '--db', sys.argv[1]]); print('ccxt' in sys.modules)"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{folder}/t.db"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert out.strip().endswith("False")


def test_a_signed_url_or_key_header_in_an_exchange_error_is_masked_at_the_source() -> None:
    import ccxt

    said = (
        'binance {"code":-1022} GET https://api.binance.com/api/v3/order?symbol=BTCUSDT'
        "&timestamp=1767225600000&signature=9f86d081884c7d659a2feaa0c55ad015 "
        "{'X-MBX-APIKEY': 'vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A'}"
    )
    error = provider_error(ccxt.AuthenticationError(said), source="binance", endpoint="order")
    assert "9f86d081884c7d659a2feaa0c55ad015" not in error.message
    assert "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A" not in error.message
    assert "signature=***" in error.message and "symbol=BTCUSDT" in error.message
