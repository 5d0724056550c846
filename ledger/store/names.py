"""Limits on the names an append carries (streams, ids, keys), checked before any write."""

from __future__ import annotations

from ledger.errors import InputError

STREAM_LENGTH_MAX = 200
KEY_LENGTH_MAX = 200
ENVELOPE_ID_LENGTH_MAX = 100
CHECKPOINT_NAME_LENGTH_MAX = 200


def check_name(what: str, value: str, length_max: int) -> None:
    """Raise ``InputError`` unless ``value`` is 1 to ``length_max`` characters."""
    if not value or len(value) > length_max:
        raise InputError(
            f"{what} must be 1 to {length_max} characters, got {len(value)}",
            hint=f"pass a shorter, non-empty {what}",
            **{what: value[:60]},
        )
