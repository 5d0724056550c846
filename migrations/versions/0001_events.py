"""The event log, idempotency keys, and triggers that make both append-only.

Revision ID: 0001_events
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_events"
down_revision = None
branch_labels = None
depends_on = None

IMMUTABLE_TABLES = ("events", "idempotency_keys")


def upgrade() -> None:
    op.create_table(
        "events",
        # INTEGER on SQLite makes the position the rowid itself (no second index).
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("record", sa.LargeBinary, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("events_stream_version", "events", ["stream", "version"], unique=True)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("first_position", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("digest", sa.LargeBinary(32), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table in IMMUTABLE_TABLES:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_refuse_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'tally: {table} rows are immutable "
                f"({action} refused)'); END"
            )


def _postgres_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION tally_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'tally: % rows are immutable (% refused)', TG_TABLE_NAME, TG_OP;
        END
        $$
        """
    )
    for table in IMMUTABLE_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_refuse_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tally_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_refuse_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION tally_refuse_change()"
        )


def downgrade() -> None:
    # A ledger is never downgraded by dropping it: refuse rather than destroy history.
    raise RuntimeError("tally ledgers cannot be downgraded below their first revision")
