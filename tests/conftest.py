"""Shared fixtures: real SQLite files and a real PostgreSQL server, never mocks.

PostgreSQL tests need ``TALLY_TEST_PG_URL`` (an account that may create databases), which
``.ci/run`` sets after starting a throwaway server (``eval "$(.ci/pg-server start)"`` does
the same by hand). Without it they skip and say so; with ``CI=true`` a skip is a failure.
Each PostgreSQL test gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ledger import init_store, open_store
from ledger.clock import SimulatedClock
from ledger.store import EventStore

PG_ENV = "TALLY_TEST_PG_URL"
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
# One template per xdist worker: a worker never drops the template another is cloning.
TEMPLATE_DB = f"tally_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
_counter = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Runs before `-m` selects: a test marked slow is never part of the smoke subset, even
    # when its backend parameter (sqlite) carries the smoke mark.
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.own_markers = [m for m in item.own_markers if m.name != "smoke"]


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _require_pg() -> str:
    url = _pg_admin_url()
    if url is None:
        message = (
            f"PostgreSQL tests need {PG_ENV}=postgresql+psycopg://user:pw@127.0.0.1:PORT/postgres"
            ' (start one with: eval "$(.ci/pg-server start)")'
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run every PostgreSQL test: {message}")
        pytest.skip(message)
    return url


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> str:
    """A migrated database that every PostgreSQL test clones."""
    admin = _require_pg()
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    init_store(_libpq(admin, TEMPLATE_DB).replace("postgresql://", "postgresql+psycopg://"))
    return admin


def fresh_pg_database(admin: str, *, template: str | None = TEMPLATE_DB) -> Iterator[str]:
    name = f"tally_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.execute(f"CREATE DATABASE {name}{clause}")
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh, initialised PostgreSQL ledger."""
    yield from fresh_pg_database(pg_template)


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database with no schema at all."""
    yield from fresh_pg_database(_require_pg(), template=None)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger file migrated once; each test copies it (alembic per test costs ~25 ms)."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    init_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """URL of a fresh, initialised SQLite ledger file."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.smoke),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def ledger_url(request: pytest.FixtureRequest) -> str:
    """An initialised ledger on each backend in turn: the contract suite runs on both."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> SimulatedClock:
    from datetime import UTC, datetime, timedelta

    return SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC), tick=timedelta(milliseconds=1))


@pytest.fixture
def store(ledger_url: str, clock: SimulatedClock) -> Iterator[EventStore]:
    with open_store(ledger_url, clock=clock) as opened:
        yield opened


def shared_data(*parts: str) -> Path:
    """Path into ../shared/data; skips the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (it lives beside the project)")
    return path


@pytest.fixture(autouse=True)
def _operator_logging_restored() -> Iterator[None]:
    """A command run in-process configures the ``tally`` and ``ccxt`` loggers as the CLI
    does (its own handlers, a level, no propagation); undo that after each test, so the
    next one sees the loggers as a fresh process would."""
    saved = {
        name: (logger.level, logger.propagate, list(logger.handlers))
        for name in ("tally", "ccxt")
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
