"""The event store: atomic batch appends with optimistic concurrency and idempotency keys,
streaming reads that check every hash they return, and chain verification.

Driver errors become Tally errors here and nowhere else (``backend.guard``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, NamedTuple

from msgspec import DecodeError, ValidationError
from msgspec.structs import force_setattr
from sqlalchemy import Engine

from ledger.chain import (
    ChainVerifier,
    Row,
    VerifyReport,
    broken,
    check_columns,
    check_event_type,
    check_self,
)
from ledger.clock import Clock, SystemClock, to_micros
from ledger.codec import (
    DOMAIN_TAG,
    GENESIS_HASH,
    chain_hash,
    decode_record,
    decode_record_unchecked,
    encode_event,
    encode_record,
)
from ledger.errors import (
    CacheCorruptionError,
    ConcurrencyError,
    IdempotencyConflict,
    InputError,
)
from ledger.events import Event
from ledger.recorded import RecordedEvent, StoreStats
from ledger.store.backend import Backend
from ledger.store.schema import ROW_COLUMNS

PAGE_ROWS = 10_000
STREAM_LENGTH_MAX = 200
KEY_LENGTH_MAX = 200
ENVELOPE_ID_LENGTH_MAX = 100
_NO_UPPER = 2**62  # "no limit" for counts


class EventStore:
    """An append-only, hash-chained event log on SQLite or PostgreSQL."""

    def __init__(self, backend: Backend, engine: Engine, *, clock: Clock | None = None) -> None:
        self.backend = backend
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self._unit: Any = None  # the open write cursor of a unit_of_work, if any
        q = backend.sql
        self._q_idem = q("SELECT first_position, count, digest FROM idempotency_keys WHERE key = ?")
        self._q_version = q("SELECT MAX(version) FROM events WHERE stream = ?")
        # The stream's version and the chain head in one round trip (no row: empty ledger).
        self._q_version_and_head = q(
            "SELECT (SELECT MAX(version) FROM events WHERE stream = ?), "
            "position, record, prev_hash, hash FROM events ORDER BY position DESC LIMIT 1"
        )
        self._q_head = q(
            "SELECT position, record, prev_hash, hash FROM events ORDER BY position DESC LIMIT 1"
        )
        self._q_insert_key = q(
            "INSERT INTO idempotency_keys (key, first_position, count, digest) VALUES (?, ?, ?, ?)"
        )
        self._q_page = q(
            "SELECT position, record, hash FROM events WHERE position > ? AND position <= ? "
            "ORDER BY position LIMIT ?"
        )
        self._q_full_page = q(
            f"SELECT {ROW_COLUMNS} FROM events WHERE position > ? AND position <= ? "
            "ORDER BY position LIMIT ?"
        )
        self._q_stream_page = q(
            "SELECT position, record, prev_hash, hash FROM events "
            "WHERE stream = ? AND version > ? AND version <= ? ORDER BY version"
        )
        self._q_hash_at = q("SELECT hash FROM events WHERE position = ?")
        self._q_prev_hash_at = q("SELECT prev_hash FROM events WHERE position = ?")
        self._q_delete_checkpoint = q("DELETE FROM checkpoints WHERE name = ?")
        self._q_insert_checkpoint = q(
            "INSERT INTO checkpoints (name, position, code_version, state, state_hash, "
            "chain_hash) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._q_load_checkpoint = q(
            "SELECT position, code_version, state, state_hash, chain_hash FROM checkpoints "
            "WHERE name = ?"
        )

    @property
    def url(self) -> str:
        return self.backend.display_url

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> list[int]:
        """Append ``events`` to ``stream`` atomically and return their global positions.

        ``expected_version`` is the stream's current version (0 for a new stream), or None
        to skip the check. An ``idempotency_key`` seen before returns the positions of the
        original append when the events are the same, and raises ``IdempotencyConflict``
        when they differ.
        """
        (positions,) = self.append_many(
            [StreamAppend(stream, events, expected_version)],
            idempotency_key=idempotency_key,
            run_id=run_id,
            causation_id=causation_id,
            correlation_id=correlation_id,
        )
        return positions

    def append_many(
        self,
        batches: Sequence[StreamAppend],
        *,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> list[list[int]]:
        """Append to several streams in one transaction; return the positions per batch.

        All or nothing: one stale ``expected_version`` and nothing is written. Batches get
        consecutive positions in the order given; a stream may appear more than once.
        """
        for batch in batches:
            _check_name("stream", batch.stream, STREAM_LENGTH_MAX)
        for what, value in (
            ("run_id", run_id),
            ("causation_id", causation_id),
            ("correlation_id", correlation_id),
        ):
            if value is not None:
                _check_name(what, value, ENVELOPE_ID_LENGTH_MAX)
        if idempotency_key is not None:
            _check_name("idempotency_key", idempotency_key, KEY_LENGTH_MAX)
        sizes = [len(batch.events) for batch in batches]
        if sum(sizes) == 0:
            return [[] for _ in batches]
        digest = _batch_digest(batches) if idempotency_key is not None else b""
        with self.backend.guard(), self._writing() as cursor:
            # Read the clock under the append lock: on one machine, times follow positions.
            recorded_at = self.clock.now().astimezone(UTC)
            recorded_at_us = to_micros(recorded_at)
            # Plain DBAPI calls inside the transaction SQLAlchemy manages: a single-event
            # append costs ~4 statements, and SQLAlchemy's per-statement overhead was most
            # of its time.
            if idempotency_key is not None:
                cursor.execute(self._q_idem, (idempotency_key,))
                seen = cursor.fetchone()
                if seen is not None:
                    first = _replay_idempotent(idempotency_key, seen, sum(sizes), digest)
                    return _split(first, sizes)
            cursor.execute(self._q_version_and_head, (batches[0].stream,))
            head = cursor.fetchone()
            versions = {batches[0].stream: (head[0] or 0) if head is not None else 0}
            if head is None:
                position, prev = 0, GENESIS_HASH
            else:
                # The paired check: never chain new rows onto a head that was tampered with.
                position, prev = head[1], bytes(head[4])
                check_self(position, bytes(head[2]), bytes(head[3]), prev)
            first = position + 1
            rows = []
            for batch in batches:
                stream = batch.stream
                if stream not in versions:
                    cursor.execute(self._q_version, (stream,))
                    versions[stream] = cursor.fetchone()[0] or 0
                version = versions[stream]
                if batch.expected_version is not None and batch.expected_version != version:
                    raise ConcurrencyError(stream, batch.expected_version, version)
                for event in batch.events:
                    position += 1
                    version += 1
                    record = encode_record(
                        position,
                        stream,
                        version,
                        recorded_at,
                        run_id,
                        causation_id,
                        correlation_id,
                        idempotency_key,
                        event,
                    )
                    digest_row = chain_hash(prev, record)
                    rows.append(
                        (
                            position,
                            stream,
                            version,
                            type(event).__name__,
                            recorded_at_us,
                            record,
                            prev,
                            digest_row,
                        )
                    )
                    prev = digest_row
                versions[stream] = version
            self.backend.insert_rows(cursor, rows)
            if idempotency_key is not None:
                cursor.execute(self._q_insert_key, (idempotency_key, first, len(rows), digest))
        return _split(first, sizes)

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """Hold one write transaction (and the append lock) across several appends.

        The appends inside commit together when the block ends, or not at all if it raises.
        Each append still reads the clock when it is made, so a simulated run's events keep
        their own times. A backtest uses this to commit a group of cycles with one durable
        sync instead of one per cycle; each cycle stays whole either way. Other connections
        see none of it before the end.
        """
        if self._unit is not None:
            raise RuntimeError("a unit of work is already open on this store")
        with self.backend.guard(), self.backend.write(self.engine) as cursor:
            self._unit = cursor
            try:
                yield
            finally:
                self._unit = None

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        if self._unit is not None:
            yield self._unit
            return
        with self.backend.write(self.engine) as cursor:
            yield cursor

    # --- reading ------------------------------------------------------------------------

    def head(self) -> int:
        """Return the last global position, 0 when the ledger is empty."""
        with self.backend.guard(), self.engine.connect() as conn:
            value = conn.exec_driver_sql("SELECT MAX(position) FROM events").scalar()
        return int(value or 0)

    def position_at(self, moment: datetime) -> int:
        """The last position recorded at or before ``moment`` (0 if none).

        Times follow positions for appends made on one clock; a ledger that mixes a
        backtest's simulated times with live ones should be replayed by position.
        """
        with self.backend.guard(), self.engine.connect() as conn:
            value = conn.exec_driver_sql(
                self.backend.sql("SELECT MAX(position) FROM events WHERE recorded_at_us <= ?"),
                (to_micros(moment),)).scalar()
        return int(value or 0)

    def head_hash(self) -> bytes:
        """Return the hash of the last row: the chain head (32 zero bytes when empty)."""
        with self.backend.guard(), self.engine.connect() as conn:
            row = conn.exec_driver_sql(self._q_head).first()
        return GENESIS_HASH if row is None else bytes(row[3])

    def stream_version(self, stream: str) -> int:
        """Return the stream's current version, 0 for a stream with no events."""
        with self.backend.guard(), self.engine.connect() as conn:
            value = conn.exec_driver_sql(self._q_version, (stream,)).scalar()
        return int(value or 0)

    def read(self, stream: str, from_version: int = 0) -> Iterator[RecordedEvent]:
        """Yield the events of ``stream`` with version >= ``from_version``, checking hashes."""
        last = max(from_version, 1) - 1
        upper = self.stream_version(stream)
        while last < upper:  # bounded version ranges, for the reason given in _pages
            stop = min(last + PAGE_ROWS, upper)
            for position, record, prev_hash, stored_hash in self._fetch(
                self._q_stream_page, (stream, last, stop)
            ):
                yield _checked_row(position, record, prev_hash, stored_hash, stream, ())
            last = stop

    def read_all(
        self, from_position: int = 1, to_position: int | None = None, *, verify: bool = True
    ) -> Iterator[RecordedEvent]:
        """Yield every event from ``from_position`` to ``to_position`` (inclusive), in order.

        Streams in pages, so memory stays constant. With ``verify`` each row's hash and its
        link to the row before are checked; a break raises ``ChainIntegrityError``.
        """
        verifier = self._verifier(from_position)
        # The hot loop of every replay: the common case is checked inline, and the verifier
        # runs only to explain a break. Same checks as ChainVerifier.check.
        prev, expected = verifier.prev_hash, verifier.first_position
        decode, tag = decode_record_unchecked, DOMAIN_TAG
        for rows in self._pages(self._q_page, from_position, to_position):
            for position, record, stored_hash in rows:
                if verify and (
                    position != expected or sha256(prev + tag + record).digest() != stored_hash
                ):
                    verifier.prev_hash, verifier.expected_position = prev, expected
                    verifier.check(position, bytes(record), bytes(stored_hash))
                try:
                    recorded = decode(record)
                except (ValidationError, DecodeError):
                    recorded = decode_record(bytes(record), position=position)  # raises
                if recorded.type != type(recorded.event).__name__:
                    check_event_type(recorded)
                force_setattr(recorded, "prev_hash", prev)
                force_setattr(recorded, "hash", stored_hash)
                yield recorded
                prev, expected = stored_hash, position + 1

    def raw_records(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (position, record, hash) as stored, unchecked: what the chain hashes."""
        for rows in self._pages(self._q_page, from_position, to_position):
            for position, record, stored_hash in rows:
                yield position, bytes(record), bytes(stored_hash)

    def query(
        self,
        *,
        stream: str | None = None,
        types: Sequence[str] = (),
        from_position: int = 1,
        to_position: int | None = None,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """Yield events matching the filters, in position order; each row's hash is checked.

        Filters run in SQL on the indexed copies of the envelope; every row returned is then
        checked against its own hash, and its record against the filter.
        """
        where = ["position > ?", "position <= ?"]
        params: list[Any] = []
        if stream is not None:
            where.append("stream = ?")
            params.append(stream)
        if types:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        statement = self.backend.sql(
            "SELECT position, record, prev_hash, hash FROM events "
            f"WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        )
        remaining = limit if limit is not None else _NO_UPPER
        decode, sha, tag = decode_record_unchecked, sha256, DOMAIN_TAG
        wanted = frozenset(types) if types else None
        head = self.head()
        upper = head if to_position is None else min(to_position, head)
        last = max(from_position, 1) - 1
        while remaining > 0 and last < upper:  # bounded ranges, as in _pages
            stop = min(last + PAGE_ROWS, upper)
            rows = self._fetch(statement, (last, stop, *params, min(PAGE_ROWS, remaining)))
            # The common case inline (a replay's hot loop); _checked_row explains a failure.
            for position, record, prev_hash, stored_hash in rows:
                try:
                    recorded = decode(record)
                except (ValidationError, DecodeError):
                    recorded = None
                if (recorded is None or sha(prev_hash + tag + record).digest() != stored_hash
                        or recorded.position != position
                        or recorded.type != type(recorded.event).__name__
                        or (stream is not None and recorded.stream != stream)
                        or (wanted is not None and recorded.type not in wanted)):
                    yield _checked_row(position, bytes(record), bytes(prev_hash),
                                       bytes(stored_hash), stream, types)  # raises
                    continue
                force_setattr(recorded, "prev_hash", prev_hash)
                force_setattr(recorded, "hash", stored_hash)
                yield recorded
            remaining -= len(rows)
            last = stop

    def verify(
        self,
        *,
        expect_head: bytes | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Check the whole ledger; raise ``ChainIntegrityError`` at the first break.

        Recomputes every link of the chain, decodes every record and checks that the
        queryable columns agree with it. ``expect_head`` is a head hash recorded earlier (for
        instance a run's fingerprint taken at the head): it catches rows cut from the end.
        """
        verifier = self._verifier(1)
        for rows in self._pages(self._q_full_page, 1, None):
            for row in rows:
                record, stored_hash = bytes(row[5]), bytes(row[7])
                prev_hash = verifier.prev_hash
                verifier.check(row[0], record, stored_hash)
                recorded = _decode(row[0], record, prev_hash, stored_hash)
                check_columns(row, recorded, prev_hash)
            if progress is not None:
                progress(verifier.count)
        return verifier.finish(expect_head)

    def stats(self) -> StoreStats:
        """Return counts by type and stream, and the chain head."""
        with self.backend.guard(), self.engine.connect() as conn:
            by_type = conn.exec_driver_sql(
                "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY type"
            ).all()
            by_stream = conn.exec_driver_sql(
                "SELECT stream, COUNT(*) FROM events GROUP BY stream ORDER BY stream"
            ).all()
            head = conn.exec_driver_sql(self._q_head).first()
        return StoreStats(
            head_position=0 if head is None else int(head[0]),
            head_hash=(GENESIS_HASH if head is None else bytes(head[3])).hex(),
            events=sum(int(n) for _, n in by_type),
            by_type={str(k): int(n) for k, n in by_type},
            by_stream={str(k): int(n) for k, n in by_stream},
        )

    # --- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, name: str, position: int, code_version: str, state: bytes) -> None:
        """Store a projection's state as of ``position`` (replacing the previous one)."""
        _check_name("checkpoint name", name, STREAM_LENGTH_MAX)
        chain = self._hash_at(position)
        digest = sha256(state).digest()
        with self.backend.guard(), self.backend.write(self.engine) as cursor:
            cursor.execute(self._q_delete_checkpoint, (name,))
            cursor.execute(self._q_insert_checkpoint,
                           (name, position, code_version, state, digest, chain))

    def load_checkpoint(self, name: str, code_version: str) -> tuple[int, bytes] | None:
        """Return (position, state) of a checkpoint made by ``code_version``, if usable.

        None when there is none, when another code version made it (its projection changed:
        rebuild from zero), or when the ledger no longer holds the chain it was made from.
        A checkpoint whose state does not match its own hash is corruption, not staleness.
        """
        rows = self._fetch(self._q_load_checkpoint, (name,))
        if not rows:
            return None
        position, version, state, state_hash, chain = rows[0]
        state, state_hash, chain = bytes(state), bytes(state_hash), bytes(chain)
        if sha256(state).digest() != state_hash:
            raise CacheCorruptionError(
                f"checkpoint {name!r} does not match its hash", checkpoint=name,
                hint="delete the checkpoint row; the projection rebuilds from the events")
        if version != code_version or self._hash_at(position) != chain:
            return None
        return int(position), state

    def _hash_at(self, position: int) -> bytes:
        if position == 0:
            return GENESIS_HASH
        rows = self._fetch(self._q_hash_at, (position,))
        return bytes(rows[0][0]) if rows else b""

    # --- internals ----------------------------------------------------------------------

    def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[Row]:
        # Plain DBAPI tuples: building SQLAlchemy Row objects costs a third of a replay.
        with self.backend.guard(), self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(statement, params)
                return cursor.fetchall()  # type: ignore[no-any-return]
            finally:
                cursor.close()

    def _pages(
        self, statement: str, from_position: int, to_position: int | None
    ) -> Iterator[list[Row]]:
        """Yield rows page by page, each page one short query over a bounded position range.

        Bounded ranges rather than ``position > last ... LIMIT n``: on a table whose
        statistics are stale (right after a bulk load) PostgreSQL plans the open-ended form
        as "scan everything after last, then sort", once per page, which makes a full read
        quadratic. A bounded range costs one page whatever the plan. Positions are gapless,
        so a range never holds more than a page. The read ends at the head it started with.
        """
        head = self.head()
        upper = head if to_position is None else min(to_position, head)
        last = max(from_position, 1) - 1
        while last < upper:
            stop = min(last + PAGE_ROWS, upper)
            rows = self._fetch(statement, (last, stop, PAGE_ROWS))
            if rows:
                yield rows
            last = stop

    def _verifier(self, from_position: int) -> ChainVerifier:
        first = max(from_position, 1)
        prev = GENESIS_HASH
        if first > 1:
            rows = self._fetch(self._q_hash_at, (first - 1,))
            if not rows:
                raise broken(first - 1, "row_missing", f"position {first - 1} is missing")
            prev = bytes(rows[0][0])
        return ChainVerifier(
            first_position=first, prev_hash=prev, prev_hash_at=self._prev_hash_at
        )

    def _prev_hash_at(self, position: int) -> bytes | None:
        rows = self._fetch(self._q_prev_hash_at, (position,))
        return bytes(rows[0][0]) if rows else None


def _decode(position: int, record: bytes, prev_hash: bytes, stored_hash: bytes) -> RecordedEvent:
    recorded = decode_record(record, position=position)
    check_event_type(recorded)
    force_setattr(recorded, "prev_hash", prev_hash)
    force_setattr(recorded, "hash", stored_hash)
    return recorded


def _checked_row(
    position: int,
    record: bytes,
    prev_hash: bytes,
    stored_hash: bytes,
    stream: str | None,
    types: Sequence[str],
) -> RecordedEvent:
    """Check a row found through its indexed columns: its hash, and that its record matches."""
    record, prev_hash, stored_hash = bytes(record), bytes(prev_hash), bytes(stored_hash)
    check_self(position, record, prev_hash, stored_hash)
    recorded = _decode(position, record, prev_hash, stored_hash)
    if (
        recorded.position != position
        or (stream is not None and recorded.stream != stream)
        or (types and recorded.type not in types)
    ):
        raise broken(
            position,
            "column_changed",
            "the row was found by its columns, but its record says position "
            f"{recorded.position}, stream {recorded.stream!r}, type {recorded.type!r}",
        )
    return recorded


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


def _split(first: int, sizes: list[int]) -> list[list[int]]:
    out, position = [], first
    for size in sizes:
        out.append(list(range(position, position + size)))
        position += size
    return out


def _batch_digest(batches: Sequence[StreamAppend]) -> bytes:
    h = sha256()
    for batch in batches:
        name = batch.stream.encode()
        h.update(len(name).to_bytes(4, "big") + name + len(batch.events).to_bytes(8, "big"))
        for event in batch.events:
            payload = encode_event(event)
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


def _check_name(what: str, value: str, length_max: int) -> None:
    if not value or len(value) > length_max:
        raise InputError(
            f"{what} must be 1 to {length_max} characters, got {len(value)}",
            hint=f"pass a shorter, non-empty {what}",
            **{what: value[:60]},
        )
