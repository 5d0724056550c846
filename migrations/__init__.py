"""Alembic migrations: the only code that creates or changes the ledger's schema."""
