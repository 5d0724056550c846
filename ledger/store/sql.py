"""Every SQL statement the store runs, named once, in the backend's parameter style."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ledger.store.schema import ROW_COLUMNS

LEASE_COLUMNS = (
    "run_id, owner, pid, host, state, heartbeat_us, expires_us, cycles_done, cycles_planned"
)
_HEAD = "SELECT position, record, prev_hash, hash FROM events ORDER BY position DESC LIMIT 1"


@dataclass(frozen=True)
class Statements:
    """The store's statements, written with ``?`` and converted by the backend."""

    insert_key: str
    stream_version: str
    version_and_head: str  # the stream's version and the chain head in one round trip
    head_row: str
    head_position: str
    position_at: str
    page: str
    full_page: str
    stream_page: str
    hash_at: str
    prev_hash_at: str
    delete_checkpoint: str
    insert_checkpoint: str
    load_checkpoint: str
    count_by_type: str
    count_by_stream: str
    lease: str
    insert_lease: str
    take_lease: str
    renew_lease: str
    release_lease: str
    all_leases: str

    @classmethod
    def for_backend(cls, sql: Callable[[str], str]) -> Statements:
        """The statements in the style of the backend's ``sql`` converter."""
        return cls(
            insert_key=sql(
                "INSERT INTO idempotency_keys (key, first_position, count, digest) "
                "VALUES (?, ?, ?, ?)"
            ),
            stream_version=sql("SELECT MAX(version) FROM events WHERE stream = ?"),
            version_and_head=sql(
                "SELECT (SELECT MAX(version) FROM events WHERE stream = ?), "
                "position, record, prev_hash, hash FROM events ORDER BY position DESC LIMIT 1"
            ),
            head_row=_HEAD,
            head_position="SELECT MAX(position) FROM events",
            position_at=sql("SELECT MAX(position) FROM events WHERE recorded_at_us <= ?"),
            page=sql(
                "SELECT position, record, hash FROM events WHERE position > ? AND "
                "position <= ? ORDER BY position LIMIT ?"
            ),
            full_page=sql(
                f"SELECT {ROW_COLUMNS} FROM events WHERE position > ? AND "
                "position <= ? ORDER BY position LIMIT ?"
            ),
            stream_page=sql(
                "SELECT position, record, prev_hash, hash FROM events "
                "WHERE stream = ? AND version > ? AND version <= ? ORDER BY version"
            ),
            hash_at=sql("SELECT hash FROM events WHERE position = ?"),
            prev_hash_at=sql("SELECT prev_hash FROM events WHERE position = ?"),
            delete_checkpoint=sql("DELETE FROM checkpoints WHERE name = ?"),
            insert_checkpoint=sql(
                "INSERT INTO checkpoints (name, position, code_version, state, state_hash, "
                "chain_hash) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            load_checkpoint=sql(
                "SELECT position, code_version, state, state_hash, chain_hash "
                "FROM checkpoints WHERE name = ?"
            ),
            count_by_type="SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type",
            count_by_stream="SELECT stream, COUNT(*) FROM events GROUP BY stream ORDER BY stream",
            lease=sql(f"SELECT {LEASE_COLUMNS} FROM run_leases WHERE run_id = ?"),
            insert_lease=sql(
                f"INSERT INTO run_leases ({LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            take_lease=sql(
                "UPDATE run_leases SET owner = ?, pid = ?, host = ?, state = ?, "
                "heartbeat_us = ?, expires_us = ?, cycles_done = ?, cycles_planned = ? "
                "WHERE run_id = ?"
            ),
            renew_lease=sql(
                "UPDATE run_leases SET heartbeat_us = ?, expires_us = ?, cycles_done = ? "
                "WHERE run_id = ? AND owner = ?"
            ),
            release_lease=sql(
                "UPDATE run_leases SET state = ?, heartbeat_us = ?, expires_us = ?, "
                "cycles_done = ? WHERE run_id = ? AND owner = ?"
            ),
            all_leases=f"SELECT {LEASE_COLUMNS} FROM run_leases ORDER BY run_id",
        )

    def idempotency_in(self, sql: Callable[[str], str], count: int) -> str:
        """The stored ``(key, first_position, count, digest)`` of ``count`` keys."""
        return sql(
            "SELECT key, first_position, count, digest FROM idempotency_keys "
            f"WHERE key IN ({', '.join('?' * count)})"
        )

    def query(self, sql: Callable[[str], str], *, stream: bool, types: int) -> str:
        """A filtered page of rows: by stream and/or ``types`` event types."""
        where = ["position > ?", "position <= ?"]
        if stream:
            where.append("stream = ?")
        if types:
            where.append(f"type IN ({', '.join('?' * types)})")
        return sql(
            "SELECT position, record, prev_hash, hash FROM events "
            f"WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        )
