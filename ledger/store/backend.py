"""What the event store needs from a database, and how a URL picks the backend."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ledger.errors import ConfigError, TallyError
from ledger.store.settings import StoreSettings

URL_HINT = "use sqlite:///path/to/ledger.db or postgresql+psycopg://user:password@host:5432/dbname"


class Backend(Protocol):
    """A database the store can use: its engine, its append lock and its error table."""

    name: str
    display_url: str

    @property
    def driver_error(self) -> type[BaseException]:
        """The driver's base exception class."""
        ...

    def engine(self, *, create: bool) -> Engine:
        """Return an engine; ``create`` allows creating a missing database file."""
        ...

    def prepare(self, engine: Engine) -> None:
        """Write persistent database settings; called by init once the database is ours."""
        ...

    def write(self, engine: Engine) -> AbstractContextManager[Any]:
        """Open a transaction holding the ledger's append lock; yield its DBAPI cursor.

        The transaction commits when the block ends and rolls back if it raises.
        """
        ...

    def close(self) -> None:
        """Close any connection the backend holds outside the engine's pool."""
        ...

    def memo(self, cursor: Any) -> Any:
        """What the last transaction on this write connection left with ``keep``, if no
        other connection has committed since; None otherwise (or if the backend cannot
        tell). Called inside ``write``'s transaction, under the append lock."""
        ...

    def keep(self, cursor: Any, memo: Any) -> None:
        """Leave ``memo`` for the next transaction on this connection if this one commits."""
        ...

    def cursor(self, conn: Connection) -> Any:
        """A DBAPI cursor on ``conn`` (PostgreSQL's bounds each call by a deadline)."""
        ...

    def insert_rows(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert full rows (``schema.ROW_COLUMNS`` order) inside the write transaction."""
        ...

    def guard(self) -> AbstractContextManager[None]:
        """Translate driver errors raised inside into the Tally error family."""
        ...

    def translate(self, error: BaseException) -> TallyError:
        """Classify one driver error (by code or class) into the Tally error family."""
        ...

    def sql(self, statement: str) -> str:
        """Return ``statement`` (written with ``?`` parameters) in the driver's style."""
        ...


_PASSWORD = re.compile(r"(//[^:/@]*:)[^@/]*@")  # user:password@ -> user:***@


def parse_url(raw: str) -> URL:
    """Parse and normalise a database URL, refusing anything Tally cannot use."""
    shown = _PASSWORD.sub(r"\1***@", raw)  # a refusal never echoes a password
    try:
        url = make_url(raw)
        url.port  # noqa: B018 - parsed lazily: a port that is not a number fails here
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"not a database URL: {shown!r}", hint=URL_HINT, url=shown) from e
    driver = url.drivername
    if driver in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg3"):
        return url.set(drivername="postgresql+psycopg")
    if driver in ("sqlite", "sqlite+pysqlite"):
        if not url.database or url.database == ":memory:":
            raise ConfigError("a SQLite ledger needs a file path", hint=URL_HINT, url=shown)
        return url.set(drivername="sqlite")
    raise ConfigError(f"unsupported database URL scheme {driver!r}", hint=URL_HINT, url=shown)


def open_backend(raw_url: str, settings: StoreSettings | None = None) -> Backend:
    """Return the backend for a database URL, with the limits of ``settings``."""
    url = parse_url(raw_url)
    settings = settings or StoreSettings()
    if url.drivername == "sqlite":
        from ledger.store.sqlite import SqliteBackend

        return SqliteBackend(url, settings)
    from ledger.store.postgres import PostgresBackend

    return PostgresBackend(url, settings)
