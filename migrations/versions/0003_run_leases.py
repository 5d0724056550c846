"""Run leases: which process is recording a run now, and how far it got.

Revision ID: 0003_run_leases
Revises: 0002_checkpoints
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_run_leases"
down_revision = "0002_checkpoints"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not an event table: a runner's heartbeat is overwritten every few seconds, so it is
    # operational state beside the ledger, not part of it (a heartbeat per second as an
    # event would bury the run's own events). Times are the runner's wall clock, in
    # microseconds since the epoch.
    op.create_table(
        "run_leases",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("heartbeat_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("cycles_done", sa.BigInteger, nullable=False),
        sa.Column("cycles_planned", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_leases")
