"""Benchmark: append and full read of events, Tally beside its peers, in one run.

    python bench/store.py                       # 1,000,000 events, batches of 1, 100, 1000
    python bench/store.py --events 100000       # quicker
    python bench/store.py --pg URL              # adds PostgreSQL (or set TALLY_TEST_PG_URL)
    python bench/store.py --payload deposit     # small FundsDeposited instead of fills

Every system stores the same events, field for field: ``TradeExecuted`` fills by default
(the payload issue 14 measures), or small ``FundsDeposited`` with ``--payload deposit``.
Each system encodes them its own way; the peers' encoding is done before the clock starts.

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


def trade_event(i: int) -> events.TradeExecuted:
    """A fill as a backtest records it: the payload issue 14 measures the store with."""
    return events.TradeExecuted(
        account="main",
        symbol=SYMBOLS[i % len(SYMBOLS)],
        side="buy" if i % 2 == 0 else "sell",
        qty=Decimal(i % 977 + 1) / 1000,
        price=Decimal(60_000 + i % 5_000) + Decimal(i % 100) / 100,
        order_id=f"o{i}",
        trade_id=f"t{i}",
    )


SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
PAYLOADS: dict[str, Callable[[int], events.Event]] = {"trade": trade_event, "deposit": small_event}
CHOSEN = {"payload": "trade"}  # set from --payload in main


def make_event(i: int) -> events.Event:
    """Event ``i`` of the benchmark, of the chosen payload."""
    return PAYLOADS[CHOSEN["payload"]](i)


def batches(total: int, size: int) -> list[range]:
    return [range(start, min(start + size, total)) for start in range(0, total, size)]


# --- tally ------------------------------------------------------------------------------


class TallyAppender:
    """EventStore.append of prepared batches, round-robin over STREAMS streams."""

    def __init__(self, url: str, total: int, size: int, durable: bool = True) -> None:
        init_store(url)
        self.prepared = [[make_event(i) for i in chunk] for chunk in batches(total, size)]
        self.versions = [0] * STREAMS
        self.store = open_store(url, durable=durable)

    def __call__(self, chunks: range) -> float:
        store, versions, prepared = self.store, self.versions, self.prepared
        started = time.perf_counter()
        for k in chunks:
            stream = k % STREAMS
            store.append(f"portfolio/{stream}", prepared[k], expected_version=versions[stream])
            versions[stream] += len(prepared[k])
        return time.perf_counter() - started

    def close(self) -> None:
        self.store.close()


def tally_read(url: str) -> int:
    with open_store(url) as store:
        count = 0
        for _ in store.read_all():  # decode + verify every hash and link
            count += 1
        return count


# --- raw sqlite3 ------------------------------------------------------------------------


class RawAppender:
    """executemany of pre-encoded rows (the same events, hashed) into tally's own table."""

    def __init__(self, path: str, total: int, size: int, durable: bool = True) -> None:
        init_store(f"sqlite:///{path}")  # the same table, indexes and pragmas as tally's
        now = datetime(2026, 1, 1, tzinfo=UTC)
        self.rows: list[tuple[Any, ...]] = []
        self.size = size
        prev = bytes(32)
        versions = [0] * STREAMS
        for k, chunk in enumerate(batches(total, size)):
            stream = f"portfolio/{k % STREAMS}"  # the streams and versions tally writes
            for i in chunk:
                event_i = make_event(i)
                versions[k % STREAMS] += 1
                record = encode_record(
                    Envelope(recorded_at=now),
                    event_i,
                    position=i + 1,
                    stream=stream,
                    version=versions[k % STREAMS],
                )
                digest = chain_hash(prev, record)
                row = (i + 1, stream, versions[k % STREAMS], type(event_i).__name__, 0)
                self.rows.append((*row, record, prev, digest))
                prev = digest
        self.conn = sqlite3.connect(path, isolation_level=None)
        # The same per-connection settings tally's connections use.
        self.conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

    def __call__(self, chunks: range) -> float:
        conn, rows, size = self.conn, self.rows, self.size
        sql = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        started = time.perf_counter()
        for k in chunks:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[k * size : (k + 1) * size])
            conn.execute("COMMIT")
        return time.perf_counter() - started

    def close(self) -> None:
        self.conn.close()


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
    """The peer's aggregate: the same events as tally's, with the same fields and values."""

    @event("Opened")
    def __init__(self, account: str) -> None:
        self.account = account
        self.balance = Decimal(0)

    @event("FundsDeposited")
    def deposit(self, asset: str, amount: Decimal) -> None:
        self.balance += amount

    @event("TradeExecuted")
    def trade(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, order_id: str, trade_id: str
    ) -> None:
        self.balance += qty * price if side == "sell" else -qty * price


def es_apply(account: Account, i: int) -> None:
    """Event ``i`` of the run, on the peer's aggregate."""
    ev = make_event(i)
    if isinstance(ev, events.TradeExecuted):
        account.trade(ev.symbol, ev.side, ev.qty, ev.price, ev.order_id, ev.trade_id)
    else:
        assert isinstance(ev, events.FundsDeposited)
        account.deposit(ev.asset, ev.amount)


class Bank(Application[Any]):
    pass


def es_app(target: str, backend: str) -> tuple[Bank, type[Account]]:
    return Bank(env=es_environment("bank", backend, target)), Account


class EsRecorderAppender:
    """eventsourcing's recorder inserting events its own mapper mapped before the clock."""

    def __init__(self, target: str, backend: str, total: int, size: int) -> None:
        from uuid import uuid4

        from eventsourcing.persistence import StoredEvent

        self.app, account_cls = es_app(target, backend)
        mapper = self.app.mapper
        self.prepared = []
        for chunk in batches(total, size):
            # The same events as tally's, each system in its own encoding (the aggregate's
            # creation is left out).
            account = account_cls("main")
            for i in chunk:
                es_apply(account, i)
            originator = uuid4()
            self.prepared.append(
                [
                    StoredEvent(
                        originator_id=originator,
                        originator_version=v,
                        topic=mapped.topic,
                        state=mapped.state,
                    )
                    for v, mapped in enumerate(
                        (mapper.to_stored_event(e) for e in account.collect_events()[1:]),
                        start=1,
                    )
                ]
            )

    def __call__(self, chunks: range) -> float:
        recorder, prepared = self.app.recorder, self.prepared
        started = time.perf_counter()
        for k in chunks:
            recorder.insert_events(prepared[k])
        return time.perf_counter() - started

    def close(self) -> None:
        self.app.close()


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


class EsApplicationAppender:
    """eventsourcing's Application/Aggregate path: aggregates built and saved, timed."""

    def __init__(self, target: str, backend: str, total: int, size: int) -> None:
        self.app, self.account_cls = es_app(target, backend)
        self.chunks = batches(total, size)

    def __call__(self, chunks: range) -> float:
        started = time.perf_counter()
        for k in chunks:
            account = self.account_cls("main")  # its first event is the creation
            for i in self.chunks[k][1:]:
                es_apply(account, i)
            self.app.save(account)
        return time.perf_counter() - started

    def close(self) -> None:
        self.app.close()


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
    parser.add_argument(
        "--payload",
        choices=sorted(PAYLOADS),
        default="trade",
        help="the events every system stores: TradeExecuted fills or small FundsDeposited",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="turns each system's batches are split into, taken in rotation (interleaved)",
    )
    parser.add_argument("--read", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    CHOSEN["payload"] = args.payload
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
            rows += run_sqlite(workdir, total, size, systems, durable, args.rounds)
        if "postgres" not in backends:
            pass
        elif args.pg:
            for size in [s for s in sizes if s > 1]:
                rows += run_postgres(args.pg, args.events, size, systems, args.rounds)
        else:
            print("(no PostgreSQL: pass --pg URL or set TALLY_TEST_PG_URL for that column)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summarise(rows, durable)


def interleaved(appenders: dict[str, Any], total: int, size: int, rounds: int) -> dict[str, float]:
    """Each system's append time, its batches split into ``rounds`` turns taken in rotation:
    the machine's slow and fast minutes are shared by all (it varies by a quarter)."""
    count = len(batches(total, size))
    rounds = max(1, min(rounds, count))
    cuts = [count * r // rounds for r in range(rounds + 1)]
    names = list(appenders)
    spent = dict.fromkeys(names, 0.0)
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                spent[name] += appenders[name](range(cuts[r], cuts[r + 1]))
    finally:
        for appender in appenders.values():
            appender.close()
    return spent


def run_sqlite(
    workdir: Path, total: int, size: int, systems: tuple[str, ...], durable: bool, rounds: int
) -> list[dict[str, Any]]:
    paths = {system: str(workdir / f"{system}-{size}.db") for system in systems}
    makers: dict[str, Callable[[], Any]] = {
        "tally": lambda: TallyAppender(f"sqlite:///{paths['tally']}", total, size, durable),
        "raw": lambda: RawAppender(paths["raw"], total, size, durable),
        "es-recorder": lambda: EsRecorderAppender(paths["es-recorder"], "sqlite", total, size),
        "es-application": lambda: EsApplicationAppender(
            paths["es-application"], "sqlite", total, size
        ),
    }
    spent = interleaved({s: makers[s]() for s in systems}, total, size, rounds)
    results: list[dict[str, Any]] = []
    for system in systems:
        path = paths[system]
        read_args = {
            "tally": [f"sqlite:///{path}"],
            "raw": [path],
        }.get(system, [path, "sqlite"])
        read, count, peak, base = read_in_subprocess(system, read_args)
        if count != total:
            raise SystemExit(f"{system}: read {count} events, wrote {total}")
        row = report("sqlite", system, size, total, spent[system], read, peak, base, results)
        results.append(row)
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    return results


def run_postgres(
    admin: str, total: int, size: int, systems: tuple[str, ...], rounds: int
) -> list[dict[str, Any]]:
    chosen = [s for s in systems if s in ("tally", "es-recorder")]
    urls = {s: pg_database(admin, f"tally_bench_{s.replace('-', '_')}_{size}") for s in chosen}
    makers: dict[str, Callable[[], Any]] = {
        "tally": lambda: TallyAppender(urls["tally"], total, size),
        "es-recorder": lambda: EsRecorderAppender(urls["es-recorder"], "postgres", total, size),
    }
    spent = interleaved({s: makers[s]() for s in chosen}, total, size, rounds)
    results: list[dict[str, Any]] = []
    for system in chosen:
        read_args = [urls[system]] if system == "tally" else [urls[system], "postgres"]
        read, count, peak, base = read_in_subprocess(system, read_args)
        if count != total:
            raise SystemExit(f"{system}: read {count} events, wrote {total}")
        row = report("postgres", system, size, total, spent[system], read, peak, base, results)
        results.append(row)
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
    row: dict[str, Any] = {
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
    print(f"payload: {PAYLOADS[CHOSEN['payload']].__name__}")
    print(
        f"sqlite page size {PAGE_SIZE_BYTES} B, synchronous={'FULL' if durable else 'NORMAL'}"
        ", WAL; "
        f"python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
