"""Benchmark: rebuild portfolio equity from a million events, and a checkpointed restart.

    python bench/portfolio.py [--events 1000000]

Two SQLite ledgers (durable), each measured in the same run against eventsourcing 9.5:
1. the mix of a real run: the events the embedded default `tally run` records (fetches,
   retries, snapshots, orders, trades, fees, balances, validations), repeated to 1,000,000;
2. a trade-heavy worst case: per cycle one snapshot, two trades, two fees, one validation.
tally: ``portfolio.rebuild`` from the first event (reads the money events, checks every
row's hash, decodes, folds). eventsourcing: the same trades and fees only, as aggregate
events (1,000 per aggregate), rebuilt with ``repository.get``. Each rebuild runs three times,
the systems taking turns; the medians are compared. Then a checkpointed restart:
checkpoint at the head, 10,000 more events, rebuild again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from ledger import events, init_store, open_store  # noqa: E402
from ledger.store import StreamAppend, group_appends  # noqa: E402
from projections import portfolio  # noqa: E402
from tally.run.backtest import RunSummary, run_backtest  # noqa: E402
from tally.settings import load_settings  # noqa: E402

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
PER_CYCLE = 6
REPEATS = 3  # rebuilds timed per system and ledger; the median is reported


def cycle_events(cycle: int) -> list[events.Event]:
    symbol = SYMBOLS[cycle % 3]
    price = Decimal(100 + cycle % 50) + Decimal(cycle % 97) / 100
    qty = Decimal("0.01")
    marks = {s: price for s in SYMBOLS}
    return [
        events.SnapshotSealed(
            snapshot_id=str(cycle), fresh=3, stale=0, failed=0, marks=marks, cycle=cycle
        ),
        events.TradeExecuted(
            account="main",
            symbol=symbol,
            side="buy",
            qty=qty,
            price=price,
            order_id=f"o{cycle}a",
            trade_id=f"t{cycle}a",
        ),
        events.FeeCharged(
            account="main",
            trade_id=f"t{cycle}a",
            asset="USDT",
            amount=(qty * price / 1000).quantize(Decimal("0.00000001")),
        ),
        events.TradeExecuted(
            account="main",
            symbol=symbol,
            side="sell",
            qty=qty / 2,
            price=price + 1,
            order_id=f"o{cycle}b",
            trade_id=f"t{cycle}b",
        ),
        events.FeeCharged(
            account="main",
            trade_id=f"t{cycle}b",
            asset="USDT",
            amount=(qty * price / 2000).quantize(Decimal("0.00000001")),
        ),
        events.ValidationPassed(account="main", cycle=cycle, diff={"equity": "0"}),
    ]


def fill(url: str, total: int, first_cycle: int = 0) -> int:
    cycles = total // PER_CYCLE
    with open_store(url) as store:
        if first_cycle == 0:
            store.append(
                "portfolio/main",
                [events.FundsDeposited(account="main", asset="USDT", amount=Decimal("10000000"))],
                expected_version=0,
            )
        for start in range(first_cycle, first_cycle + cycles, 166):
            batch = [
                e
                for c in range(start, min(start + 166, first_cycle + cycles))
                for e in cycle_events(c)
            ]
            store.append_many([StreamAppend("portfolio/main", batch)])
        return store.head()


class Account(Aggregate):
    @event("Opened")
    def __init__(self) -> None:
        self.cash = Decimal(0)
        self.positions: dict[str, Decimal] = {}

    @event("TradeExecuted")
    def trade(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        sign = 1 if side == "buy" else -1
        self.positions[symbol] = self.positions.get(symbol, Decimal(0)) + sign * qty
        self.cash -= sign * qty * price

    @event("FeeCharged")
    def fee(self, amount: Decimal) -> None:
        self.cash -= amount


class Books(Application[Any]):
    pass


class EventsourcingBooks:
    """``money`` (trades and fees) stored as eventsourcing aggregate events, 1,000 per
    aggregate; ``rebuild`` times rebuilding every aggregate with ``repository.get``."""

    def __init__(self, folder: str, money: Sequence[events.Event]) -> None:
        self.app = Books(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": f"{folder}/es-{len(money)}.db",
            }
        )
        self.ids = []
        for start in range(0, len(money), 1000):
            account = Account()
            for e in money[start : start + 1000]:
                if isinstance(e, events.TradeExecuted):
                    account.trade(e.symbol, e.side, e.qty, e.price)
                elif isinstance(e, events.FeeCharged):
                    account.fee(e.amount)
            self.app.save(account)
            self.ids.append(account.id)

    def rebuild(self) -> tuple[float, int]:
        started = time.perf_counter()
        count = sum(self.app.repository.get(i).version for i in self.ids)
        return time.perf_counter() - started, count

    def close(self) -> None:
        self.app.close()


def real_run_events() -> tuple[str, list[tuple[str, events.Event]]]:
    """The events of the embedded default run (`tally run`): the mix a real run records."""
    settings = load_settings()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/run.db"
        init_store(url)
        with open_store(url) as store:
            summary = run_backtest(
                store, settings.run, settings.ingest, config=settings.run_config()
            )
            found: list[tuple[str, events.Event]] = [(r.stream, r.event) for r in store.read_all()]
    assert isinstance(summary, RunSummary), "the default run is never stopped"
    return summary.account, found


def fill_with_run(url: str, total: int) -> tuple[int, dict[str, int], list[events.Event]]:
    """Append the run's events again and again until ``total``; return head, mix, money."""
    _, found = real_run_events()
    mix: dict[str, int] = {}
    money: list[events.Event] = []
    with open_store(url, durable=True) as store:
        written = 0
        while written < total:
            chunk = found[: total - written]
            for start in range(0, len(chunk), 1000):
                part = chunk[start : start + 1000]
                store.append_many(group_appends(part))
            for _, e in chunk:
                mix[type(e).__name__] = mix.get(type(e).__name__, 0) + 1
                if isinstance(e, events.TradeExecuted | events.FeeCharged):
                    money.append(e)
            written += len(chunk)
        return store.head(), mix, money


def measure(
    label: str, url: str, folder: str, head: int, account: str, money: Sequence[events.Event]
) -> float:
    """Each system's rebuild REPEATS times, taking turns (tally, eventsourcing, tally, ...),
    so a slow minute of this shared machine falls on both; the medians are compared."""
    books = EventsourcingBooks(folder, money)
    tally_times, es_times, es_events = [], [], 0
    try:
        for _ in range(REPEATS):
            with open_store(url) as store:
                started = time.perf_counter()
                portfolio.rebuild(store, account=account, checkpoint=False)
                tally_times.append(time.perf_counter() - started)
            es_time, es_events = books.rebuild()
            es_times.append(es_time)
    finally:
        books.close()
    full, es_time = statistics.median(tally_times), statistics.median(es_times)
    print(
        f"[{label}] tally rebuild from zero: {head:,} events in {full:.2f} s = "
        f"{head / full:,.0f} events/s, median of {REPEATS} ({_rates(head, tally_times)}) "
        f"(target >= 400,000: {'met' if head / full >= 400_000 else 'MISSED'})"
    )
    print(
        f"[{label}] eventsourcing 9.5 aggregate rebuild of the same trades and fees only: "
        f"{es_events:,} events in {es_time:.2f} s = {es_events / es_time:,.0f} events/s, "
        f"median of {REPEATS} ({_rates(es_events, es_times)})"
    )
    print(
        f"[{label}] same portfolio, time ratio: tally {es_time / full:.2f}x faster; "
        f"events/s ratio {head / full / (es_events / es_time):.2f}x"
    )
    return full


def _rates(count: int, times: list[float]) -> str:
    return " / ".join(f"{count / t:,.0f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/real.db"
        init_store(url)
        head, mix, money = fill_with_run(url, args.events)
        account = real_run_events()[0]
        shares = ", ".join(
            f"{k} {v / head:.1%}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])[:8]
        )
        print(
            f"ledger 1: {head:,} events, the default run's events repeated (its mix: {shares}, ...)"
        )
        full = measure("real-run mix", url, folder, head, account, money)
        with open_store(url) as store:
            portfolio.rebuild(store, account=account)  # saves a checkpoint at the head
            tail_events = real_run_events()[1][:10_000]
            store.append_many(group_appends(tail_events))
            started = time.perf_counter()
            resumed = portfolio.rebuild(store, account=account)
            tail = time.perf_counter() - started
            assert resumed == portfolio.rebuild(store, account=account, checkpoint=False)
            print(
                f"checkpointed restart: {store.head() - head:,} new events folded in "
                f"{tail * 1000:.0f} ms (a full rebuild took {full:.2f} s)"
            )

        url = f"sqlite:///{folder}/heavy.db"
        init_store(url)
        head = fill(url, args.events)
        heavy = [
            e
            for c in range(args.events // PER_CYCLE)
            for e in cycle_events(c)
            if isinstance(e, events.TradeExecuted | events.FeeCharged)
        ]
        print(
            f"ledger 2: {head:,} events, trade-heavy (per cycle: 1 snapshot, 2 trades, "
            f"2 fees, 1 validation; two thirds of the events move money)"
        )
        measure("trade-heavy", url, folder, head, "main", heavy)


if __name__ == "__main__":
    main()
