"""The shared backend: PostgreSQL through psycopg 3, for many writers on many machines.

Positions come from the ledger itself, not from a sequence: a sequence hands out numbers at
insert time, so position 11 can commit before position 10 and a reader tailing the log skips
10 for good. Here every append first takes one transaction-level advisory lock, reads the
head, inserts and commits; the lock is released only after the commit, so the next writer
sees the new head and positions are gapless and in commit order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from ledger.errors import (
    ImmutabilityViolation,
    SchemaOutdated,
    StoreBusy,
    StoreConnectionLost,
    StoreFull,
    StoreUnavailable,
    TallyError,
)
from ledger.store.boundary import DriverErrors, first_line
from ledger.store.deadline import BoundedCursor, CallDeadline
from ledger.store.schema import ROW_COLUMNS
from ledger.store.settings import StoreSettings

# An arbitrary fixed key: every Tally writer on the database serialises on it.
APPEND_LOCK_KEY = 0x7A11_1ED6_E500

# SQLSTATE (or its two-character class) -> (error, what happened, hint). The immutability
# triggers raise P0001 (plpgsql's RAISE EXCEPTION); nothing else in a Tally schema does.
SQLSTATES: dict[str, tuple[type[TallyError], str, str]] = {
    "P0001": (
        ImmutabilityViolation,
        "refused by the ledger's immutability trigger",
        "ledger rows are never changed or deleted: append a correcting event",
    ),
    "55P03": (
        StoreBusy,
        "waited longer than store.lock_timeout_ms for a lock",
        "another writer holds the ledger ({self.lock_timeout_ms} ms); retry",
    ),
    "57014": (
        StoreBusy,
        "a statement ran longer than store.statement_timeout_ms",
        "the server is overloaded or stalled ({self.statement_timeout_ms} ms); retry",
    ),
    "25P03": (
        StoreBusy,
        "a transaction stayed idle past the server's limit",
        "retry; the transaction was rolled back whole",
    ),
    "40001": (StoreBusy, "a serialization failure", "retry; nothing was committed"),
    "40P01": (StoreBusy, "a deadlock was broken", "retry; nothing was committed"),
    "08": (
        StoreConnectionLost,
        "the connection to PostgreSQL failed",
        "is the server running? the call can be retried when it is back",
    ),
    **{
        state: (
            StoreConnectionLost,
            "the PostgreSQL server is shutting down or starting",
            "retry when the server is back",
        )
        for state in ("57P01", "57P02", "57P03")
    },
    "28": (
        StoreUnavailable,
        "PostgreSQL refused the login",
        "check the user name and password in the database URL",
    ),
    "3D000": (
        StoreUnavailable,
        "the PostgreSQL database does not exist",
        "create it first (createdb NAME), then run `tally init --db URL`",
    ),
    "42P01": (
        SchemaOutdated,
        "the ledger's tables are missing",
        "run `tally init` (with the same --db) to create the schema",
    ),
    "53100": (
        StoreFull,
        "the PostgreSQL server's disk is full",
        "free space on the server; nothing partial was committed",
    ),
}


class PostgresBackend:
    """PostgreSQL through psycopg 3: advisory-locked appends, COPY inserts."""

    name = "postgresql"

    driver_error = psycopg.Error

    def __init__(self, url: URL, settings: StoreSettings) -> None:
        self.url = url
        self.display_url = url.render_as_string(hide_password=True)
        self.settings = settings
        self.lock_timeout_ms = settings.lock_timeout_ms
        self.statement_timeout_ms = settings.statement_timeout_ms
        self.deadline = CallDeadline(settings.call_timeout_s, self.display_url)
        self._guard = DriverErrors(self)  # holds nothing between uses: one serves every append

    def engine(self, *, create: bool) -> Engine:
        """An engine with every wait bounded by the store settings."""
        # ``create`` is moot: a PostgreSQL database is created by its administrator.
        limits = self.settings
        # Every wait on the server is bounded: the append lock (an advisory lock obeys
        # lock_timeout), any one statement, and a transaction left idle.
        options = (
            f"-c lock_timeout={limits.lock_timeout_ms} "
            f"-c statement_timeout={limits.statement_timeout_ms} "
            f"-c idle_in_transaction_session_timeout="
            f"{limits.idle_in_transaction_timeout_ms}"
        )
        engine = create_engine(
            self.url,
            connect_args={"connect_timeout": limits.connect_timeout_s, "options": options},
            pool_size=limits.pool_size,
            max_overflow=limits.pool_overflow_max,
            pool_timeout=limits.pool_timeout_s,
            pool_recycle=limits.pool_recycle_s,
        )
        deadline = self.deadline

        # SQLAlchemy's pool_pre_ping would wait for a frozen server forever: the same ping,
        # under the call deadline. A pooled connection that fails it (the server restarted,
        # froze, or the network was cut) is replaced by a new one, whose connect is bounded
        # by connect_timeout_s.
        @event.listens_for(engine, "checkout")
        def _ping(dbapi_conn: Any, _record: ConnectionPoolEntry, _proxy: Any) -> None:
            try:
                with deadline.bound(dbapi_conn.pgconn.socket), dbapi_conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    dbapi_conn.rollback()
            except (psycopg.Error, StoreConnectionLost) as lost:
                raise DisconnectionError(str(lost)) from lost

        return engine

    def prepare(self, engine: Engine) -> None:
        """Nothing to set: PostgreSQL's durability is the server's configuration."""

    @contextmanager
    def write(self, engine: Engine) -> Iterator[BoundedCursor]:
        """A write transaction holding the append lock; yields its cursor, every call of
        which (and the commit) is bounded by ``store.call_timeout_s``."""
        with engine.connect() as conn:
            cursor = self.cursor(conn)
            transaction = conn.begin()
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
                yield cursor
            except BaseException:
                with suppress(Exception), self.deadline.bound(cursor.fd):
                    transaction.rollback()
                _drop_if_broken(conn)
                raise
            else:
                try:
                    with self.deadline.bound(cursor.fd):
                        transaction.commit()
                except BaseException:
                    _drop_if_broken(conn)
                    raise
            finally:
                cursor.close()

    def cursor(self, conn: Connection) -> BoundedCursor:
        """A cursor on ``conn`` whose calls are bounded by ``store.call_timeout_s``."""
        raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        return BoundedCursor(raw.cursor(), self.deadline, raw.pgconn.socket)

    def close(self) -> None:
        """Nothing to close: every connection is the pool's."""

    def memo(self, cursor: BoundedCursor) -> None:
        """Never anything: pooled connections, and no cheap sign of other writers' commits
        (every append reads the head)."""
        return None

    def keep(self, cursor: BoundedCursor, memo: object) -> None:
        """Nothing is kept (see ``memo``)."""

    def insert_rows(self, cursor: BoundedCursor, rows: list[tuple[Any, ...]]) -> None:
        """Insert full rows inside the write transaction."""
        # COPY is PostgreSQL's bulk path: one stream instead of a statement per row.
        with (
            self.deadline.bound(cursor.fd),
            cursor.raw.copy(f"COPY events ({ROW_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def sql(self, statement: str) -> str:
        """The statement in this driver's parameter style."""
        return statement.replace("?", "%s")

    def guard(self) -> AbstractContextManager[None]:
        """Translate driver errors raised inside into the Tally error family."""
        return self._guard

    def translate(self, error: BaseException) -> TallyError:
        """Classify a psycopg error by SQLSTATE; one without a code by its class."""
        where = {"url": self.display_url}
        said = first_line(error)
        state = getattr(error, "sqlstate", None)
        if state is None:
            if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
                # libpq reports a failed or broken connection as text only (no SQLSTATE):
                # the server's own reason is shown, and the hint covers what it can be.
                return StoreConnectionLost(
                    f"cannot reach or log in to the PostgreSQL server ({said})",
                    hint="is the server running at the URL's host and port? are the user, "
                    "password and database name right? (createdb NAME, then "
                    "`tally init --db URL`)",
                    **where,
                )
            return StoreUnavailable(f"PostgreSQL error: {said}", **where)
        found = SQLSTATES.get(state) or SQLSTATES.get(state[:2])
        if found is None:
            return StoreUnavailable(f"PostgreSQL error {state}: {said}", sqlstate=state, **where)
        kind, what, hint = found
        return kind(f"{what} ({said})", hint=hint.format(self=self), sqlstate=state, **where)


def _drop_if_broken(conn: Connection) -> None:
    """Keep a connection that broke mid-call out of the pool (our DBAPI calls bypass
    SQLAlchemy, which would otherwise notice the disconnect itself)."""
    if conn.invalidated:
        return  # SQLAlchemy saw the disconnect (a COMMIT through it) and dropped it already
    try:
        fairy: PoolProxiedConnection = conn.connection
    except SQLAlchemyError:
        # Asking an invalidated connection with its transaction open raises
        # PendingRollbackError, which would hide the caller's real error (a lost
        # connection, which is transient) behind one that is not.
        with suppress(SQLAlchemyError):
            conn.invalidate()
        return
    raw = fairy.driver_connection
    if raw is not None and getattr(raw, "broken", False):
        conn.invalidate()
