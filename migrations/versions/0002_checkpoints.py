"""Projection checkpoints: a projection's state at a position, for a given code version.

Revision ID: 0002_checkpoints
Revises: 0001_events
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_checkpoints"
down_revision = "0001_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not an event table: a checkpoint is replaced as its projection moves on, and can always
    # be rebuilt from the events, so it has no immutability triggers.
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("code_version", sa.String(100), nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("state_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
