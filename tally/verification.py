"""Verified up to where: a checkpoint of the last position whose chain was verified.

`tally verify` and `POST /v1/verify` record it; `tally health` reports how many events were
appended after it (the verify lag). An incremental verify checks only the rows after it:
every hash and every link, starting from the checkpoint's row, whose hash the checkpoint
holds (a checkpoint whose row changed is ignored, and the verify starts from position 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.errors import StoreUnavailable

if TYPE_CHECKING:
    from ledger.store import EventStore

CHECKPOINT = "chain-verified"
CODE_VERSION = "1"


def verified_position(store: EventStore) -> int:
    """The last position verified whose row is still the one verified (0 if none)."""
    found = store.load_checkpoint(CHECKPOINT, CODE_VERSION)
    return 0 if found is None else found[0]


def record_verified(store: EventStore, position: int) -> bool:
    """Remember that the chain is verified up to ``position``; False on a read-only ledger."""
    if position < 1:
        return False
    try:
        store.save_checkpoint(CHECKPOINT, position, CODE_VERSION, b"")
    except StoreUnavailable:
        return False  # an archive on a read-only disk verifies, but cannot remember it
    return True


def verify(store: EventStore, *, full: bool = False) -> dict[str, Any]:
    """Verify from the last verified position (or from the start when ``full``), record the
    new head as verified and say what was checked. Raises ``ChainIntegrityError``."""
    start = 0 if full else verified_position(store)
    if start == 0:
        report = store.verify()
        checked, head, head_hash = report.events, report.head_position, report.head_hash
    else:
        checked, head = 0, start
        head_hash = next(store.raw_records(start, start))[2].hex()  # if nothing is new
        for recorded in store.read_all(start + 1):  # each row's hash and link are checked
            checked += 1
            head, head_hash = recorded.position, recorded.hash.hex()
    record_verified(store, head)
    return {
        "ok": True,
        "full": start == 0,
        "from_position": start + 1,
        "events": checked,
        "head_position": head,
        "head_hash": head_hash,
    }
