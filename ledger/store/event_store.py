"""The event store: one object over a ledger, made of its parts by concept.

- ``append``: atomic batches, expected versions, idempotency keys (``Appender``);
- ``read``: streaming reads, filtered queries and verification, every row checked by the
  one row checker (``Reader``);
- ``checkpoints``: projection states (``Checkpoints``);
- ``leases``: which process records a run now (``Leases``);
- ``stats``: counts and the head.

Driver errors become Tally errors at the backend's boundary (``backend.guard``) and nowhere
else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Engine

from ledger.chain import VerifyReport
from ledger.clock import Clock, SystemClock
from ledger.events import Event
from ledger.recorded import RecordedEvent, StoreStats
from ledger.store import stats as _stats
from ledger.store.append import Append, Appender, StreamAppend
from ledger.store.backend import Backend
from ledger.store.checkpoints import Checkpoints
from ledger.store.leases import Leases
from ledger.store.read import Reader
from ledger.store.sql import Statements


class EventStore:
    """An append-only, hash-chained event log on SQLite or PostgreSQL."""

    def __init__(self, backend: Backend, engine: Engine, *, clock: Clock | None = None) -> None:
        self.backend = backend
        self.engine = engine
        self._reader = Reader(backend, engine, Statements.for_backend(backend.sql))
        self._clock: Clock = clock or SystemClock()
        self._appender = Appender(self._reader, self._clock.now)
        self._checkpoints = Checkpoints(self._reader)
        self.leases = Leases(self._reader)

    @property
    def clock(self) -> Clock:
        """The clock appends read their time from."""
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        # Public and replaceable: a run hands the store its own (simulated) clock. The
        # appender holds the bound ``now``, not a lambda over this attribute: one call
        # fewer in every append.
        self._clock = clock
        self._appender.now = clock.now

    @property
    def url(self) -> str:
        """The ledger's URL, password masked."""
        return self.backend.display_url

    def close(self) -> None:
        """Close every connection: the backend's own and the pool's."""
        self.backend.close()
        self.engine.dispose()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

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
        append = Append(
            [StreamAppend(stream, events, expected_version)],
            idempotency_key,
            run_id,
            causation_id,
            correlation_id,
        )
        ((positions,),) = self._appender.append_all([append])
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
        return self._appender.append_many(
            batches,
            idempotency_key=idempotency_key,
            run_id=run_id,
            causation_id=causation_id,
            correlation_id=correlation_id,
        )

    def append_all(self, appends: Sequence[Append]) -> list[list[list[int]]]:
        """Several appends in one transaction; return the positions per append and batch.

        Each append is exactly what ``append_many`` with its envelope makes (its own
        idempotency key, replayed or refused the same way, and its own ``recorded_at``, or
        the clock's time when None), at consecutive positions in the order given; their
        rows are inserted together. All or nothing. A backtest writes a group of cycles
        with it: per-append statements were most of its writing time.
        """
        return self._appender.append_all(appends)

    def unit_of_work(self) -> AbstractContextManager[None]:
        """Hold one write transaction (and the append lock) across several appends.

        The appends inside commit together when the block ends, or not at all if it raises.
        Each append still reads the clock when it is made, so a simulated run's events keep
        their own times. A backtest uses this to commit a group of cycles with one durable
        sync instead of one per cycle; each cycle stays whole either way. Other connections
        see none of it before the end.
        """
        return self._appender.unit_of_work()

    # --- reading ---------------------------------------------------------------------------

    def head(self) -> int:
        """Return the last global position, 0 when the ledger is empty."""
        return self._reader.head()

    def head_hash(self) -> bytes:
        """Return the hash of the last row: the chain head (32 zero bytes when empty)."""
        return self._reader.head_hash()

    def position_at(self, moment: datetime) -> int:
        """The last position recorded at or before ``moment`` (0 if none).

        Times follow positions for appends made on one clock; a ledger that mixes a
        backtest's simulated times with live ones should be replayed by position.
        """
        return self._reader.position_at(moment)

    def stream_version(self, stream: str) -> int:
        """Return the stream's current version, 0 for a stream with no events."""
        return self._reader.stream_version(stream)

    def read(self, stream: str, from_version: int = 0) -> Iterator[RecordedEvent]:
        """Yield the events of ``stream`` with version >= ``from_version``, checking hashes."""
        return self._reader.read(stream, from_version)

    def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[RecordedEvent]:
        """Yield every event from ``from_position`` to ``to_position`` (inclusive), in order,
        each checked against its hash and linked to the one before."""
        return self._reader.read_all(from_position, to_position)

    def raw_records(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (position, record, hash) as stored, unchecked: what the chain hashes."""
        return self._reader.raw_records(from_position, to_position)

    def query(
        self,
        *,
        stream: str | None = None,
        types: Sequence[str] = (),
        from_position: int = 1,
        to_position: int | None = None,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """Yield events matching the filters, in position order; each row's hash is checked."""
        return self._reader.query(
            stream=stream,
            types=types,
            from_position=from_position,
            to_position=to_position,
            limit=limit,
        )

    def verify(
        self,
        *,
        expect_head: bytes | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> VerifyReport:
        """Check the whole ledger; raise ``ChainIntegrityError`` at the first break."""
        return self._reader.verify(expect_head=expect_head, progress=progress)

    def stats(self) -> StoreStats:
        """Return counts by type and stream, and the chain head."""
        return _stats.stats(self._reader)

    # --- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, name: str, position: int, code_version: str, state: bytes) -> None:
        """Store a projection's state as of ``position`` (replacing the previous one)."""
        self._checkpoints.save(name, position, code_version, state)

    def load_checkpoint(self, name: str, code_version: str) -> tuple[int, bytes] | None:
        """Return (position, state) of a usable checkpoint made by ``code_version``."""
        return self._checkpoints.load(name, code_version)
