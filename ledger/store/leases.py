"""Run leases: at most one process records a run at a time, and it says it is alive.

A runner claims its run's lease before its first append and renews it (a heartbeat) every
few seconds; the lease carries its own expiry, so a reader needs no configuration to tell a
running run from one whose process died. A claim is refused while another owner's lease is
live; a lapsed lease (its runner crashed) is taken over. Every write runs under the ledger's
append lock, so two claimers are serialised. Times are the caller's wall clock in
microseconds: leases are operational state, never part of an event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.errors import LeaseLost, RunBusy
from ledger.store.read import Reader

RUNNING = "running"
RELEASED = "released"


@dataclass(frozen=True)
class Lease:
    """One run's lease as stored."""

    run_id: str
    owner: str
    pid: int
    host: str
    state: str
    heartbeat_us: int
    expires_us: int
    cycles_done: int
    cycles_planned: int

    @classmethod
    def from_row(cls, row: Any) -> Lease:
        """A lease from a row of ``LEASE_COLUMNS``."""
        return cls(
            str(row[0]),
            str(row[1]),
            int(row[2]),
            str(row[3]),
            str(row[4]),
            int(row[5]),
            int(row[6]),
            int(row[7]),
            int(row[8]),
        )

    def live(self, now_us: int) -> bool:
        """Whether a runner holds it now: claimed, and renewed before its expiry."""
        return self.state == RUNNING and self.expires_us > now_us


class Leases:
    """Claim, renew, release and list run leases."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def claim(
        self, lease: Lease, now_us: int, lapsed: Callable[[Lease], bool] = lambda _: False
    ) -> None:
        """Take ``lease.run_id`` for ``lease.owner``; ``RunBusy`` if another holds it live.

        ``lapsed`` may say that a live-looking lease is dead all the same (its process is
        known to be gone), so it is taken over at once instead of at its expiry."""
        reader, sql = self.reader, self.reader.sql
        values = (
            lease.owner,
            lease.pid,
            lease.host,
            RUNNING,
            lease.heartbeat_us,
            lease.expires_us,
            lease.cycles_done,
            lease.cycles_planned,
        )
        with reader.backend.guard(), reader.backend.write(reader.engine) as cursor:
            cursor.execute(sql.lease, (lease.run_id,))
            row = cursor.fetchone()
            if row is None:
                cursor.execute(sql.insert_lease, (lease.run_id, *values))
                return
            held = Lease.from_row(row)
            if held.owner != lease.owner and held.live(now_us) and not lapsed(held):
                raise RunBusy(
                    f"run {lease.run_id} is being recorded by pid {held.pid} on {held.host} "
                    f"(last heartbeat {(now_us - held.heartbeat_us) / 1e6:.1f} s ago)",
                    run_id=lease.run_id,
                    pid=held.pid,
                    host=held.host,
                )
            cursor.execute(sql.take_lease, (*values, lease.run_id))

    def renew(self, run_id: str, owner: str, now_us: int, expires_us: int, done: int) -> None:
        """A heartbeat: ``LeaseLost`` if another owner took the run over meanwhile."""
        reader, sql = self.reader, self.reader.sql
        with reader.backend.guard(), reader.backend.write(reader.engine) as cursor:
            cursor.execute(sql.renew_lease, (now_us, expires_us, done, run_id, owner))
            if cursor.rowcount == 0:
                raise LeaseLost(f"run {run_id} is no longer held by this process", run_id=run_id)

    def release(self, run_id: str, owner: str, now_us: int, done: int) -> None:
        """Give the run up (it finished, stopped or failed); a no-op if no longer ours."""
        reader, sql = self.reader, self.reader.sql
        with reader.backend.guard(), reader.backend.write(reader.engine) as cursor:
            cursor.execute(sql.release_lease, (RELEASED, now_us, now_us, done, run_id, owner))

    def all(self) -> dict[str, Lease]:
        """Every lease by run id."""
        return {
            str(row[0]): Lease.from_row(row)
            for row in self.reader.fetch(self.reader.sql.all_leases)
        }
