"""The embedded backend: one SQLite file in WAL mode, durable by default.

Appends take SQLite's write lock up front (``BEGIN IMMEDIATE``), so allocating the next
global position and inserting the rows happen under one lock: positions are gapless and in
commit order, and two writers never deadlock on a lock upgrade.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
from ledger.store.boundary import driver_errors, first_line
from ledger.store.schema import ROW_COLUMNS
from ledger.store.settings import StoreSettings

# SQLite result codes (sqlite3.h); an error's code is classified, never its text.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR = 5, 6, 8, 10
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 11, 13, 14, 26
SQLITE_CONSTRAINT_TRIGGER = 1811  # RAISE(ABORT) in a trigger: the immutability triggers
INSERT_CHUNK_ROWS = 100  # 800 parameters, far below SQLite's limit of 32,766
PAGE_SIZE_BYTES = 8192
# Checkpoint the WAL into the database every ~80 MB instead of every ~8 MB.
WAL_AUTOCHECKPOINT_PAGES = 10_000
_WRITE_OPTION = "tally_write"


def _writable(path: Path) -> bool:
    """Whether the ledger file and its folder (where -wal and -shm live) can be written."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class SqliteBackend:
    """One SQLite file in WAL mode: BEGIN IMMEDIATE appends, multi-row inserts."""

    name = "sqlite"

    driver_error = sqlite3.Error

    def __init__(self, url: URL, settings: StoreSettings) -> None:
        self.path = Path(url.database or "")
        self.display_url = f"sqlite:///{url.database}"
        # FULL syncs the WAL at every commit: a committed append survives a power cut.
        self.synchronous = "FULL" if settings.durable else "NORMAL"
        self.busy_timeout_ms = settings.busy_timeout_ms
        self._insert_cache: dict[int, str] = {}

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
        synchronous, busy_timeout_ms = self.synchronous, self.busy_timeout_ms

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_conn.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
                cursor.execute(f"PRAGMA synchronous = {synchronous}")
            finally:
                cursor.close()
            # Per connection, not persistent: checkpoint the WAL every ~80 MB, not ~8 MB.
            dbapi_conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            raw = conn.connection.driver_connection
            if conn.get_execution_options().get(_WRITE_OPTION):
                raw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            else:
                raw.execute("BEGIN")  # type: ignore[union-attr]

        return engine

    def prepare(self, engine: Engine) -> None:
        """Write the file's persistent settings; only for a database Tally owns (init)."""
        with engine.connect() as conn:
            # Outside any transaction: SQLite refuses to switch to WAL inside one.
            # page_size takes effect only on a new file, before WAL: larger pages mean fewer
            # page writes per append batch.
            raw = conn.connection.driver_connection
            raw.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")  # type: ignore[union-attr]
            raw.execute("PRAGMA journal_mode = WAL")  # type: ignore[union-attr]

    @contextmanager
    def write(self, engine: Engine) -> Iterator[sqlite3.Cursor]:
        """A write transaction holding the append lock; yields its DBAPI cursor."""
        with engine.connect() as plain:
            conn = plain.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    yield cursor
                finally:
                    cursor.close()

    def cursor(self, conn: Connection) -> sqlite3.Cursor:
        """A plain cursor: SQLite's waits are bounded by busy_timeout, in-process."""
        return conn.connection.driver_connection.cursor()  # type: ignore[union-attr,no-any-return]

    def insert_rows(self, cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Insert full rows inside the write transaction."""
        # Multi-row VALUES statements: ~10% faster than executemany.
        for start in range(0, len(rows), INSERT_CHUNK_ROWS):
            chunk = rows[start : start + INSERT_CHUNK_ROWS]
            params = tuple(chain.from_iterable(chunk))
            cursor.execute(self._insert_sql(len(chunk)), params)

    def _insert_sql(self, count: int) -> str:
        sql = self._insert_cache.get(count)
        if sql is None:
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count)
            sql = f"INSERT INTO events ({ROW_COLUMNS}) VALUES {values}"
            self._insert_cache[count] = sql
        return sql

    def sql(self, statement: str) -> str:
        """The statement in this driver's parameter style."""
        return statement

    def guard(self) -> AbstractContextManager[None]:
        """Translate driver errors raised inside into the Tally error family."""
        return driver_errors(self)

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
