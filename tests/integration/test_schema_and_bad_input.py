"""Migrations, and every kind of bad database input: one clear error each, nothing written,
nothing already stored changed."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from ledger import events, init_store, open_store
from ledger.errors import SchemaOutdated, StoreUnavailable
from ledger.store.migrate import MIGRATIONS_DIR
from ledger.store.schema import SCHEMA_REVISION

ROOT = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.smoke
def test_schema_revision_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_REVISION]


def test_init_is_safe_to_run_twice_and_keeps_events(ledger_url: str) -> None:
    with open_store(ledger_url) as store:
        store.append(
            "s",
            [events.FundsDeposited(account="m", asset="X", amount=Decimal(1))],
            expected_version=0,
        )
        head = store.head_hash()
    assert init_store(ledger_url) == (SCHEMA_REVISION, SCHEMA_REVISION)
    with open_store(ledger_url) as store:
        assert store.head_hash() == head
        assert store.verify().events == 1


def init_in_a_fresh_process(url: str) -> list[str]:
    """``init_store(url)``'s answer in a new process, and whether it imported alembic."""
    probe = (
        "import sys\n"
        "from ledger import init_store\n"
        f"print(init_store({url!r}), 'alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout.split()


def test_init_of_a_current_ledger_leaves_alembic_unloaded(ledger_url: str) -> None:
    # A run into an existing ledger calls init: at the head it must not pay for alembic.
    answer = init_in_a_fresh_process(ledger_url)
    assert answer == [f"('{SCHEMA_REVISION}',", f"'{SCHEMA_REVISION}')", "False"]


def schema_of(path: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], int]:
    """Everything SQLite keeps of a ledger's schema: its objects, revision, page size."""
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        ).fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return objects, revision, page_size


def test_the_sqlite_head_file_is_what_the_migrations_make(tmp_path: Path) -> None:
    """A new SQLite ledger is made from migrations/head.sqlite.sql at once: it must be the
    very schema every migration in turn makes (regenerate it after adding a migration:
    python -c 'from ledger.store.migrate import write_sqlite_head; write_sqlite_head()')."""
    from ledger.store.backend import open_backend
    from ledger.store.migrate import SQLITE_HEAD, upgrade, write_sqlite_head

    regenerated = tmp_path / "head.sql"
    write_sqlite_head(regenerated)
    assert SQLITE_HEAD.read_text() == regenerated.read_text()
    made: dict[str, Path] = {}
    for how, through in (("head", False), ("migrations", True)):
        made[how] = tmp_path / f"{how}.db"
        backend = open_backend(f"sqlite:///{made[how]}")
        try:
            assert upgrade(backend, through_migrations=through) == (None, SCHEMA_REVISION)
        finally:
            backend.close()
    assert schema_of(made["head"]) == schema_of(made["migrations"])
    objects, revision, _ = schema_of(made["head"])
    assert revision == [(SCHEMA_REVISION,)] and len(objects) > 5


def test_a_new_sqlite_ledger_is_made_without_alembic_and_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert init_in_a_fresh_process(url) == ["(None,", f"'{SCHEMA_REVISION}')", "False"]
    with open_store(url) as store:  # and it is a ledger: appends, verifies, refuses edits
        store.append(
            "s",
            [events.FundsDeposited(account="m", asset="X", amount=Decimal(1))],
            expected_version=0,
        )
        assert store.verify().events == 1
    with sqlite3.connect(tmp_path / "new.db") as conn, pytest.raises(sqlite3.DatabaseError):
        conn.execute("DELETE FROM events")


@pytest.mark.smoke
def test_open_store_never_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(SchemaOutdated) as caught:
        open_store(f"sqlite:///{path}")
    assert "tally init" in caught.value.hint
    assert not path.exists()


@pytest.mark.smoke
def test_empty_file_is_uninitialised_and_stays_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(SchemaOutdated, match="no Tally ledger"):
        open_store(f"sqlite:///{path}")
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    "content", [b"not a database at all\n", b"SQLite format 3\x00" + b"\xff" * 200]
)
def test_corrupted_file_is_refused_and_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(content)
    for action in (
        lambda: open_store(f"sqlite:///{path}"),
        lambda: init_store(f"sqlite:///{path}"),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            action()
        assert str(path) in caught.value.render()
    assert path.read_bytes() == content


def test_a_torn_ledger_file_is_refused(sqlite_url: str) -> None:
    path = Path(make_url(sqlite_url).database or "")
    with open_store(sqlite_url) as store:
        store.append(
            "s",
            [
                events.FundsDeposited(account="m", asset="X", amount=Decimal(i + 1))
                for i in range(2000)
            ],
            expected_version=0,
        )
    data = bytearray(path.read_bytes())
    data[100:4000] = b"\x00" * 3900  # overwrite the header of the schema page
    path.write_bytes(bytes(data))
    with pytest.raises((StoreUnavailable, SchemaOutdated)), open_store(sqlite_url) as store:
        store.verify()


@pytest.mark.smoke
def test_foreign_sqlite_database_is_refused_by_open_and_init(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('alice')")
    before = digest(path)
    with pytest.raises(StoreUnavailable, match="not a Tally ledger"):
        init_store(f"sqlite:///{path}")
    with pytest.raises(StoreUnavailable, match="customers"):
        open_store(f"sqlite:///{path}")
    assert digest(path) == before


@pytest.mark.smoke
def test_outdated_schema_says_to_run_init(sqlite_url: str) -> None:
    path = make_url(sqlite_url).database or ""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    with pytest.raises(SchemaOutdated, match="0000_older") as caught:
        open_store(sqlite_url)
    assert "tally init" in caught.value.hint


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot open") as caught:
        init_store(f"sqlite:///{tmp_path}/no/such/folder/ledger.db")
    assert "folder" in caught.value.hint


@pytest.mark.smoke
def test_server_that_is_down(unused_port: int) -> None:
    url = f"postgresql+psycopg://tally:pw@127.0.0.1:{unused_port}/tally"
    for action in (lambda: open_store(url), lambda: init_store(url)):
        with pytest.raises(StoreUnavailable, match="cannot reach") as caught:
            action()
        assert "pw" not in caught.value.render()  # never print a password


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.postgres
def test_wrong_password_is_refused_clearly(pg_url: str) -> None:
    wrong = make_url(pg_url).set(password="definitely-wrong")
    with pytest.raises(StoreUnavailable, match="cannot reach or log in") as caught:
        open_store(wrong.render_as_string(hide_password=False))
    # libpq gives no SQLSTATE for a refused login: the server's own reason is shown.
    assert "password authentication failed" in caught.value.message
    assert "password" in caught.value.hint
    assert "definitely-wrong" not in caught.value.render()


@pytest.mark.postgres
def test_missing_postgres_database_is_named(pg_url: str) -> None:
    absent = make_url(pg_url).set(database="tally_no_such_db")
    with pytest.raises(StoreUnavailable, match="does not exist") as caught:
        open_store(absent.render_as_string(hide_password=False))
    assert "createdb" in caught.value.hint


@pytest.mark.postgres
def test_uninitialised_postgres_database(pg_empty_url: str) -> None:
    with pytest.raises(SchemaOutdated):
        open_store(pg_empty_url)
    assert init_store(pg_empty_url) == (None, SCHEMA_REVISION)
    with open_store(pg_empty_url) as store:
        assert store.head() == 0


def test_an_older_ledger_is_upgraded_by_init_and_keeps_its_events(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from ledger.store.backend import open_backend

    url = f"sqlite:///{tmp_path / 'old.db'}"
    backend = open_backend(url)
    engine = backend.engine(create=True)
    with engine.begin() as conn:  # a ledger as the first release of the schema left it
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_events")
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="0001_events") as caught:
        open_store(url)
    assert "tally init" in caught.value.hint
    assert init_store(url) == ("0001_events", SCHEMA_REVISION)
    with open_store(url) as store:
        store.append(
            "s",
            [events.FundsDeposited(account="m", asset="X", amount=Decimal(1))],
            expected_version=0,
        )
        assert store.verify().events == 1
