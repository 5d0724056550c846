"""One error family for everything Tally reports to a user.

Every error carries a message (what went wrong), a hint (what to do about it) and a context
(where: file, field, row, position, stream ...). The command line prints the three and exits
with the error's ``exit_code``: 2 for a user or environment error, 1 for an integrity failure.
Driver errors (SQLAlchemy, psycopg, sqlite3, ccxt) are translated into this family at exactly
one boundary per adapter, always with ``raise ... from e`` so the cause stays visible in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug in Tally, not a mistake of the user


class TallyError(Exception):
    """Base of every error Tally raises on purpose."""

    exit_code: ClassVar[int] = EXIT_USAGE
    default_hint: ClassVar[str] = "see `tally --help`"

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.context: Mapping[str, Any] = context

    def __str__(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})" if where else self.message

    def as_dict(self) -> dict[str, Any]:
        """The error as one JSON object: what, where, what to do, and the exit code."""
        return {
            "error": self.message,
            "context": dict(self.context),
            "hint": self.hint,
            "exit_code": self.exit_code,
        }

    def render(self) -> str:
        """Return the message, the context and the hint as a user sees them."""
        lines = [f"error: {self.message}"]
        for key, value in self.context.items():
            lines.append(f"  {key}: {value}")
        lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class ConfigError(TallyError):
    """A configuration file or value that cannot be used."""

    default_hint = "fix the named key in the configuration file or the command line"


class ConcurrencyError(TallyError):
    """An append's expected version is stale: another writer got there first."""

    default_hint = "another writer appended to this stream first: re-read it and retry"

    def __init__(self, stream: str, expected: int | None, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, not the expected {expected}",
            stream=stream,
            expected=expected,
            actual=actual,
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class IdempotencyConflict(TallyError):
    """An idempotency key was reused for different events."""

    default_hint = "an idempotency key names one request: use a new key for different events"


class ChainIntegrityError(TallyError):
    """The hash chain is broken at a position (exit 1)."""

    exit_code = EXIT_INTEGRITY
    default_hint = (
        "the ledger was changed outside Tally: restore it from a backup and compare "
        "with `tally events --from-position` around the named position"
    )

    def __init__(self, message: str, *, position: int, kind: str, **context: Any) -> None:
        super().__init__(message, position=position, kind=kind, **context)
        self.position = position
        self.kind = kind


class UnknownEventType(TallyError):
    """A stored record this version of Tally cannot decode."""

    default_hint = (
        "this ledger holds an event this version of Tally does not know: upgrade Tally, "
        "or check where the row came from"
    )


class StoreUnavailable(TallyError):
    """The ledger cannot be reached or used right now.

    ``transient`` says whether the same call may succeed if retried after a while (a lost
    connection, a lock or statement timeout, a serialization failure), as opposed to a
    mistake that retrying cannot fix (a wrong password, a missing database).
    """

    default_hint = "check the database URL (--db or TALLY_DB) and that the server is running"
    transient: ClassVar[bool] = False


class StoreBusy(StoreUnavailable):
    """A wait on the ledger ran past its named limit (a lock, a statement, the pool)."""

    default_hint = "another writer holds the ledger; retry when it is done"
    transient = True


class StoreConnectionLost(StoreUnavailable):
    """The database went away (stopped, restarted, network cut) or cannot be reached."""

    transient = True


class StoreDeadlineExceeded(StoreConnectionLost):
    """The server did not answer within ``store.call_timeout_s`` (frozen or cut off): the
    connection was cut. Retrying at once would only wait that long again."""


class StoreFull(StoreUnavailable):
    """The disk holding the ledger is full: writes can succeed again once space is freed."""

    default_hint = "free some space; nothing partial was committed"
    transient = True


class ImmutabilityViolation(TallyError):
    """The database refused to change or delete a ledger row (its immutability triggers)."""

    exit_code = EXIT_INTEGRITY
    default_hint = "ledger rows are never changed or deleted: append a correcting event"


class RunBusy(TallyError):
    """Another live process is recording this run into this ledger."""

    default_hint = (
        "wait for it to finish, or stop it with `kill -INT PID`; the claim of a runner "
        "that crashed lapses after its heartbeat expiry"
    )


class LeaseLost(TallyError):
    """This runner's lease was taken over (it stalled past its expiry)."""

    default_hint = (
        "another process took the run over after this one missed its heartbeats; "
        "check `tally runs` before starting it again"
    )


class SchemaOutdated(TallyError):
    """The ledger's schema is missing or not the one this code needs."""

    default_hint = "run `tally init` (with the same --db) to create or upgrade the ledger"


class DataContractError(TallyError):
    """Market data broke the OHLCV contract in strict mode."""

    default_hint = "fix the input data at the named row, or run without strict mode"


class ProviderError(TallyError):
    """A data provider or venue failed; ``retryable`` says if trying again may help."""

    default_hint = "the data provider failed; retryable errors are retried automatically"

    def __init__(
        self,
        message: str,
        *,
        error_class: str,
        retryable: bool,
        retry_after_s: float | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, error_class=error_class, retryable=retryable, **context)
        self.error_class = error_class
        self.retryable = retryable
        # A server's Retry-After hint (HTTP 429/503), honoured by the retry policy.
        self.retry_after_s = retry_after_s


class CacheCorruptionError(TallyError):
    """A cached file or checkpoint does not match its checksum (exit 1)."""

    exit_code = EXIT_INTEGRITY
    default_hint = "delete the named cache file; it is re-fetched on the next run"


class BacktestInvariantError(TallyError):
    """An accounting invariant broke: postings that do not balance (exit 1)."""

    exit_code = EXIT_INTEGRITY
    default_hint = "a backtest broke an accounting invariant: report it with the run id"


class InputError(TallyError):
    """A user input (file, argument, row) that cannot be used as given."""

    default_hint = "fix the named input and run the command again"


class ValueOutOfBounds(InputError, ValueError):
    """An amount, time or name outside what the ledger accepts (``ledger.market``'s named
    limits): refused before it is written, since a committed value can never be taken back."""

    default_hint = (
        "amounts: finite, |x| < 1e18, at most 38 significant digits and 28 decimal places; "
        "times: 1970-01-01 to 2199-12-31 UTC; names: letters, digits and . _ : @ + -"
    )
