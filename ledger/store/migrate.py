"""Create or upgrade a ledger's schema with alembic; check a schema before using it."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, inspect

from ledger.errors import SchemaOutdated, StoreUnavailable
from ledger.store.backend import Backend
from ledger.store.schema import SCHEMA_REVISION

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
# The SQLite schema the migrations make, as the statements that make it at once (with the
# revision they reach): a new SQLite ledger is created from it without importing alembic
# (a tenth of a second of the first run on a machine, and of every sweep into a new file).
# tests/integration/test_schema_and_bad_input.py keeps it equal to what the migrations make.
SQLITE_HEAD = MIGRATIONS_DIR / "head.sqlite.sql"
_HEAD_MARK = "-- revision "
_OUR_TABLES = {"alembic_version", "events", "idempotency_keys", "checkpoints", "run_leases"}


def current_revision(conn: Connection, display_url: str) -> str | None:
    """Return the ledger's schema revision, None for an empty database.

    Refuses a database that holds other tables but no Tally schema: Tally never writes
    into somebody else's database.
    """
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        foreign = sorted(tables - _OUR_TABLES)
        if foreign:
            raise StoreUnavailable(
                f"{display_url} is not a Tally ledger: it holds other tables "
                f"({', '.join(foreign[:5])})",
                hint="point --db at a new file or an empty database",
                url=display_url,
            )
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if value is None else str(value)


def check_schema(conn: Connection, display_url: str) -> None:
    """Raise ``SchemaOutdated`` unless the ledger is at the revision this code needs."""
    revision = current_revision(conn, display_url)
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        raise SchemaOutdated(
            f"no Tally ledger has been initialised at {display_url}", url=display_url
        )
    raise SchemaOutdated(
        f"the ledger's schema is at revision {revision}, this Tally needs {SCHEMA_REVISION}",
        hint="run `tally init` to upgrade it (if the ledger is newer, upgrade Tally instead)",
        url=display_url,
    )


def upgrade(backend: Backend, *, through_migrations: bool = False) -> tuple[str | None, str]:
    """Upgrade the ledger to the head revision; return (revision before, revision after).

    A new SQLite ledger is made from ``SQLITE_HEAD`` at once, unless ``through_migrations``
    (then alembic runs every migration, as it does for any other ledger)."""
    engine = backend.engine(create=True)
    try:
        with backend.guard():
            # Check first, read-only: a foreign or corrupt database is refused untouched.
            with engine.connect() as conn:
                before = current_revision(conn, backend.display_url)
            backend.prepare(engine)
        if before == SCHEMA_REVISION:
            # Already at the head: nothing for alembic to do, and importing it and reading
            # the migration scripts cost about 0.1 s of every run into an existing ledger.
            return before, before
        new_sqlite = before is None and backend.name == "sqlite" and not through_migrations
        head = sqlite_head() if new_sqlite else None
        if head is not None:
            with backend.guard(), engine.begin() as conn:
                for statement in head:
                    conn.exec_driver_sql(statement)
            return before, SCHEMA_REVISION
        # Imported here: alembic costs a third of the CLI's start-up and only creating or
        # upgrading a ledger needs it. alembic narrates every plugin it loads at INFO
        # (while importing); `tally init` reports the outcome itself.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config
        from alembic.util.exc import CommandError

        with backend.guard(), engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as e:
                raise SchemaOutdated(
                    f"cannot upgrade the ledger from revision {before}: {e}",
                    hint="this ledger was written by a newer Tally: upgrade Tally",
                    url=backend.display_url,
                ) from e
            after = current_revision(conn, backend.display_url)
    finally:
        engine.dispose()
    return before, after or SCHEMA_REVISION


def sqlite_head() -> list[str] | None:
    """The statements of ``SQLITE_HEAD`` if it is at this code's revision, else None (then
    alembic creates the ledger through every migration, as it always may)."""
    try:
        text = SQLITE_HEAD.read_text(encoding="utf-8")
    except OSError:
        return None
    first, _, body = text.partition("\n")
    if first != f"{_HEAD_MARK}{SCHEMA_REVISION}":
        return None
    return [statement for statement in body.split("\n;\n") if statement.strip()]


def write_sqlite_head(path: Path = SQLITE_HEAD) -> None:
    """Make a ledger through every migration and write the statements of its schema (in
    the order SQLite keeps them) and its revision to ``path``."""
    import tempfile

    from sqlalchemy import create_engine

    from ledger.store.backend import open_backend

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/head.db"
        backend = open_backend(url)
        try:
            upgrade(backend, through_migrations=True)
        finally:
            backend.close()
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
                ).fetchall()
                revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        finally:
            engine.dispose()
    statements = [str(sql) for (sql,) in rows]
    statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{revision}')")
    path.write_text(
        f"{_HEAD_MARK}{revision}\n" + "".join(f"{s}\n;\n" for s in statements), encoding="utf-8"
    )
