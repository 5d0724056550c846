"""The stored shape of the ledger: the schema revision this code needs and a row's columns.

The schema itself is created and upgraded only by the alembic migrations in ``migrations/``;
the store's statements (``ledger.store.sql``) name its columns. ``SCHEMA_REVISION`` is the
migration head this code needs (a test checks it against alembic's head).
"""

from __future__ import annotations

SCHEMA_REVISION = "0003_run_leases"

# Column order of a full row. ``record`` holds the canonical bytes the hash covers (the
# whole envelope and the event); stream, version, type and recorded_at_us are copies kept
# for indexes and SQL queries, and ``tally verify`` checks that they agree with the record.
# The rarely-set ids (run, causation, correlation, idempotency key) live only in the record:
# four mostly-NULL columns cost a quarter of SQLite's insert speed.
ROW_COLUMNS = "position, stream, version, type, recorded_at_us, record, prev_hash, hash"
