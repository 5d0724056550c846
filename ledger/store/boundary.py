"""The one boundary where database driver errors become Tally errors.

Each backend classifies its driver's errors by class and code, never by message text:
SQLite by its (extended) result code, PostgreSQL by SQLSTATE, and an error that carries no
code (a connection that failed or broke before the server could answer) by its exception
class. The driver's own words are kept in the message for the user, never parsed.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ledger.errors import StoreBusy, TallyError


class Translator(Protocol):
    """What a backend supplies: its driver's base error class and its code table."""

    display_url: str

    @property
    def driver_error(self) -> type[BaseException]:
        """The driver's base exception class."""
        ...

    def translate(self, error: BaseException) -> TallyError:
        """Classify one driver error into the Tally error family."""
        ...


class DriverErrors:
    """Run the block; translate any driver error raised inside (``raise ... from``).

    A class rather than a generator context manager: it wraps every append, and the
    generator's machinery cost more than the rest of a one-event append's Python. It keeps
    no state between entering and leaving, so a backend makes one and reuses it.
    """

    __slots__ = ("backend",)

    def __init__(self, backend: Translator) -> None:
        self.backend = backend

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: object
    ) -> None:
        if error is None or isinstance(error, TallyError):
            return
        backend = self.backend
        if isinstance(error, PoolTimeout):
            raise StoreBusy(
                f"no free connection to {backend.display_url} within the pool's wait",
                hint="raise store.pool_size or store.pool_timeout_s, or run fewer writers",
                url=backend.display_url,
            ) from error
        if isinstance(error, DBAPIError):
            raise backend.translate(error.orig if error.orig is not None else error) from error
        if isinstance(error, SQLAlchemyError | backend.driver_error):
            raise backend.translate(error) from error


def first_line(error: BaseException) -> str:
    """The driver's own first line, to show (never to classify by)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
