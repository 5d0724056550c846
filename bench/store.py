"""Benchmark: append and full read of small events, Tally beside its peers, in one run.

    python bench/store.py                       # 1,000,000 events, batches of 1, 100, 1000
    python bench/store.py --events 100000       # quicker
    python bench/store.py --pg URL              # adds PostgreSQL (or set TALLY_TEST_PG_URL)

Systems, all on SQLite files in WAL mode with synchronous=FULL (every commit durable):
- tally              EventStore.append: encode, hash-chain, insert; read_all: read + decode +
                     verify every hash and link
- raw sqlite3        executemany of pre-encoded rows of the same size into the same table:
                     the physical limit for Python here; its read is a bare fetch
- es recorder        eventsourcing 9.5 SQLiteApplicationRecorder.insert_events of pre-mapped
                     StoredEvents; read = select_notifications + mapper.to_domain_event
- es application     eventsourcing 9.5 Application/Aggregate: aggregate events saved with
                     app.save; read = repository.get of every aggregate
Batch size 1 commits (and fsyncs) once per event, so it runs on --small-events only.
Reads run in a fresh process, so the peak RSS printed is the reader's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from ledger import events, init_store, open_store  # noqa: E402
from ledger.codec import Envelope, chain_hash, encode_record  # noqa: E402
from ledger.store.sqlite import PAGE_SIZE_BYTES, WAL_AUTOCHECKPOINT_PAGES  # noqa: E402

STREAMS = 100


def small_event(i: int) -> events.FundsDeposited:
    return events.FundsDeposited(account="main", asset="USDT", amount=Decimal(i + 1) / 100)


def batches(total: int, size: int) -> list[range]:
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


# --- tally ------------------------------------------------------------------------------


def tally_append(url: str, total: int, size: int, durable: bool = True) -> float:
    init_store(url)
    prepared = [[small_event(i) for i in chunk] for chunk in batches(total, size)]
    versions = [0] * STREAMS
    with open_store(url, durable=durable) as store:
        started = time.perf_counter()
        for k, chunk in enumerate(prepared):
            stream = k % STREAMS
            store.append(f"portfolio/{stream}", chunk, expected_version=versions[stream])
            versions[stream] += len(chunk)
        return time.perf_counter() - started


def tally_read(url: str) -> int:
    with open_store(url) as store:
        count = 0
        for _ in store.read_all():  # decode + verify every hash and link
            count += 1
        return count


# --- raw sqlite3 ------------------------------------------------------------------------


def raw_append(path: str, total: int, size: int, durable: bool = True) -> float:
    init_store(f"sqlite:///{path}")  # the same table, indexes and pragmas as tally's
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    prev = bytes(32)
    for i in range(total):
        record = encode_record(
            Envelope(recorded_at=now),
            small_event(i),
            position=i + 1,
            stream="portfolio/0",
            version=i + 1,
        )
        digest = chain_hash(prev, record)
        rows.append(
            (i + 1, f"portfolio/{i % STREAMS}", i + 1, "FundsDeposited", 0, record, prev, digest)
        )
        prev = digest
    conn = sqlite3.connect(path, isolation_level=None)
    # The same per-connection settings tally's connections use.
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    sql = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    started = time.perf_counter()
    for chunk in batches(total, size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[chunk.start : chunk.stop])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def raw_read(path: str) -> int:
    conn = sqlite3.connect(path)
    count = 0
    for _ in conn.execute("SELECT position, record, hash FROM events ORDER BY position"):
        count += 1
    return count


# --- eventsourcing ----------------------------------------------------------------------


def es_environment(name: str, backend: str, target: str) -> dict[str, str]:
    env = {"PERSISTENCE_MODULE": f"eventsourcing.{backend}"}
    if backend == "sqlite":
        env["SQLITE_DBNAME"] = target
    else:
        from sqlalchemy.engine import make_url

        url = make_url(target)
        env.update(
            POSTGRES_DBNAME=url.database or "",
            POSTGRES_HOST=url.host or "",
            POSTGRES_PORT=str(url.port or 5432),
            POSTGRES_USER=url.username or "",
            POSTGRES_PASSWORD=url.password or "",
        )
    return {f"{name.upper()}_{k}": v for k, v in env.items()} | env


class Account(Aggregate):
    """The peer's aggregate: the same small deposit event as tally's."""

    @event("Opened")
    def __init__(self, account: str) -> None:
        self.account = account
        self.balance = Decimal(0)

    @event("FundsDeposited")
    def deposit(self, asset: str, amount: Decimal) -> None:
        self.balance += amount


class Bank(Application[Any]):
    pass


def es_app(target: str, backend: str) -> tuple[Bank, type[Account]]:
    return Bank(env=es_environment("bank", backend, target)), Account


def es_recorder_append(target: str, backend: str, total: int, size: int) -> float:
    from uuid import uuid4

    from eventsourcing.persistence import StoredEvent

    app, account_cls = es_app(target, backend)
    recorder = app.recorder
    account = account_cls("main")
    mapper = app.mapper
    template = mapper.to_stored_event(account.collect_events()[0])
    prepared = []
    for chunk in batches(total, size):
        originator = uuid4()
        prepared.append(
            [
                StoredEvent(
                    originator_id=originator,
                    originator_version=v,
                    topic=template.topic,
                    state=template.state,
                )
                for v, _ in enumerate(chunk, start=1)
            ]
        )
    started = time.perf_counter()
    for stored in prepared:
        recorder.insert_events(stored)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def es_recorder_read(target: str, backend: str) -> int:
    app, _ = es_app(target, backend)
    count, start = 0, 1
    while True:
        page = app.recorder.select_notifications(start=start, limit=10_000)
        for notification in page:
            app.mapper.to_domain_event(notification)
            count += 1
        if len(page) < 10_000:
            break
        start = page[-1].id + 1
    app.close()
    return count


def es_application_append(target: str, backend: str, total: int, size: int) -> float:
    app, account_cls = es_app(target, backend)
    started = time.perf_counter()
    for chunk in batches(total, size):
        account = account_cls("main")  # its first event is the creation
        for i in chunk[1:]:
            account.deposit("USDT", Decimal(i) / 100)
        app.save(account)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def es_application_read(target: str, backend: str) -> int:
    app, _ = es_app(target, backend)
    ids, start = [], 1
    while True:
        page = app.recorder.select_notifications(start=start, limit=10_000)
        for notification in page:
            if notification.originator_version == 1:
                ids.append(notification.originator_id)
        if len(page) < 10_000:
            break
        start = page[-1].id + 1
    count = 0
    for originator in ids:
        count += app.repository.get(originator).version
    app.close()
    return count


# --- harness ----------------------------------------------------------------------------

SYSTEMS = ("tally", "raw", "es-recorder", "es-application")
READERS: dict[str, Callable[..., int]] = {
    "tally": tally_read,
    "raw": raw_read,
    "es-recorder": es_recorder_read,
    "es-application": es_application_read,
}


def read_in_subprocess(system: str, args: list[str]) -> tuple[float, int, float, float]:
    """Run a reader in a fresh process: (seconds, events, peak RSS MB, RSS before read MB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--read", system, *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["events"], result["peak_mb"], result["base_mb"]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, unlike ru_maxrss, restarts at exec: a reader started
    by a parent holding a million prepared rows does not inherit the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reader_main(system: str, args: list[str]) -> None:
    base = peak_rss_mb()
    started = time.perf_counter()
    count = READERS[system](*args)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "events": count, "peak_mb": peak, "base_mb": base}))


def pg_database(admin: str, name: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(admin).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--small-events",
        type=int,
        default=5_000,
        help="events for batch size 1 (one fsync per event)",
    )
    parser.add_argument("--batch", type=int, action="append", default=None)
    parser.add_argument(
        "--pg",
        default=os.environ.get("TALLY_TEST_PG_URL"),
        help="admin URL of a PostgreSQL server (creates bench databases)",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgres"],
        action="append",
        default=None,
        help="run only this backend (repeatable)",
    )
    parser.add_argument(
        "--system",
        action="append",
        default=None,
        choices=["tally", "raw", "es-recorder", "es-application"],
        help="run only this system (repeatable)",
    )
    parser.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="SQLite durability for tally and raw (the eventsourcing peers "
        "always use their own default, FULL)",
    )
    parser.add_argument("--read", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        reader_main(args.read[0], args.read[1:])
        return
    durable = args.synchronous == "full"
    systems = tuple(args.system or SYSTEMS)
    sizes = args.batch or [1, 100, 1000]
    workdir = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    rows: list[dict[str, Any]] = []
    print(
        f"{'backend':<9} {'system':<15} {'batch':>5} {'events':>9} {'append/s':>10} "
        f"{'vs tally':>8} {'read/s':>10} {'vs tally':>8} {'read RSS MB':>12}"
    )
    try:
        backends = args.backend or ["sqlite", "postgres"]
        for size in sizes if "sqlite" in backends else []:
            total = args.small_events if size == 1 else args.events
            rows += run_sqlite(workdir, total, size, systems, durable)
        if "postgres" not in backends:
            pass
        elif args.pg:
            for size in [s for s in sizes if s > 1]:
                rows += run_postgres(args.pg, args.events, size, systems)
        else:
            print("(no PostgreSQL: pass --pg URL or set TALLY_TEST_PG_URL for that column)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summarise(rows, durable)


def run_sqlite(
    workdir: Path, total: int, size: int, systems: tuple[str, ...], durable: bool
) -> list[dict[str, Any]]:
    results = []
    for system in systems:
        path = str(workdir / f"{system}-{size}.db")
        if system == "tally":
            append = tally_append(f"sqlite:///{path}", total, size, durable)
            read_args = [f"sqlite:///{path}"]
        elif system == "raw":
            append = raw_append(path, total, size, durable)
            read_args = [path]
        elif system == "es-recorder":
            append = es_recorder_append(path, "sqlite", total, size)
            read_args = [path, "sqlite"]
        else:
            append = es_application_append(path, "sqlite", total, size)
            read_args = [path, "sqlite"]
        read, count, peak, base = read_in_subprocess(system, read_args)
        if count != total:
            raise SystemExit(f"{system}: read {count} events, wrote {total}")
        results.append(report("sqlite", system, size, total, append, read, peak, base, results))
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    return results


def run_postgres(
    admin: str, total: int, size: int, systems: tuple[str, ...]
) -> list[dict[str, Any]]:
    results = []
    for system in [s for s in systems if s in ("tally", "es-recorder")]:
        url = pg_database(admin, f"tally_bench_{system.replace('-', '_')}_{size}")
        if system == "tally":
            append = tally_append(url, total, size)
            read_args = [url]
        else:
            append = es_recorder_append(url, "postgres", total, size)
            read_args = [url, "postgres"]
        read, count, peak, base = read_in_subprocess(system, read_args)
        if count != total:
            raise SystemExit(f"{system}: read {count} events, wrote {total}")
        results.append(report("postgres", system, size, total, append, read, peak, base, results))
    return results


def report(
    backend: str,
    system: str,
    size: int,
    total: int,
    append: float,
    read: float,
    peak: float,
    base: float,
    earlier: list[dict[str, Any]],
) -> dict[str, Any]:
    row = {
        "backend": backend,
        "system": system,
        "batch": size,
        "events": total,
        "append_eps": total / append,
        "read_eps": total / read,
        "peak_mb": peak,
        "base_mb": base,
    }
    ours = next((r for r in earlier if r["system"] == "tally"), row)
    print(
        f"{backend:<9} {system:<15} {size:>5} {total:>9,} {row['append_eps']:>10,.0f} "
        f"{row['append_eps'] / ours['append_eps']:>7.2f}x {row['read_eps']:>10,.0f} "
        f"{row['read_eps'] / ours['read_eps']:>7.2f}x {peak:>6.0f} ({base:.0f})",
        flush=True,
    )
    return row


def summarise(rows: list[dict[str, Any]], durable: bool) -> None:
    print("\nratios (tally / peer; >1 means tally is faster):")
    for backend in ("sqlite", "postgres"):
        for size in sorted({r["batch"] for r in rows if r["backend"] == backend}):
            group = {r["system"]: r for r in rows if r["backend"] == backend and r["batch"] == size}
            ours = group.get("tally")
            if ours is None:
                continue
            parts = [
                f"{peer} append {ours['append_eps'] / r['append_eps']:.2f}x "
                f"read {ours['read_eps'] / r['read_eps']:.2f}x"
                for peer, r in group.items()
                if peer != "tally"
            ]
            print(f"  {backend} batch {size}: " + "; ".join(parts))
    print("read RSS: peak of the reading process, MB (before the read in brackets)")
    print(
        f"sqlite page size {PAGE_SIZE_BYTES} B, synchronous={'FULL' if durable else 'NORMAL'}"
        ", WAL; "
        f"python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
