"""Hash-chain verification, streaming, in constant memory.

Each row's hash covers its canonical record (position included) and the previous row's
hash, so every kind of tampering leaves a distinct trace, which ``ChainVerifier`` names:

- ``row_missing``      a position is absent (a row was deleted);
- ``payload_changed``  a row's record no longer matches its own hash;
- ``rows_reordered``   a row holds the record written for another position (rows swapped);
- ``hash_forged``      a row was changed and its hash recomputed: it is self-consistent, but
                       the next row still links to the original hash;
- ``column_changed``   a queryable column disagrees with the hashed record;
- ``type_mismatch``    the record's type does not name the event it holds;
- ``head_mismatch``    the chain does not end at the head an operator recorded (truncation).
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256
from typing import Any, NoReturn

import msgspec
from msgspec.structs import force_setattr

from ledger.clock import to_micros
from ledger.codec import (
    DOMAIN_TAG,
    GENESIS_HASH,
    chain_hash,
    decode_record,
    decode_record_unchecked,
)
from ledger.errors import ChainIntegrityError, UnknownEventType
from ledger.recorded import RecordedEvent

# A full raw row, in ``schema.ROW_COLUMNS`` order.
Row = tuple[Any, ...]
# Returns the stored prev_hash column of a position (used only to explain a break).
PrevHashAt = Callable[[int], bytes | None]


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``verify`` checked: how many events, and the head it ended at."""

    events: int
    first_position: int
    head_position: int
    head_hash: str


def broken(position: int, kind: str, detail: str, **context: Any) -> ChainIntegrityError:
    """The integrity error for a break of ``kind`` at ``position``."""
    return ChainIntegrityError(
        f"hash chain broken at position {position}: {detail}",
        position=position,
        kind=kind,
        **context,
    )


def check_self(position: int, record: bytes, prev_hash: bytes, stored_hash: bytes) -> None:
    """Raise unless a row's record and stored prev_hash give its stored hash."""
    if chain_hash(prev_hash, record) != stored_hash:
        raise broken(position, "payload_changed", _CHANGED)


_CHANGED = (
    "the row's record no longer matches its stored hash "
    "(its content was changed after it was written)"
)


class ChainVerifier:
    """Check rows in position order against the chain that precedes them."""

    def __init__(
        self,
        *,
        first_position: int = 1,
        prev_hash: bytes = GENESIS_HASH,
        prev_hash_at: PrevHashAt | None = None,
    ) -> None:
        self.first_position = first_position
        self.expected_position = first_position
        self.prev_hash = prev_hash
        self.count = 0
        self._prev_hash_at = prev_hash_at

    def check(self, position: int, record: bytes, stored_hash: bytes) -> None:
        """Check the next row against the chain so far; raise at a break, naming its kind."""
        if position != self.expected_position:
            self._raise_gap(position)
        if chain_hash(self.prev_hash, record) != stored_hash:
            raise self._explain(position, record, stored_hash)
        self.prev_hash = stored_hash
        self.expected_position = position + 1
        self.count += 1

    def _raise_gap(self, position: int) -> None:
        if position > self.expected_position:
            missing = self.expected_position
            raise broken(
                missing,
                "row_missing",
                f"position {missing} is missing (the next row is {position}): a row was deleted",
            )
        raise broken(position, "rows_reordered", "positions are not increasing")

    def _explain(self, position: int, record: bytes, stored_hash: bytes) -> ChainIntegrityError:
        try:
            written_for = decode_record(record, position=position).position
        except UnknownEventType:
            written_for = position
        if written_for != position:
            return broken(
                position,
                "rows_reordered",
                f"the row holds the record written for position {written_for}: "
                "rows were swapped or moved",
                written_for=written_for,
            )
        stored_prev = self._prev_hash_at(position) if self._prev_hash_at else None
        intact = stored_prev is not None and chain_hash(stored_prev, record) == stored_hash
        if intact and position > self.first_position:
            forged = position - 1
            return broken(
                forged,
                "hash_forged",
                f"row {forged} matches its hash, but row {position} was linked to a "
                f"different hash: row {forged} was changed and its hash recomputed",
            )
        return broken(position, "payload_changed", _CHANGED)

    def finish(self, expect_head: bytes | None = None) -> VerifyReport:
        """End the walk; with ``expect_head``, raise unless the chain ends at that hash."""
        head_position = self.expected_position - 1
        if expect_head is not None and expect_head != self.prev_hash:
            raise broken(
                head_position,
                "head_mismatch",
                f"the chain ends with hash {self.prev_hash.hex()}, not the expected "
                f"{expect_head.hex()}: rows were removed from the end or rewritten",
            )
        return VerifyReport(
            events=self.count,
            first_position=self.first_position,
            head_position=head_position,
            head_hash=self.prev_hash.hex(),
        )


def check_event_type(recorded: RecordedEvent) -> None:
    """Raise if a record's ``type`` does not name the event it holds."""
    actual = type(recorded.event).__name__
    if actual != recorded.type:
        raise broken(
            recorded.position,
            "type_mismatch",
            f"the record says type {recorded.type!r} but holds {actual!r}",
        )


def check_columns(row: Row, recorded: RecordedEvent, prev_hash: bytes) -> None:
    """Raise if a queryable column of a full row disagrees with its hashed record."""
    expected = (
        ("stream", row[1], recorded.stream),
        ("version", row[2], recorded.version),
        ("type", row[3], recorded.type),
        ("recorded_at_us", row[4], to_micros(recorded.recorded_at)),
    )
    for name, column, wanted in expected:
        if column != wanted:
            raise broken(
                row[0],
                "column_changed",
                f"column {name} says {column!r} but the hashed record says {wanted!r}",
                column=name,
            )
    if bytes(row[6]) != prev_hash:
        raise broken(
            row[0],
            "column_changed",
            "column prev_hash does not hold the hash of the row before",
            column="prev_hash",
        )


# Raises the integrity error that explains why a row failed its check.
Explain = Callable[[int, bytes, bytes, bytes], NoReturn]


def explain_standalone(
    position: int, record: bytes, prev_hash: bytes, stored_hash: bytes
) -> NoReturn:
    """A row read on its own (by stream or type): only its own hash can be checked."""
    check_self(position, record, prev_hash, stored_hash)
    decode_record(record, position=position)  # raises UnknownEventType
    raise broken(position, "payload_changed", _CHANGED)  # pragma: no cover - unreachable


def checked_row(
    position: int,
    record: bytes,
    prev_hash: bytes,
    stored_hash: bytes,
    explain: Explain = explain_standalone,
) -> RecordedEvent:
    """The one check every reader makes of a row before it hands the event out.

    The row's hash must be ``sha256(prev_hash || tag || record)``, its record must decode,
    name the position it is stored at and the type of the event it holds. The common case
    runs inline (it is every replay's hot loop); a failure goes to ``explain``, which raises
    the error that names the break.
    """
    if sha256(prev_hash + DOMAIN_TAG + record).digest() != stored_hash:
        explain(position, bytes(record), bytes(prev_hash), bytes(stored_hash))
    try:
        recorded = decode_record_unchecked(record)
    except (msgspec.ValidationError, msgspec.DecodeError):
        decode_record(bytes(record), position=position)  # raises with the reason
        raise  # pragma: no cover - decode_record raised
    if recorded.position != position:
        raise broken(
            position,
            "column_changed",
            f"the row at position {position} holds the record of position {recorded.position}",
        )
    if recorded.type != type(recorded.event).__name__:
        check_event_type(recorded)
    force_setattr(recorded, "prev_hash", prev_hash)
    force_setattr(recorded, "hash", stored_hash)
    return recorded
