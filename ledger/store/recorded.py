"""Stored events: a domain event together with the envelope the ledger gave it."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.events import AnyEvent


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
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
    prev_hash: bytes
    hash: bytes


class StoreStats(msgspec.Struct, frozen=True, kw_only=True):
    """Counts and the chain head of a ledger."""

    head_position: int
    head_hash: str
    events: int
    by_type: dict[str, int]
    by_stream: dict[str, int]
