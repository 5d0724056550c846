"""Reading the ledger: streaming pages, filtered queries and whole-chain verification.

Every reader hands out events only after ``chain.checked_row`` has checked them: the row's
hash, its record, its position and its type. Reads stream in pages of bounded position
ranges, so memory stays constant whatever the ledger's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Engine

from ledger.chain import ChainVerifier, Row, VerifyReport, broken, check_columns, checked_row
from ledger.clock import to_micros
from ledger.codec import GENESIS_HASH
from ledger.recorded import RecordedEvent
from ledger.store.backend import Backend
from ledger.store.sql import Statements

PAGE_ROWS = 10_000
_NO_UPPER = 2**62  # "no limit" for counts


class Reader:
    """Reads of one ledger, each through the backend's driver-error boundary."""

    def __init__(self, backend: Backend, engine: Engine, sql: Statements) -> None:
        self.backend = backend
        self.engine = engine
        self.sql = sql

    # --- plain lookups --------------------------------------------------------------------

    def fetch(self, statement: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run one query and return its rows as plain DBAPI tuples."""
        # Plain DBAPI tuples: building SQLAlchemy Row objects costs a third of a replay.
        with self.backend.guard(), self.engine.connect() as conn:
            cursor = self.backend.cursor(conn)
            try:
                cursor.execute(statement, params)
                return cursor.fetchall()  # type: ignore[no-any-return]
            finally:
                cursor.close()

    def fetch_together(self, *statements: str) -> list[list[Row]]:
        """Run parameterless queries in one transaction: one consistent view of the ledger."""
        with self.backend.guard(), self.engine.connect() as conn, conn.begin():
            cursor = self.backend.cursor(conn)
            try:
                found = []
                for statement in statements:
                    cursor.execute(statement)
                    found.append([tuple(row) for row in cursor.fetchall()])
                return found
            finally:
                cursor.close()

    def scalar(self, statement: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        rows = self.fetch(statement, params)
        return rows[0][0] if rows else None

    def head(self) -> int:
        """Return the last global position, 0 when the ledger is empty."""
        return int(self.scalar(self.sql.head_position) or 0)

    def head_hash(self) -> bytes:
        """Return the hash of the last row: the chain head (32 zero bytes when empty)."""
        rows = self.fetch(self.sql.head_row)
        return GENESIS_HASH if not rows else bytes(rows[0][3])

    def position_at(self, moment: datetime) -> int:
        """The last position recorded at or before ``moment`` (0 if none)."""
        return int(self.scalar(self.sql.position_at, (to_micros(moment),)) or 0)

    def stream_version(self, stream: str) -> int:
        """Return the stream's current version, 0 for a stream with no events."""
        return int(self.scalar(self.sql.stream_version, (stream,)) or 0)

    def hash_at(self, position: int) -> bytes:
        """The stored hash at ``position`` (genesis for 0, empty when the row is absent)."""
        if position == 0:
            return GENESIS_HASH
        found = self.scalar(self.sql.hash_at, (position,))
        return b"" if found is None else bytes(found)

    # --- streams of events ----------------------------------------------------------------

    def read(self, stream: str, from_version: int = 0) -> Iterator[RecordedEvent]:
        """Yield the events of ``stream`` with version >= ``from_version``, checking hashes."""
        last = max(from_version, 1) - 1
        upper = self.stream_version(stream)
        while last < upper:  # bounded version ranges, for the reason given in pages()
            stop = min(last + PAGE_ROWS, upper)
            for position, record, prev_hash, stored_hash in self.fetch(
                self.sql.stream_page, (stream, last, stop)
            ):
                recorded = checked_row(position, record, prev_hash, stored_hash)
                if recorded.stream != stream:
                    raise _found_by_column(recorded, position)
                yield recorded
            last = stop

    def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[RecordedEvent]:
        """Yield every event from ``from_position`` to ``to_position`` (inclusive), in order.

        Streams in pages, so memory stays constant. Each row's hash and its link to the row
        before are checked; a break raises ``ChainIntegrityError``.
        """
        verifier = self.verifier(from_position)
        explain = _linked_explainer(verifier)
        prev, expected = verifier.prev_hash, verifier.first_position
        for rows in self.pages(self.sql.page, from_position, to_position):
            for position, record, stored_hash in rows:
                if position != expected:
                    verifier.expected_position = expected
                    verifier.check(position, bytes(record), bytes(stored_hash))  # raises
                yield checked_row(position, record, prev, stored_hash, explain)
                prev, expected = stored_hash, position + 1

    def raw_records(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield (position, record, hash) as stored, unchecked: what the chain hashes."""
        for rows in self.pages(self.sql.page, from_position, to_position):
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
        statement = self.sql.query(self.backend.sql, stream=stream is not None, types=len(types))
        params: tuple[Any, ...] = (*((stream,) if stream is not None else ()), *types)
        remaining = limit if limit is not None else _NO_UPPER
        wanted = frozenset(types) if types else None
        head = self.head()
        upper = head if to_position is None else min(to_position, head)
        last = max(from_position, 1) - 1
        while remaining > 0 and last < upper:  # bounded ranges, as in pages()
            stop = min(last + PAGE_ROWS, upper)
            rows = self.fetch(statement, (last, stop, *params, min(PAGE_ROWS, remaining)))
            for position, record, prev_hash, stored_hash in rows:
                recorded = checked_row(position, record, prev_hash, stored_hash)
                if (stream is not None and recorded.stream != stream) or (
                    wanted is not None and recorded.type not in wanted
                ):
                    raise _found_by_column(recorded, position)
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
        queryable columns agree with it. ``expect_head`` is a head hash recorded earlier: it
        catches rows cut from the end.
        """
        verifier = self.verifier(1)
        explain = _linked_explainer(verifier)
        for rows in self.pages(self.sql.full_page, 1, None):
            for row in rows:
                position, record, stored_hash = row[0], row[5], row[7]
                prev = verifier.prev_hash
                if position != verifier.expected_position:
                    verifier.check(position, bytes(record), bytes(stored_hash))  # raises
                recorded = checked_row(position, record, prev, stored_hash, explain)
                check_columns(row, recorded, prev)
                verifier.prev_hash = bytes(stored_hash)
                verifier.expected_position = position + 1
                verifier.count += 1
            if progress is not None:
                progress(verifier.count)
        return verifier.finish(expect_head)

    # --- paging ---------------------------------------------------------------------------

    def pages(
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
            rows = self.fetch(statement, (last, stop, PAGE_ROWS))
            if rows:
                yield rows
            last = stop

    def verifier(self, from_position: int) -> ChainVerifier:
        """A chain walker that starts at ``from_position``, linked to the row before it."""
        first = max(from_position, 1)
        prev = GENESIS_HASH
        if first > 1:
            prev = self.hash_at(first - 1)
            if not prev:
                raise broken(first - 1, "row_missing", f"position {first - 1} is missing")
        return ChainVerifier(first_position=first, prev_hash=prev, prev_hash_at=self._prev_hash_at)

    def _prev_hash_at(self, position: int) -> bytes | None:
        found = self.scalar(self.sql.prev_hash_at, (position,))
        return None if found is None else bytes(found)


def _linked_explainer(verifier: ChainVerifier) -> Callable[[int, bytes, bytes, bytes], NoReturn]:
    """Explain a row that breaks the chain: deleted, reordered, changed or forged."""

    def explain(position: int, record: bytes, prev_hash: bytes, stored_hash: bytes) -> NoReturn:
        verifier.prev_hash, verifier.expected_position = prev_hash, position
        verifier.check(position, record, stored_hash)
        raise broken(
            position, "payload_changed", "the row does not match its hash"
        )  # pragma: no cover

    return explain


def _found_by_column(recorded: RecordedEvent, position: int) -> Exception:
    return broken(
        position,
        "column_changed",
        "the row was found by its columns, but its record says position "
        f"{recorded.position}, stream {recorded.stream!r}, type {recorded.type!r}",
    )
