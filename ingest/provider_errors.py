"""The one boundary where a source's exceptions become Tally's ``ProviderError``.

Retryable: ccxt's NetworkError and everything under it (RequestTimeout, RateLimitExceeded,
DDoSProtection, ExchangeNotAvailable, OnMaintenance, InvalidNonce), timeouts and connection
errors. Not retryable: AuthenticationError, PermissionDenied, InsufficientFunds,
InvalidOrder, BadSymbol, BadRequest and every other ExchangeError, because retrying cannot
fix them.

ccxt costs most of a second to import, so this module never imports it: an exception can
only be one of ccxt's if ccxt is already loaded, and then it is classified by its class.
Simulated faults name ccxt's classes and become exactly the error a live exchange's
exception would (``simulated_error``), without ccxt.
"""

from __future__ import annotations

import asyncio
import sys

from ledger.errors import ProviderError
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.redact import redact

# ccxt's error classes by name, and whether each is retryable (a NetworkError subclass).
# tests/unit/test_provider_errors.py checks this table against ccxt's own hierarchy.
CCXT_RETRYABLE: dict[str, bool] = {
    "NetworkError": True,
    "RequestTimeout": True,
    "ExchangeNotAvailable": True,
    "RateLimitExceeded": True,
    "DDoSProtection": True,
    "OnMaintenance": True,
    "InvalidNonce": True,
    "ExchangeError": False,
    "AuthenticationError": False,
    "PermissionDenied": False,
    "InsufficientFunds": False,
    "InvalidOrder": False,
    "OrderNotFound": False,
    "BadSymbol": False,
    "BadRequest": False,
}


def provider_error(
    error: BaseException,
    *,
    source: str,
    endpoint: str,
    symbol: str | None = None,
    retry_after_s: float | None = None,
) -> ProviderError:
    """Translate an exception raised by a source into a ``ProviderError``.

    A ProviderError that was raised comes back without its traceback. A failure is recorded
    as its class and message; callers keep the error past their ``except`` block (in a
    ``Failed``, a local), and its traceback would keep every frame of the failed call
    alive, in a reference cycle only the cyclic collector frees.
    """
    if isinstance(error, ProviderError):
        return error.with_traceback(None)
    ccxt = sys.modules.get("ccxt")
    if ccxt is not None and isinstance(error, ccxt.BaseError):
        name, retryable = type(error).__name__, isinstance(error, ccxt.NetworkError)
    elif isinstance(error, asyncio.TimeoutError | TimeoutError):
        name, retryable = "RequestTimeout", True
    elif isinstance(error, ConnectionError | OSError):
        name, retryable = "NetworkError", True
    else:
        # A malformed body that a parser choked on (or that held no data): a failure to
        # record, not a crash. Not retried: the same request would get the same body.
        name, retryable = "BadResponse", False
    return _translated(
        name,
        retryable,
        str(error),
        source=source,
        endpoint=endpoint,
        symbol=symbol,
        retry_after_s=retry_after_s,
    )


def simulated_error(
    error_class: str, text: str, *, source: str, endpoint: str, symbol: str | None = None
) -> ProviderError:
    """The error a ccxt exception of class ``error_class`` saying ``text`` translates to."""
    retryable = CCXT_RETRYABLE.get(error_class)
    if retryable is None:
        raise ValueError(
            f"not a ccxt error class Tally knows: {error_class!r} "
            f"(known: {', '.join(sorted(CCXT_RETRYABLE))})"
        )
    return _translated(
        error_class,
        retryable,
        text,
        source=source,
        endpoint=endpoint,
        symbol=symbol,
        retry_after_s=None,
    )


def _translated(
    name: str,
    retryable: bool,
    text: str,
    *,
    source: str,
    endpoint: str,
    symbol: str | None,
    retry_after_s: float | None,
) -> ProviderError:
    said = redact(text.strip())  # exchanges quote signed URLs and key headers back
    message = said.splitlines()[0][:MESSAGE_LENGTH_MAX] if said else name
    return ProviderError(
        f"{source} {endpoint} failed: {name}: {message}",
        error_class=name,
        retryable=retryable,
        source=source,
        endpoint=endpoint,
        symbol=symbol,
        retry_after_s=retry_after_s,
    )
