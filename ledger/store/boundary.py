"""The one boundary where database driver errors become Tally errors.

Each backend classifies its driver's errors by class and code, never by message text:
SQLite by its (extended) result code, PostgreSQL by SQLSTATE, and an error that carries no
code (a connection that failed or broke before the server could answer) by its exception
class. The driver's own words are kept in the message for the user, never parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def driver_errors(backend: Translator) -> Iterator[None]:
    """Run the block; translate any driver error raised inside (``raise ... from``)."""
    try:
        yield
    except TallyError:
        raise
    except PoolTimeout as e:
        raise StoreBusy(
            f"no free connection to {backend.display_url} within the pool's wait",
            hint="raise store.pool_size or store.pool_timeout_s, or run fewer writers",
            url=backend.display_url,
        ) from e
    except DBAPIError as e:
        raise backend.translate(e.orig if e.orig is not None else e) from e
    except SQLAlchemyError as e:
        raise backend.translate(e) from e
    except backend.driver_error as e:
        raise backend.translate(e) from e


def first_line(error: BaseException) -> str:
    """The driver's own first line, to show (never to classify by)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
