"""The driver-error boundary classifies by code and class, and every wait is bounded by a
named setting: a held lock is a StoreBusy error after store.*_timeout_ms, never a hang."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ledger import events, open_store
from ledger.errors import StoreBusy, StoreConnectionLost, StoreUnavailable
from ledger.store import StoreSettings
from ledger.store.postgres import APPEND_LOCK_KEY

DEPOSIT = events.FundsDeposited(account="main", asset="USDT", amount=Decimal("1"))


def test_a_held_sqlite_write_lock_is_store_busy_after_busy_timeout(sqlite_url: str) -> None:
    path = make_url(sqlite_url).database
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with open_store(sqlite_url, settings=StoreSettings(busy_timeout_ms=150)) as store:
            started = time.monotonic()
            with pytest.raises(StoreBusy, match="locked by another writer") as caught:
                store.append("s", [DEPOSIT], expected_version=0)
            waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.transient and caught.value.exit_code == 2
    assert 0.1 <= waited < 5  # the named wait, not the default 10 s nor forever


@pytest.mark.postgres
def test_a_held_append_lock_is_store_busy_after_lock_timeout(pg_url: str) -> None:
    plain = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK_KEY,))
        with open_store(pg_url, settings=StoreSettings(lock_timeout_ms=200)) as store:
            started = time.monotonic()
            with pytest.raises(StoreBusy, match="lock_timeout_ms") as caught:
                store.append("s", [DEPOSIT], expected_version=0)
            waited = time.monotonic() - started
        holder.rollback()
    assert caught.value.context["sqlstate"] == "55P03" and caught.value.transient
    assert 0.15 <= waited < 5
    with open_store(pg_url) as store:  # nothing was written by the refused append
        assert store.head() == 0


@pytest.mark.postgres
def test_a_statement_past_statement_timeout_is_store_busy(pg_url: str) -> None:
    with (
        open_store(pg_url, settings=StoreSettings(statement_timeout_ms=100)) as store,
        pytest.raises(StoreBusy, match="statement_timeout_ms") as caught,
        store.backend.guard(),
        store.engine.connect() as conn,
    ):
        conn.exec_driver_sql("SELECT pg_sleep(2)")
    assert caught.value.context["sqlstate"] == "57014"


def test_a_server_that_is_not_there_is_a_lost_connection() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreConnectionLost) as caught:
        open_store(
            f"postgresql+psycopg://tally:pw@127.0.0.1:{port}/tally",
            settings=StoreSettings(connect_timeout_s=1),
        )
    assert caught.value.transient and "pw" not in caught.value.render()


def test_a_file_that_is_not_sqlite_is_classified_by_its_code(tmp_path: Path) -> None:
    path = tmp_path / "not-a-ledger.db"
    path.write_bytes(b"this is not a database " * 400)
    with pytest.raises(StoreUnavailable, match="not a readable SQLite database") as caught:
        open_store(f"sqlite:///{path}")
    assert not caught.value.transient
