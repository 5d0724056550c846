"""Stored events: a domain event together with the envelope the ledger gave it.

``RecordedEvent`` is decoded straight from a row's canonical record (a JSON array, see
``ledger.codec``), so its first ten fields are in record order; ``prev_hash`` and ``hash``
come from the row and are set after decoding.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.events import AnyEvent


class RecordedEvent(msgspec.Struct, frozen=True, array_like=True):
    """One row of the ledger, decoded."""

    position: int
    stream: str
    version: int
    type: str
    recorded_at: datetime
    run_id: str | None
    causation_id: str | None
    correlation_id: str | None
    idempotency_key: str | None
    event: AnyEvent
    prev_hash: bytes = b""
    hash: bytes = b""


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts and the chain head of a ledger."""

    head_position: int
    head_hash: str
    events: int
    by_type: dict[str, int]
    by_stream: dict[str, int]
