"""The shared backend: PostgreSQL through psycopg 3, for many writers on many machines.

Positions come from the ledger itself, not from a sequence: a sequence hands out numbers at
insert time, so position 11 can commit before position 10 and a reader tailing the log skips
10 for good. Here every append first takes one transaction-level advisory lock, reads the
head, inserts and commits; the lock is released only after the commit, so the next writer
sees the new head and positions are gapless and in commit order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ledger.errors import StoreUnavailable, TallyError
from ledger.store.schema import ROW_COLUMNS

# An arbitrary fixed key: every Tally writer on the database serialises on it.
APPEND_LOCK_KEY = 0x7A11_1ED6_E500
CONNECT_TIMEOUT_S = 5


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: URL) -> None:
        self.url = url
        self.display_url = url.render_as_string(hide_password=True)

    def engine(self, *, create: bool) -> Engine:
        # ``create`` is moot: a PostgreSQL database is created by its administrator.
        return create_engine(
            self.url,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
            pool_size=2,
            max_overflow=4,
        )

    def prepare(self, engine: Engine) -> None:
        """Nothing to set: PostgreSQL's durability is the server's configuration."""

    @contextmanager
    def write(self, engine: Engine) -> Iterator[psycopg.Cursor[Any]]:
        with engine.connect() as conn, conn.begin():
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
                yield cursor
            finally:
                cursor.close()

    def insert_rows(self, cursor: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        # COPY is PostgreSQL's bulk path: one stream instead of a statement per row.
        with cursor.copy(f"COPY events ({ROW_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except TallyError:
            raise
        except DBAPIError as e:
            raise self._translate(str(e.orig or e)) from e
        except psycopg.Error as e:
            raise self._translate(str(e)) from e
        except SQLAlchemyError as e:
            raise self._translate(str(e)) from e

    def _translate(self, text: str) -> TallyError:
        where = {"url": self.display_url}
        first = text.strip().splitlines()[0] if text.strip() else text
        if "password authentication failed" in text or "no password supplied" in text:
            return StoreUnavailable(
                f"PostgreSQL refused the login ({first})",
                hint="check the user name and password in the database URL",
                **where,
            )
        if "does not exist" in text and "database" in text:
            return StoreUnavailable(
                f"the PostgreSQL database does not exist ({first})",
                hint="create it first (createdb NAME), then run `tally init --db URL`",
                **where,
            )
        if "Connection refused" in text or "could not connect" in text or "timeout" in text:
            return StoreUnavailable(
                f"cannot reach the PostgreSQL server ({first})",
                hint="is the server running and listening at the host and port in the URL?",
                **where,
            )
        if "immutable" in text:
            return StoreUnavailable(
                f"refused: {first}", hint="ledger rows are never changed or deleted", **where
            )
        return StoreUnavailable(f"PostgreSQL error: {first}", **where)
