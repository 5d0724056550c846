"""The stored shape of the ledger, as SQLAlchemy Core tables.

The schema itself is created and upgraded only by the alembic migrations in ``migrations/``;
these Table objects describe it for queries. ``SCHEMA_REVISION`` is the migration head this
code needs (a test checks it against alembic's head).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table

SCHEMA_REVISION = "0002_checkpoints"

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid; BIGINT would add an index.
POSITION_TYPE = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

events_table = Table(
    "events",
    metadata,
    Column("position", POSITION_TYPE, primary_key=True, autoincrement=False),
    Column("stream", String(200), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("type", String(100), nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),
    Column("record", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)

idempotency_table = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("first_position", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
)

# Column order of a full row. ``record`` holds the canonical bytes the hash covers (the
# whole envelope and the event); stream, version, type and recorded_at_us are copies kept
# for indexes and SQL queries, and ``tally verify`` checks that they agree with the record.
# The rarely-set ids (run, causation, correlation, idempotency key) live only in the record:
# four mostly-NULL columns cost a quarter of SQLite's insert speed.
ROW_COLUMNS = "position, stream, version, type, recorded_at_us, record, prev_hash, hash"
