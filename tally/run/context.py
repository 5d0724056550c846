"""A run's recorded context and its fingerprint.

``RunStarted`` holds everything needed to run it again: mode, seed, the full configuration
and its stable hash, the data manifest, plus where it ran (code version, Python, platform,
package versions). The run id is derived from what determines the run (config hash, seed,
data), so the same inputs give the same id.

The fingerprint is a sha256 over the run's own events, without their ledger positions,
stream versions or chain hashes, without the "where it ran" part of ``RunStarted``, and
without the bookkeeping of interruptions (``RunStopped``, ``RunResumed``).
DESIGN.md had it as the chain hash at ``RunFinished``; that hash also depends on whatever the
ledger held before the run, so the same run in a scratch ledger, or on PostgreSQL, or after
another run would never match. This fingerprint does.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from ledger import __version__, events
from ledger.errors import UnknownEventType

FINGERPRINT_TAG = b"tally-run/1"
# Records of how a run was interrupted and resumed, not of what it did: a run stopped and
# resumed any number of times fingerprints like the same run done in one go.
BOOKKEEPING = frozenset({"RunResumed", "RunStopped"})
KEY_PACKAGES = ("sqlalchemy", "msgspec", "ccxt", "pandas", "pydantic", "alembic", "psycopg")
_encoder = msgspec.json.Encoder(decimal_format="string", order="deterministic")
ROOT = Path(__file__).resolve().parents[2]


def check_catalog(started: events.RunStarted) -> None:
    """Refuse to carry on or re-execute a run recorded in a catalog newer than this code's:
    it would record in another shape than the run started with."""
    if started.catalog > events.CATALOG:
        raise UnknownEventType(
            f"run {started.run_id} was recorded in event catalog {started.catalog}; "
            f"this version of Tally records catalog {events.CATALOG} at most",
            hint="run it with the version of Tally that recorded it, or a newer one",
            run_id=started.run_id,
            catalog=started.catalog,
        )


def config_hash(config: dict[str, Any]) -> str:
    """A stable hash of a configuration: canonical JSON (sorted keys), sha256."""
    return hashlib.sha256(_encoder.encode(config)).hexdigest()


def run_id_for(config_digest: str, seed: int, data: dict[str, Any]) -> str:
    digest = hashlib.sha256(_encoder.encode([config_digest, seed, data])).hexdigest()
    return f"run-{digest[:12]}"


def code_version() -> str:
    """The git commit of the code when it runs from a checkout, else the package version."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return f"tally-ledger {__version__}"
    sha = found.stdout.strip()
    if found.returncode != 0 or len(sha) != 40:
        return f"tally-ledger {__version__}"
    return sha + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, str]:
    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in KEY_PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = "absent"
    return info


class _Row(msgspec.Struct, array_like=True, frozen=True):
    """A stored record, split without decoding the event (see ``ledger.codec``)."""

    position: int
    stream: str
    version: int
    type: str
    recorded_at: msgspec.Raw
    run_id: str | None
    causation_id: msgspec.Raw
    correlation_id: msgspec.Raw
    idempotency_key: msgspec.Raw
    event: msgspec.Raw


_row_decoder = msgspec.json.Decoder(_Row)
_event_decoder = msgspec.json.Decoder(events.AnyEvent)


def canonical(record: bytes) -> tuple[str | None, str, bytes]:
    """(run id, event type, the record's canonical form for comparison across ledgers).

    The stored record minus its position and stream version (they depend on what else the
    ledger holds); ``RunStarted`` also minus where the run ran. The event's own bytes are
    already canonical, so they are used as stored.
    """
    row = _row_decoder.decode(record)
    body = row.event
    if row.type == "RunStarted":
        started = _event_decoder.decode(body)
        body = msgspec.Raw(
            _encoder.encode(msgspec.structs.replace(started, code_version="", environment={}))
        )
    return (
        row.run_id,
        row.type,
        _encoder.encode(
            (
                row.stream,
                row.type,
                row.recorded_at,
                row.run_id,
                row.causation_id,
                row.correlation_id,
                row.idempotency_key,
                body,
            )
        ),
    )


def run_records(
    records: Iterable[tuple[int, bytes, bytes]], run_id: str
) -> Iterator[tuple[int, bytes]]:
    """(position, canonical form) of ``run_id``'s records, in ledger order, without the
    bookkeeping of interruptions (see ``BOOKKEEPING``)."""
    for position, record, _hash in records:
        owner, kind, form = canonical(record)
        if owner == run_id and kind not in BOOKKEEPING:
            yield position, form


def fingerprint(forms: Iterable[bytes]) -> tuple[str, int]:
    """(fingerprint, number of events) over canonical forms in ledger order."""
    digest = hashlib.sha256(FINGERPRINT_TAG)
    count = 0
    for form in forms:
        digest.update(hashlib.sha256(form).digest())
        count += 1
    return digest.hexdigest(), count
