"""The embedded backend: one SQLite file in WAL mode, durable by default.

Appends take SQLite's write lock up front (``BEGIN IMMEDIATE``), so allocating the next
global position and inserting the rows happen under one lock: positions are gapless and in
commit order, and two writers never deadlock on a lock upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from ledger.errors import (
    ImmutabilityViolation,
    SchemaOutdated,
    StoreBusy,
    StoreFull,
    StoreUnavailable,
    TallyError,
)
from ledger.store.boundary import DriverErrors, first_line
from ledger.store.schema import ROW_COLUMNS
from ledger.store.settings import StoreSettings

# SQLite result codes (sqlite3.h); an error's code is classified, never its text.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR = 5, 6, 8, 10
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 11, 13, 14, 26
SQLITE_CONSTRAINT_TRIGGER = 1811  # RAISE(ABORT) in a trigger: the immutability triggers
PAGE_SIZE_BYTES = 8192
WAL_AUTOCHECKPOINT_PAGES = 1_000  # SQLite's default; why, see SqliteBackend._configure
WRITERS_IDLE_MAX = 2  # write connections kept open between writes
_ROW_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_ROW = f"INSERT INTO events ({ROW_COLUMNS}) VALUES {_ROW_VALUES}"
# Rows a multi-row INSERT carries (800 parameters: far below SQLite's 32,766).
ROWS_PER_STATEMENT = 100
_INSERT_ROWS = f"INSERT INTO events ({ROW_COLUMNS}) VALUES " + ", ".join(
    [_ROW_VALUES] * ROWS_PER_STATEMENT
)


def _writable(path: Path) -> bool:
    """Whether the ledger file and its folder (where -wal and -shm live) can be written."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class _Writer:
    """A write connection and what it keeps between transactions: one cursor (a one-event
    append's Python is most of its cost beside the SQL: no cursor made and closed each
    time), and what its last committed transaction left for the next one (the appender's
    head and stream versions) with the connection's ``PRAGMA data_version`` when it was
    left: that number changes when any other connection commits, and only then."""

    __slots__ = ("conn", "cursor", "data_version", "memo")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.data_version = -1
        self.memo: object = None


class _Transaction:
    """BEGIN IMMEDIATE, the block, COMMIT; ROLLBACK if the block or the commit raises. The
    connection goes back to the backend's writers when the transaction ends, however it
    ends; what it kept is dropped unless the transaction committed."""

    __slots__ = ("backend", "writer")

    def __init__(self, backend: SqliteBackend, writer: _Writer) -> None:
        self.backend = backend
        self.writer = writer

    def __enter__(self) -> sqlite3.Cursor:
        writer = self.writer
        try:
            writer.cursor.execute("BEGIN IMMEDIATE")  # the write lock up front: see the module doc
        except BaseException:
            if writer.conn.in_transaction:
                writer.conn.rollback()
            self.backend._release(writer)
            raise
        return writer.cursor

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        writer = self.writer
        conn = writer.conn
        try:
            if kind is None:
                try:
                    conn.commit()
                    return
                except BaseException:
                    writer.memo = None
                    if conn.in_transaction:
                        conn.rollback()
                    raise
            writer.memo = None
            if conn.in_transaction:
                conn.rollback()
        finally:
            self.backend._release(writer)


class SqliteBackend:
    """One SQLite file in WAL mode: BEGIN IMMEDIATE appends on write connections of their
    own, rows inserted with executemany."""

    name = "sqlite"

    driver_error = sqlite3.Error

    def __init__(self, url: URL, settings: StoreSettings) -> None:
        self.path = Path(url.database or "")
        self.display_url = f"sqlite:///{url.database}"
        # FULL syncs the WAL at every commit: a committed append survives a power cut.
        self.synchronous = "FULL" if settings.durable else "NORMAL"
        self.busy_timeout_ms = settings.busy_timeout_ms
        # Write connections not in use, outside the pool (see write): at most
        # WRITERS_IDLE_MAX kept. They open the file as the engine's connections do.
        self._connect: Callable[[], sqlite3.Connection] | None = None
        self._idle: list[_Writer] = []
        self._idle_lock = threading.Lock()
        # Every write connection, open or idle, by its cursor (what memo and keep are given).
        self._writers: dict[sqlite3.Cursor, _Writer] = {}
        self._closed = False
        self._guard = DriverErrors(self)  # holds nothing between uses: one serves every append

    def engine(self, *, create: bool) -> Engine:
        """An engine with every wait bounded by the store settings."""
        path = self.path
        if not create and not path.exists():
            raise SchemaOutdated(
                f"no ledger file at {path}",
                hint="run `tally init` to create it, or pass the right --db",
                path=str(path),
            )
        mode = "rwc" if create else "rw"
        uri = f"file:{path.resolve()}?mode={mode}"
        if not create and not _writable(path):
            # An archive on a read-only disk or folder: WAL mode would need to create its
            # -shm file beside it. Nothing can change the file, so SQLite may treat it as
            # immutable (no locks, no WAL); any write is refused as read-only.
            uri = f"file:{path.resolve()}?mode=ro&immutable=1"

        def connect() -> sqlite3.Connection:
            # isolation_level=None: we issue BEGIN ourselves (see _begin) so that a write
            # transaction can be IMMEDIATE; check_same_thread=False: the pool hands
            # connections to whichever thread asks.
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

        # A real pool: with a creator and a bare "sqlite://" URL SQLAlchemy would pick its
        # in-memory pool, one connection per thread, so a read inside a unit of work would
        # land in the writer's open transaction.
        engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)
        configure = self._configure

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            configure(dbapi_conn)

        self._connect = lambda: configure(connect())

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A read's snapshot; writes begin their own transaction (see write).
            conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]

        return engine

    def _configure(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """The per-connection settings every connection to the ledger gets."""
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Per connection, not persistent. SQLite's own default (~8 MB of WAL at 8 KB pages):
        # a WAL that wraps round early rewrites blocks it already has, and a commit into
        # those syncs faster than one that grows the file (measured: 1.3x more one-event
        # appends a second than at 10,000 pages; 1000-event appends the same).
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        return conn

    def prepare(self, engine: Engine) -> None:
        """Write the file's persistent settings; only for a database Tally owns (init)."""
        with engine.connect() as conn:
            # Outside any transaction: SQLite refuses to switch to WAL inside one.
            # page_size takes effect only on a new file, before WAL: larger pages mean fewer
            # page writes per append batch.
            raw = conn.connection.driver_connection
            raw.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")  # type: ignore[union-attr]
            raw.execute("PRAGMA journal_mode = WAL")  # type: ignore[union-attr]

    def write(self, engine: Engine) -> AbstractContextManager[sqlite3.Cursor]:
        """A write transaction holding the append lock; yields its DBAPI cursor.

        On a write connection kept open outside the pool: a one-event append is a few
        microseconds of SQL, and a pool checkout with a SQLAlchemy Connection's begin and
        commit cost more than that (with the class-based error boundary: 80 -> about 58 us
        an append without fsync). Outside the pool, it never takes a connection a reader
        waits for. Concurrent writers each take one (SQLite lets one write at a time; the
        others wait in BEGIN IMMEDIATE, up to busy_timeout_ms, as before); at most
        WRITERS_IDLE_MAX stay open between writes, so a service's many request threads do
        not each keep one. ``engine`` is the one ``engine()`` made: its creator opens them.
        """
        with self._idle_lock:
            writer = self._idle.pop() if self._idle else None
        if writer is None:
            assert self._connect is not None, "write() needs the engine made by engine()"
            writer = _Writer(self._connect())
            self._writers[writer.cursor] = writer
        return _Transaction(self, writer)

    def _release(self, writer: _Writer) -> None:
        """Keep ``writer`` for the next write, or close it (enough are idle, or closed)."""
        with self._idle_lock:
            if not self._closed and len(self._idle) < WRITERS_IDLE_MAX:
                self._idle.append(writer)
                return
        self._forget(writer)

    def _forget(self, writer: _Writer) -> None:
        self._writers.pop(writer.cursor, None)
        writer.cursor.close()
        writer.conn.close()

    def memo(self, cursor: sqlite3.Cursor) -> object:
        """What this connection's last committed transaction kept, if no other connection
        has committed since. An append then chains onto the head it wrote itself instead of
        reading (and re-hashing) the head row: one pragma instead of that query, and a row
        changed by anyone else is still re-read and checked, since its commit moved the
        data version."""
        kept = self._writers[cursor]
        cursor.execute("PRAGMA data_version")
        version = cursor.fetchone()[0]
        memo, kept.memo = kept.memo, None
        unchanged, kept.data_version = version == kept.data_version, version
        return memo if unchanged else None

    def keep(self, cursor: sqlite3.Cursor, memo: object) -> None:
        """Leave ``memo`` for this connection's next transaction, if this one commits."""
        self._writers[cursor].memo = memo

    def close(self) -> None:
        """Close the idle write connections; one still writing closes when it ends."""
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for writer in idle:
            self._forget(writer)

    def cursor(self, conn: Connection) -> sqlite3.Cursor:
        """A plain cursor: SQLite's waits are bounded by busy_timeout, in-process."""
        return conn.connection.driver_connection.cursor()  # type: ignore[union-attr,no-any-return]

    def insert_rows(self, cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Insert full rows inside the write transaction."""
        # Whole hundreds go as one 100-row INSERT each: one statement step (and one trip
        # through SQLite's VM setup) per hundred rows instead of per row. Measured on rows
        # of ~330 bytes (fills with their hashes), 1000 to a transaction: 1.2x the rows a
        # second of executemany. Statements much longer than that gain nothing more.
        if len(rows) == 1:  # a one-event append: no list to build for executemany
            cursor.execute(_INSERT_ROW, rows[0])
            return
        whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
        if whole:
            values = list(chain.from_iterable(rows[:whole]))
            step = ROWS_PER_STATEMENT * len(rows[0])
            for start in range(0, len(values), step):
                cursor.execute(_INSERT_ROWS, values[start : start + step])
        if whole < len(rows):
            cursor.executemany(_INSERT_ROW, rows[whole:])

    def sql(self, statement: str) -> str:
        """The statement in this driver's parameter style."""
        return statement

    def guard(self) -> AbstractContextManager[None]:
        """Translate driver errors raised inside into the Tally error family."""
        return self._guard

    def translate(self, error: BaseException) -> TallyError:
        """Classify a sqlite3 error by its result code (the extended one where it matters)."""
        code = getattr(error, "sqlite_errorcode", None)
        where = {"path": str(self.path)}
        said = first_line(error)
        if code == SQLITE_CONSTRAINT_TRIGGER:
            return ImmutabilityViolation(f"refused: {said}", **where)
        primary = None if code is None else code & 0xFF
        if primary in (SQLITE_BUSY, SQLITE_LOCKED):
            return StoreBusy(
                f"{self.path} is locked by another writer for more than "
                f"{self.busy_timeout_ms / 1000:g} s",
                hint="another process holds a long write transaction; retry when it ends "
                "(store.busy_timeout_ms sets the wait)",
                **where,
            )
        if primary in (SQLITE_CORRUPT, SQLITE_NOTADB):
            return StoreUnavailable(
                f"{self.path} is not a readable SQLite database ({said})",
                hint="point --db at a Tally ledger, or restore this file from a backup",
                **where,
            )
        if primary == SQLITE_CANTOPEN:
            return StoreUnavailable(
                f"cannot open {self.path} ({said})",
                hint="check that the folder exists and is writable",
                **where,
            )
        if primary == SQLITE_READONLY:
            return StoreUnavailable(
                f"{self.path} is read-only ({said})", hint="check the file's permissions", **where
            )
        if primary == SQLITE_FULL:
            return StoreFull(
                f"the disk holding {self.path} is full ({said})",
                hint="free some space; nothing partial was committed",
                **where,
            )
        if primary == SQLITE_IOERR:
            return StoreUnavailable(
                f"disk I/O error on {self.path} ({said})",
                hint="check the disk and the file system",
                **where,
            )
        name = getattr(error, "sqlite_errorname", type(error).__name__)
        return StoreUnavailable(f"SQLite error {name} on {self.path}: {said}", **where)
