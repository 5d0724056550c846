"""A paper or live run's writes while the ledger is out: a local durable spool, drained in
order when the ledger answers again.

The spool is one append-only file per run. Each entry is one cycle's append exactly as it
would have gone to the ledger (its streams, events and idempotency key), written as
``length (4 bytes) | sha256 (32 bytes) | payload`` and fsync'd before the cycle counts as
done. Draining appends the entries in order with their own idempotency keys, so a crash
during the drain neither loses nor doubles a cycle: the next start drains the same file
again, the entries already in the ledger replay (checked against what is stored), and the
file is deleted only once every entry is in.

A torn last entry (the process died while writing it) was never acknowledged and is
dropped with a warning, like a transaction that never committed; a checksum that does not
match anywhere else is corruption and stops the drain (exit 1): nothing is ever skipped.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import msgspec

from ledger import events
from ledger.clock import Clock
from ledger.codec import decode_event, encode_event
from ledger.errors import EXIT_INTEGRITY, StoreDeadlineExceeded, StoreUnavailable, TallyError
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.store import EventStore, StreamAppend
from projections.runs import run_stream

MAGIC = b"TALLY-SPOOL/1\n"
HEADER = struct.Struct(">I32s")  # payload length, sha256 of the payload
LOGGER = logging.getLogger("tally.run")


class SpoolCorrupt(TallyError):
    """A spool entry does not match its checksum: the spool is not drained."""

    exit_code = EXIT_INTEGRITY
    default_hint = "keep the file for inspection; restore it from a backup if there is one"


class SpooledAppend(msgspec.Struct, frozen=True):
    """One append kept for the ledger: what ``EventStore.append_many`` would have been given."""

    key: str
    cycle: int  # -1: not a cycle (LedgerUnavailable, LedgerRecovered, RunStopped)
    batches: list[tuple[str, list[bytes]]]  # stream, canonical event bytes

    @classmethod
    def of(cls, key: str, cycle: int, batches: Sequence[StreamAppend]) -> SpooledAppend:
        return cls(key, cycle, [(b.stream, [encode_event(e) for e in b.events]) for b in batches])

    def appends(self) -> list[StreamAppend]:
        # expected_version None: the run's lease makes this process the streams' only writer.
        return [
            StreamAppend(stream, [decode_event(raw) for raw in encoded], None)
            for stream, encoded in self.batches
        ]

    @property
    def events(self) -> int:
        return sum(len(encoded) for _, encoded in self.batches)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpooledAppend)


class Spool:
    """An append-only, checksummed, fsync'd file of ``SpooledAppend`` entries."""

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self.path = path
        self.limit_bytes = limit_bytes

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def add(self, entry: SpooledAppend, *, over_limit: bool = False) -> bool:
        """Write ``entry`` durably; False (nothing written) if it would pass the limit,
        unless ``over_limit`` (the run's last word: why it stopped)."""
        payload = _encoder.encode(entry)
        record = HEADER.pack(len(payload), sha256(payload).digest()) + payload
        fresh = not self.path.exists()
        grown = len(record) + (len(MAGIC) if fresh else 0)
        if not over_limit and self.size + grown > self.limit_bytes:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            if fresh:
                out.write(MAGIC)
            out.write(record)
            out.flush()
            os.fsync(out.fileno())
        if fresh:  # the new file's name must survive a power cut too
            _fsync_dir(self.path.parent)
        return True

    def entries(self) -> list[SpooledAppend]:
        """Every whole entry, in order; a torn last entry is cut off (never acknowledged)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if not data.startswith(MAGIC):
            if MAGIC.startswith(data):  # died while writing the header: nothing in it
                self.clear()
                return []
            raise SpoolCorrupt(f"{self.path} is not a Tally spool", path=str(self.path))
        found: list[SpooledAppend] = []
        at = len(MAGIC)
        while at < len(data):
            if len(data) - at < HEADER.size:
                return self._torn(found, at)
            length, digest = HEADER.unpack_from(data, at)
            start, end = at + HEADER.size, at + HEADER.size + length
            if end > len(data):
                return self._torn(found, at)
            payload = data[start:end]
            if sha256(payload).digest() != digest:
                raise SpoolCorrupt(
                    f"spool entry {len(found) + 1} of {self.path} (byte {at}) does not match "
                    "its checksum",
                    path=str(self.path),
                    entry=len(found) + 1,
                )
            found.append(_decoder.decode(payload))
            at = end
        return found

    def _torn(self, found: list[SpooledAppend], at: int) -> list[SpooledAppend]:
        LOGGER.warning(
            "SPOOL_TORN_ENTRY spool=%s byte=%d: the last entry was cut short by a crash while "
            "it was written; it was never acknowledged and is dropped",
            self.path,
            at,
        )
        with self.path.open("r+b") as out:
            out.truncate(at)
            os.fsync(out.fileno())
        return found

    def clear(self) -> None:
        """Delete the spool: everything in it is in the ledger."""
        if self.path.exists():
            self.path.unlink()
            _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class LedgerLink:
    """How a paper or live run writes: to the ledger while it answers, to the spool while
    it does not, and the spool into the ledger as soon as it answers again.

    Transient store errors (a lost connection, a lock or statement timeout, a full disk) are
    retried ``retries`` times with doubling backoff from ``backoff_s``; then the ledger
    counts as out. Any other error fails fast with its hint.
    """

    store: EventStore
    spool: Spool
    run_id: str
    clock: Clock
    retries: int = 2
    backoff_s: float = 0.2
    sleep: Callable[[float], None] = time.sleep

    @property
    def spooling(self) -> bool:
        """Whether cycles wait in the spool (then the run places no orders)."""
        return self.spool.path.exists()

    def append_many(
        self, batches: Sequence[StreamAppend], *, run_id: str, idempotency_key: str, cycle: int
    ) -> list[list[int]] | None:
        """Append to the ledger (positions per batch), or keep it in the spool (None).

        ``SpoolFull`` when the spool cannot take it: the caller stops the run."""
        if self.spooling and not self.drain():
            self._keep(SpooledAppend.of(idempotency_key, cycle, batches))
            return None
        try:
            return self._retrying(
                lambda: self.store.append_many(
                    batches, run_id=run_id, idempotency_key=idempotency_key
                )
            )
        except StoreUnavailable as error:
            if not error.transient:
                raise
            self._outage(error, cycle)
            self._keep(SpooledAppend.of(idempotency_key, cycle, batches))
            return None

    def drain(self) -> bool:
        """Append the spool to the ledger in order; True once it is empty (and deleted)."""
        entries = self.spool.entries()
        if not entries:
            self.spool.clear()
            return True
        try:
            self.store.append_many(
                entries[0].appends(), run_id=self.run_id, idempotency_key=entries[0].key
            )
            if not isinstance(_only_event(entries[-1]), events.LedgerRecovered):
                # The ledger answers again: say so, durably, before draining the rest, so a
                # crash mid-drain replays the very same LedgerRecovered.
                recovered = self._recovered(entries)
                self.spool.add(recovered, over_limit=True)
                entries.append(recovered)
            for entry in entries[1:]:
                self.store.append_many(
                    entry.appends(), run_id=self.run_id, idempotency_key=entry.key
                )
        except StoreUnavailable as error:
            if not error.transient:
                raise
            return False
        self.spool.clear()
        found = _only_event(entries[-1])
        assert isinstance(found, events.LedgerRecovered)
        LOGGER.warning(
            "LEDGER_RECOVERED run=%s outage_ms=%d cycles=%d events=%d: the spool was drained "
            "in order",
            self.run_id,
            found.outage_ms,
            found.cycles,
            found.events,
        )
        return True

    def _recovered(self, entries: list[SpooledAppend]) -> SpooledAppend:
        first = _only_event(entries[0])
        since = first.since if isinstance(first, events.LedgerUnavailable) else self.clock.now()
        at = self.clock.now()
        recovered = events.LedgerRecovered(
            run_id=self.run_id,
            since=since,
            at=at,
            outage_ms=max(0, int((at - since).total_seconds() * 1000)),
            cycles=sum(1 for e in entries if e.cycle >= 0),
            events=sum(e.events for e in entries) + 1,
        )
        return SpooledAppend.of(
            f"ledger/{self.run_id}/recovered/{entries[0].key}",
            -1,
            [StreamAppend(run_stream(self.run_id), [recovered], None)],
        )

    def _outage(self, error: StoreUnavailable, cycle: int) -> None:
        since = self.clock.now()
        unavailable = events.LedgerUnavailable(
            run_id=self.run_id,
            cycle=cycle,
            since=since,
            error_class=type(error).__name__,
            message=error.message[:MESSAGE_LENGTH_MAX],
            spool=str(self.spool.path),
        )
        LOGGER.error(
            "LEDGER_UNAVAILABLE run=%s cycle=%d error=%s spool=%s: cycles go to the spool and "
            "no orders are placed until the ledger is back",
            self.run_id,
            cycle,
            type(error).__name__,
            self.spool.path,
        )
        self._keep(
            SpooledAppend.of(
                f"ledger/{self.run_id}/unavailable/{since.isoformat()}",
                -1,
                [StreamAppend(run_stream(self.run_id), [unavailable], None)],
            )
        )

    def _keep(self, entry: SpooledAppend) -> None:
        if not self.spool.add(entry):
            raise SpoolFull(self.spool)

    def _retrying(self, call: Callable[[], list[list[int]]]) -> list[list[int]]:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return call()
            except StoreUnavailable as error:
                if (
                    not error.transient
                    or isinstance(error, StoreDeadlineExceeded)  # it waited long enough
                    or attempt == self.retries
                ):
                    raise
                self.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


class SpoolFull(Exception):
    """The ledger has been out longer than the spool can hold: the run stops."""

    def __init__(self, spool: Spool) -> None:
        super().__init__(f"the spool {spool.path} reached its limit of {spool.limit_bytes} bytes")
        self.spool = spool


def _only_event(entry: SpooledAppend) -> events.Event | None:
    """The event of a one-event entry (the bookkeeping ones), else None."""
    if len(entry.batches) == 1 and len(entry.batches[0][1]) == 1:
        event: events.Event = decode_event(entry.batches[0][1][0])
        return event
    return None
