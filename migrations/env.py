"""Alembic environment: Tally always hands alembic an open connection (see ledger.store.migrate)."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `tally init`, which passes the connection")

context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
