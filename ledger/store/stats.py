"""Counts of a ledger by type and stream, and its chain head."""

from __future__ import annotations

from ledger.codec import GENESIS_HASH
from ledger.recorded import StoreStats
from ledger.store.read import Reader


def stats(reader: Reader) -> StoreStats:
    """Return counts by type and stream, and the chain head."""
    sql = reader.sql
    by_type, by_stream, head = reader.fetch_together(
        sql.count_by_type, sql.count_by_stream, sql.head_row
    )
    return StoreStats(
        head_position=0 if not head else int(head[0][0]),
        head_hash=(GENESIS_HASH if not head else bytes(head[0][3])).hex(),
        events=sum(int(n) for _, n in by_type),
        by_type={str(k): int(n) for k, n in by_type},
        by_stream={str(k): int(n) for k, n in by_stream},
    )
