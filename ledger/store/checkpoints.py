"""Projection checkpoints: a state with the position and chain hash it was made at."""

from __future__ import annotations

from hashlib import sha256

from ledger.errors import CacheCorruptionError
from ledger.store.names import CHECKPOINT_NAME_LENGTH_MAX, check_name
from ledger.store.read import Reader


class Checkpoints:
    """Save and load projection states (not events: a checkpoint can always be rebuilt)."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def save(self, name: str, position: int, code_version: str, state: bytes) -> None:
        """Store a projection's state as of ``position`` (replacing the previous one)."""
        check_name("checkpoint name", name, CHECKPOINT_NAME_LENGTH_MAX)
        reader, sql = self.reader, self.reader.sql
        chain = reader.hash_at(position)
        digest = sha256(state).digest()
        with reader.backend.guard(), reader.backend.write(reader.engine) as cursor:
            cursor.execute(sql.delete_checkpoint, (name,))
            cursor.execute(
                sql.insert_checkpoint, (name, position, code_version, state, digest, chain)
            )

    def load(self, name: str, code_version: str) -> tuple[int, bytes] | None:
        """Return (position, state) of a checkpoint made by ``code_version``, if usable.

        None when there is none, when another code version made it (its projection changed:
        rebuild from zero), or when the ledger no longer holds the chain it was made from.
        A checkpoint whose state does not match its own hash is corruption, not staleness.
        """
        rows = self.reader.fetch(self.reader.sql.load_checkpoint, (name,))
        if not rows:
            return None
        position, version, state, state_hash, chain = rows[0]
        state, state_hash, chain = bytes(state), bytes(state_hash), bytes(chain)
        if sha256(state).digest() != state_hash:
            raise CacheCorruptionError(
                f"checkpoint {name!r} does not match its hash",
                checkpoint=name,
                hint="delete the checkpoint row; the projection rebuilds from the events",
            )
        if version != code_version or self.reader.hash_at(position) != chain:
            return None
        return int(position), state
