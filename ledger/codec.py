"""Canonical encoding of events and records. Set in stone: every hash depends on it.

An event encodes as compact JSON: the ``type`` tag first, then fields in declaration order,
``Decimal`` as strings, dict keys sorted, times as RFC 3339 UTC; fields at their default are
left out, so a new defaulted field leaves existing encodings unchanged.

A *record* is what one ledger row stores and what its hash covers: the JSON array
``[position, stream, version, type, recorded_at, run_id, causation_id, correlation_id,
idempotency_key, event]``. The row's hash is ``sha256(prev_hash || b"tally/1" || record)``.
Hashing the stored bytes themselves (rather than re-encoding columns) means a reader checks
a hash without re-encoding anything, and decodes a whole row with one call.

``tests/unit/test_codec_vectors.py`` pins the bytes and hashes of a fixed list of events;
changing any of this is a breaking change for every stored ledger and must be deliberate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from hashlib import sha256

import msgspec

from ledger import events
from ledger.errors import UnknownEventType
from ledger.recorded import RecordedEvent

GENESIS_HASH = bytes(32)
DOMAIN_TAG = b"tally/1"

_encoder = msgspec.json.Encoder(decimal_format="string", order="deterministic")
_event_decoder = msgspec.json.Decoder(events.AnyEvent)
_record_decoder = msgspec.json.Decoder(RecordedEvent)

# The replay hot path decodes with this directly and falls back to ``decode_record`` only to
# explain a failure; raises msgspec.ValidationError / msgspec.DecodeError.
decode_record_unchecked = _record_decoder.decode


def encode_event(event: events.Event) -> bytes:
    """Return the canonical bytes of ``event``; refuse floats where money belongs."""
    events.check_money(event)
    return _encoder.encode(event)


def decode_event(payload: bytes) -> events.AnyEvent:
    """Decode canonical event bytes."""
    try:
        event: events.AnyEvent = _event_decoder.decode(payload)
        return event
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise UnknownEventType(f"cannot decode the event: {e}") from e


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What an append says about all of its events: when, and on whose behalf."""

    recorded_at: datetime
    run_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None


def encode_record(
    envelope: Envelope, event: events.Event, *, position: int, stream: str, version: int
) -> bytes:
    """Return the canonical record bytes of one row (what its hash covers)."""
    return encode_record_payload(
        envelope,
        type(event).__name__,
        encode_event(event),
        position=position,
        stream=stream,
        version=version,
    )


def encode_record_payload(
    envelope: Envelope, type_name: str, payload: bytes, *, position: int, stream: str, version: int
) -> bytes:
    """``encode_record`` from the event's canonical bytes (``encode_event``), spliced in as
    they are: the same record, byte for byte, without encoding and checking the event twice
    when an append has already encoded it for its idempotency digest."""
    return _encoder.encode(
        (
            position,
            stream,
            version,
            type_name,
            envelope.recorded_at,
            envelope.run_id,
            envelope.causation_id,
            envelope.correlation_id,
            envelope.idempotency_key,
            msgspec.Raw(payload),
        )
    )


def encode_records(
    envelope: Envelope,
    stream: str,
    batch: Sequence[events.Event],
    *,
    first_position: int,
    first_version: int,
) -> list[bytes]:
    """``encode_record`` of a run of events of one stream at consecutive positions and
    versions, each event nested in its record by the one encoder call that writes the record
    (byte for byte what ``encode_record`` writes: the same encoder, the same order). The
    events must have passed ``events.check_money`` (``encode_event`` does it)."""
    encode = _encoder.encode
    at, run_id, cause, corr, key = (
        envelope.recorded_at,
        envelope.run_id,
        envelope.causation_id,
        envelope.correlation_id,
        envelope.idempotency_key,
    )
    return [
        encode(
            (
                first_position + i,
                stream,
                first_version + i,
                type(event).__name__,
                at,
                run_id,
                cause,
                corr,
                key,
                event,
            )
        )
        for i, event in enumerate(batch)
    ]


def decode_record(record: bytes, *, position: int | None = None) -> RecordedEvent:
    """Decode a stored record (``prev_hash`` and ``hash`` are left empty)."""
    try:
        return _record_decoder.decode(record)
    except msgspec.ValidationError as e:
        raise UnknownEventType(
            f"cannot decode the stored event: {e}",
            position=position,
            record=record[:160].decode("utf-8", "replace"),
        ) from e
    except msgspec.DecodeError as e:
        raise UnknownEventType(
            f"the stored record is not valid JSON: {e}", position=position
        ) from e


def chain_hash(prev_hash: bytes, record: bytes) -> bytes:
    """Return the hash that links a row holding ``record`` to ``prev_hash``."""
    return sha256(prev_hash + DOMAIN_TAG + record).digest()
