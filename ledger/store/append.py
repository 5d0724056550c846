"""Appending: atomic batches with optimistic concurrency and idempotency keys.

One transaction per append (or per unit of work) holds the backend's append lock, reads the
stream versions and the chain head, re-checks the head row's own hash (never chain onto a
tampered row), encodes and hashes every event and inserts the rows. Positions are therefore
gapless and in commit order on both backends. A write connection whose own append left the
head, with no other connection's commit since (``Backend.memo``: SQLite's data version),
chains onto the hash it wrote instead of reading the row again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, NamedTuple

from ledger.chain import check_self
from ledger.clock import to_micros
from ledger.codec import (
    DOMAIN_TAG,
    GENESIS_HASH,
    Envelope,
    encode_event,
    encode_record_payload,
    encode_records,
)
from ledger.errors import ConcurrencyError, IdempotencyConflict
from ledger.events import Event, check_money
from ledger.store.backend import Backend
from ledger.store.names import (
    ENVELOPE_ID_LENGTH_MAX,
    KEY_LENGTH_MAX,
    STREAM_LENGTH_MAX,
    check_name,
)
from ledger.store.read import Reader


class StreamAppend(NamedTuple):
    """One stream's part of an ``append_many``."""

    stream: str
    events: Sequence[Event]
    expected_version: int | None = None


def group_appends(items: Sequence[tuple[str, Event]]) -> list[StreamAppend]:
    """Events in the order they happened, as appends: one per run of the same stream."""
    runs: list[tuple[str, list[Event]]] = []
    for stream, event in items:
        if runs and runs[-1][0] == stream:
            runs[-1][1].append(event)
        else:
            runs.append((stream, [event]))
    return [StreamAppend(stream, batch) for stream, batch in runs]


class Append(NamedTuple):
    """One append of ``append_all``: its batches and envelope. ``recorded_at`` None reads
    the store's clock under the lock; a time given is the one the append was made at (a
    backtest's cycles, held in memory and written together)."""

    batches: Sequence[StreamAppend]
    idempotency_key: str | None = None
    run_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    recorded_at: datetime | None = None


# Keys looked up in one statement (SQLite allowed 999 parameters before 3.32).
KEYS_LOOKED_UP_MAX = 500
# Stream versions a write connection keeps between appends (see Backend.memo); beyond that
# they are forgotten and read again as streams are met.
STREAMS_KEPT_MAX = 10_000


@dataclass
class _Known:
    """What our own appends left: the head and the streams' versions (in a unit of work, or
    kept by the write connection between transactions: ``Backend.memo``)."""

    head: tuple[int, bytes] | None = None
    versions: dict[str, int] = field(default_factory=dict)


class Appender:
    """Writes of one ledger; ``now`` is the injected clock's time, read under the lock."""

    def __init__(self, reader: Reader, now: Callable[[], datetime]) -> None:
        self.reader = reader
        self.now = now
        # The open write cursor of a unit_of_work, per thread: an append from another thread
        # (an alert delivery's record) takes its own connection and transaction instead of
        # landing in the unit's.
        self._local = threading.local()

    @property
    def _known(self) -> _Known | None:
        return getattr(self._local, "known", None)

    @property
    def _unit(self) -> Any:
        return getattr(self._local, "unit", None)

    @_unit.setter
    def _unit(self, cursor: Any) -> None:
        self._local.unit = cursor

    def append_many(
        self,
        batches: Sequence[StreamAppend],
        *,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> list[list[int]]:
        """Append to several streams in one transaction; return the positions per batch."""
        (positions,) = self.append_all(
            [Append(batches, idempotency_key, run_id, causation_id, correlation_id)]
        )
        return positions

    def append_all(self, appends: Sequence[Append]) -> list[list[list[int]]]:
        """Several appends in one transaction, each as ``append_many`` would make it (its
        own envelope, idempotency key and time); their rows are inserted with one statement.
        Return the positions per append and batch. All or nothing."""
        if len(appends) == 1 and appends[0].idempotency_key is None:
            return [self._append_plain(appends[0])]
        return self._append_general(appends)

    def _append_plain(self, append: Append) -> list[list[int]]:
        """One append without an idempotency key (``EventStore.append``'s common case):
        the rows ``_append_general`` writes, byte for byte (a test compares the two), with
        none of its bookkeeping for keys and for several appends. Beside a one-event
        append's SQL, its Python is the cost, and it costs more between a disk's fsyncs
        than warm: CPU beyond raw sqlite3's, 19 to 24 us an append on disk against 10 to 15
        on a memory file system."""
        batches = append.batches
        sizes, _, _ = _prepare(append)  # names and money checked (no key: nothing encoded)
        if not any(sizes):
            return [[] for _ in sizes]
        backend = self.reader.backend
        with backend.guard(), self._writing() as cursor:
            known = self._known
            kept: _Known | None = None
            if known is None:  # not in a unit of work: what this connection's last append left
                known = kept = backend.memo(cursor) or _Known()
            versions: dict[str, int] = {}
            head = self._head(cursor, batches[0].stream, versions, known)
            # The clock is read under the append lock, as in _append_general.
            at = self.now() if append.recorded_at is None else append.recorded_at
            envelope = Envelope(
                recorded_at=at.astimezone(UTC),
                run_id=append.run_id,
                causation_id=append.causation_id,
                correlation_id=append.correlation_id,
            )
            rows: list[tuple[Any, ...]] = []
            last = self._rows(cursor, envelope, batches, None, head, versions, known, rows)
            backend.insert_rows(cursor, rows)
            known.head = last
            known.versions.update(versions)
            if kept is not None:
                _keep(backend, cursor, kept)
        return _split(head[0] + 1, sizes)

    def _append_general(self, appends: Sequence[Append]) -> list[list[list[int]]]:
        """``append_all`` of any appends: keys looked up and replayed, envelopes per append."""
        prepared = [_prepare(append) for append in appends]
        counts = [sum(sizes) for sizes, _, _ in prepared]
        if not any(counts):
            return [[[] for _ in append.batches] for append in appends]
        backend, sql = self.reader.backend, self.reader.sql
        with backend.guard(), self._writing() as cursor:
            # Read the clock under the append lock: on one machine, times follow positions.
            now: datetime | None = None
            # Keys seen before (or earlier in this call): their appends replay.
            keyed = [
                a.idempotency_key
                for a, count in zip(appends, counts, strict=True)
                if a.idempotency_key is not None and count
            ]
            seen = self._seen(cursor, keyed) if keyed else {}
            known = self._known
            kept: _Known | None = None
            if known is None:  # not in a unit of work: what this connection's last append left
                known = kept = backend.memo(cursor) or _Known()
            versions: dict[str, int] = {}
            head: tuple[int, bytes] | None = None
            rows: list[tuple[Any, ...]] = []
            keys: list[tuple[str, int, int, bytes]] = []
            placed: list[list[list[int]]] = []
            for append, count, (sizes, payloads, digest) in zip(
                appends, counts, prepared, strict=True
            ):
                key = append.idempotency_key
                if count == 0:
                    placed.append([[] for _ in sizes])
                    continue
                if key is not None and key in seen:
                    placed.append(_split(_replay_idempotent(key, seen[key], count, digest), sizes))
                    continue
                if head is None:
                    head = self._head(cursor, append.batches[0].stream, versions, known)
                if append.recorded_at is not None:
                    at = append.recorded_at.astimezone(UTC)
                else:
                    if now is None:
                        now = self.now().astimezone(UTC)
                    at = now
                envelope = Envelope(
                    recorded_at=at,
                    run_id=append.run_id,
                    causation_id=append.causation_id,
                    correlation_id=append.correlation_id,
                    idempotency_key=key,
                )
                first = head[0] + 1
                head = self._rows(
                    cursor, envelope, append.batches, payloads, head, versions, known, rows
                )
                if key is not None:
                    keys.append((key, first, count, digest))
                    seen[key] = (first, count, digest)
                placed.append(_split(first, sizes))
            if rows:
                backend.insert_rows(cursor, rows)
            if keys:
                cursor.executemany(sql.insert_key, keys)
            if head is not None:
                known.head = head
                known.versions.update(versions)
            if kept is not None:
                _keep(backend, cursor, kept)
        return placed

    def _seen(self, cursor: Any, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        """The stored (first position, count, digest) of each of ``keys`` that was used."""
        seen: dict[str, tuple[Any, ...]] = {}
        reader = self.reader
        for start in range(0, len(keys), KEYS_LOOKED_UP_MAX):
            chunk = keys[start : start + KEYS_LOOKED_UP_MAX]
            cursor.execute(reader.sql.idempotency_in(reader.backend.sql, len(chunk)), chunk)
            for key, *stored in cursor.fetchall():
                seen[key] = tuple(stored)
        return seen

    def _rows(
        self,
        cursor: Any,
        envelope: Envelope,
        batches: Sequence[StreamAppend],
        payloads: list[list[bytes]] | None,
        head: tuple[int, bytes],
        versions: dict[str, int],
        known: _Known,
        rows: list[tuple[Any, ...]],
    ) -> tuple[int, bytes]:
        """Add the rows of one append's ``batches`` after ``head`` to ``rows``; return the
        new head. ``versions`` holds the streams' versions, read as they are first met
        (from ``known`` when it has them)."""
        position, prev = head
        recorded_at_us = to_micros(envelope.recorded_at)
        for index, batch in enumerate(batches):
            stream = batch.stream
            if stream not in versions:
                if stream in known.versions:
                    versions[stream] = known.versions[stream]
                else:
                    cursor.execute(self.reader.sql.stream_version, (stream,))
                    versions[stream] = cursor.fetchone()[0] or 0
            version = versions[stream]
            if batch.expected_version is not None and batch.expected_version != version:
                raise ConcurrencyError(stream, batch.expected_version, version)
            records = _records(envelope, batch, payloads, index, position, version)
            for event, record in zip(batch.events, records, strict=True):
                position += 1
                version += 1
                # chain_hash, inline: this loop runs for every event appended.
                row_hash = sha256(prev + DOMAIN_TAG + record).digest()
                rows.append(
                    (
                        position,
                        stream,
                        version,
                        type(event).__name__,
                        recorded_at_us,
                        record,
                        prev,
                        row_hash,
                    )
                )
                prev = row_hash
            versions[stream] = version
        return position, prev

    def _head(
        self, cursor: Any, stream: str, versions: dict[str, int], known: _Known
    ) -> tuple[int, bytes]:
        """The head's position and hash (and ``stream``'s version into ``versions``)."""
        if known.head is not None:
            # After an append of our own, in this unit of work (the lock has been ours
            # since) or on this connection with nothing committed by anyone else since
            # (``Backend.memo``): the head and the versions are what that append left.
            return known.head
        cursor.execute(self.reader.sql.version_and_head, (stream,))
        head = cursor.fetchone()
        versions[stream] = (head[0] or 0) if head is not None else 0
        if head is None:
            return 0, GENESIS_HASH
        # The paired check: never chain new rows onto a head that was tampered with.
        position, prev = int(head[1]), bytes(head[4])
        check_self(position, bytes(head[2]), bytes(head[3]), prev)
        return position, prev

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """Hold one write transaction (and the append lock) across several appends."""
        if self._unit is not None:
            raise RuntimeError("a unit of work is already open on this store")
        reader = self.reader
        with reader.backend.guard(), reader.backend.write(reader.engine) as cursor:
            self._unit = cursor
            self._local.known = known = reader.backend.memo(cursor) or _Known()
            try:
                yield
            finally:
                self._unit = None
                self._local.known = None
            _keep(reader.backend, cursor, known)

    def _writing(self) -> AbstractContextManager[Any]:
        """The open unit of work's cursor, or a transaction of its own."""
        if self._unit is not None:
            return nullcontext(self._unit)
        return self.reader.backend.write(self.reader.engine)


def _prepare(append: Append) -> tuple[list[int], list[list[bytes]] | None, bytes]:
    """Check an append before its transaction: names, money; its sizes, and with a key the
    events' bytes and the digest its replay is compared by."""
    batches = append.batches
    _check_names(
        batches,
        append.idempotency_key,
        append.run_id,
        append.causation_id,
        append.correlation_id,
    )
    sizes = [len(batch.events) for batch in batches]
    if append.idempotency_key is None:
        # Checked here, encoded once, inside its record (``encode_records``).
        for batch in batches:
            for event in batch.events:
                check_money(event)
        return sizes, None, b""
    # Each event is checked and encoded once: its bytes feed the digest and the record.
    payloads = [[encode_event(event) for event in batch.events] for batch in batches]
    return sizes, payloads, _batch_digest(batches, payloads)


def _check_names(
    batches: Sequence[StreamAppend],
    idempotency_key: str | None,
    run_id: str | None,
    causation_id: str | None,
    correlation_id: str | None,
) -> None:
    for batch in batches:
        check_name("stream", batch.stream, STREAM_LENGTH_MAX)
    for what, value in (
        ("run_id", run_id),
        ("causation_id", causation_id),
        ("correlation_id", correlation_id),
    ):
        if value is not None:
            check_name(what, value, ENVELOPE_ID_LENGTH_MAX)
    if idempotency_key is not None:
        check_name("idempotency_key", idempotency_key, KEY_LENGTH_MAX)


def _records(
    envelope: Envelope,
    batch: StreamAppend,
    payloads: list[list[bytes]] | None,
    index: int,
    position: int,
    version: int,
) -> list[bytes]:
    """The records of ``batch``, its first at ``position + 1`` and ``version + 1``."""
    if payloads is None:
        return encode_records(
            envelope,
            batch.stream,
            batch.events,
            first_position=position + 1,
            first_version=version + 1,
        )
    pairs = zip(batch.events, payloads[index], strict=True)
    return [
        encode_record_payload(
            envelope,
            type(event).__name__,
            payload,
            position=position + i,
            stream=batch.stream,
            version=version + i,
        )
        for i, (event, payload) in enumerate(pairs, start=1)
    ]


def _keep(backend: Backend, cursor: Any, known: _Known) -> None:
    """Leave ``known`` to the connection's next transaction (``Backend.memo``), bounded."""
    if len(known.versions) > STREAMS_KEPT_MAX:
        known.versions.clear()
    backend.keep(cursor, known)


def _split(first: int, sizes: list[int]) -> list[list[int]]:
    out, position = [], first
    for size in sizes:
        out.append(list(range(position, position + size)))
        position += size
    return out


def _batch_digest(batches: Sequence[StreamAppend], payloads: Sequence[Sequence[bytes]]) -> bytes:
    h = sha256()
    for batch, encoded in zip(batches, payloads, strict=True):
        name = batch.stream.encode()
        h.update(len(name).to_bytes(4, "big") + name + len(batch.events).to_bytes(8, "big"))
        for payload in encoded:
            h.update(len(payload).to_bytes(8, "big") + payload)
    return h.digest()


def _replay_idempotent(key: str, seen: Any, count: int, digest: bytes) -> int:
    first, seen_count, seen_digest = int(seen[0]), int(seen[1]), bytes(seen[2])
    if seen_count != count or seen_digest != digest:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was used before for different events",
            key=key,
            first_position=first,
            original_count=seen_count,
        )
    return first
