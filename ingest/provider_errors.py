"""The one boundary where ccxt's exceptions become Tally's ``ProviderError``.

Retryable: ccxt's NetworkError and everything under it (RequestTimeout, RateLimitExceeded,
DDoSProtection, ExchangeNotAvailable, OnMaintenance, InvalidNonce). Not retryable:
AuthenticationError, PermissionDenied, InsufficientFunds, InvalidOrder, BadSymbol,
BadRequest and every other ExchangeError, because retrying cannot fix them.
"""

from __future__ import annotations

import asyncio

import ccxt

from ledger.errors import ProviderError


def provider_error(
    error: BaseException, *, source: str, endpoint: str, symbol: str | None = None,
    retry_after_s: float | None = None,
) -> ProviderError:
    """Translate an exception raised by a source into a ``ProviderError``."""
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, ccxt.NetworkError):
        name, retryable = type(error).__name__, True
    elif isinstance(error, ccxt.BaseError):
        name, retryable = type(error).__name__, False
    elif isinstance(error, asyncio.TimeoutError | TimeoutError):
        name, retryable = "RequestTimeout", True
    elif isinstance(error, ConnectionError | OSError):
        name, retryable = "NetworkError", True
    else:
        # A malformed body that a parser choked on (or that held no data): a failure to
        # record, not a crash. Not retried: the same request would get the same body.
        name, retryable = "BadResponse", False
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else name
    return ProviderError(
        f"{source} {endpoint} failed: {name}: {message}",
        error_class=name,
        retryable=retryable,
        source=source,
        endpoint=endpoint,
        symbol=symbol,
        retry_after_s=retry_after_s,
    )
