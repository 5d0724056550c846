"""Benchmark: rebuild portfolio equity from a million events, and a checkpointed restart.

    python bench/portfolio.py [--events 1000000]

The ledger holds a real run's mix. Each cycle has one SnapshotSealed (3 marks), two
TradeExecuted, two FeeCharged and one ValidationPassed, in a SQLite file (durable). Measured
in the same run:
- tally: ``portfolio.rebuild`` from the first event (reads, checks every row's hash,
  decodes, folds);
- eventsourcing 9.5: the same trades and fees as aggregate events (one aggregate per 1,000),
  rebuilt with ``repository.get``;
- a checkpointed restart: checkpoint at the head, 10,000 more events, rebuild again.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from ledger import events, init_store, open_store  # noqa: E402
from ledger.store import StreamAppend  # noqa: E402
from projections import portfolio  # noqa: E402

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
PER_CYCLE = 6


def cycle_events(cycle: int) -> list[events.Event]:
    symbol = SYMBOLS[cycle % 3]
    price = Decimal(100 + cycle % 50) + Decimal(cycle % 97) / 100
    qty = Decimal("0.01")
    marks = {s: price for s in SYMBOLS}
    return [
        events.SnapshotSealed(snapshot_id=str(cycle), fresh=3, stale=0, failed=0, marks=marks,
                              cycle=cycle),
        events.TradeExecuted(account="main", symbol=symbol, side="buy", qty=qty, price=price,
                             order_id=f"o{cycle}a", trade_id=f"t{cycle}a"),
        events.FeeCharged(account="main", trade_id=f"t{cycle}a", asset="USDT",
                          amount=(qty * price / 1000).quantize(Decimal("0.00000001"))),
        events.TradeExecuted(account="main", symbol=symbol, side="sell", qty=qty / 2,
                             price=price + 1, order_id=f"o{cycle}b", trade_id=f"t{cycle}b"),
        events.FeeCharged(account="main", trade_id=f"t{cycle}b", asset="USDT",
                          amount=(qty * price / 2000).quantize(Decimal("0.00000001"))),
        events.ValidationPassed(account="main", cycle=cycle, diff={"equity": "0"}),
    ]


def fill(url: str, total: int, first_cycle: int = 0) -> int:
    cycles = total // PER_CYCLE
    with open_store(url) as store:
        if first_cycle == 0:
            store.append("portfolio/main", [events.FundsDeposited(
                account="main", asset="USDT", amount=Decimal("10000000"))], expected_version=0)
        for start in range(first_cycle, first_cycle + cycles, 166):
            batch = [e for c in range(start, min(start + 166, first_cycle + cycles))
                     for e in cycle_events(c)]
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


def eventsourcing_rebuild(folder: str, total: int) -> tuple[float, int]:
    app = Books(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                     "SQLITE_DBNAME": f"{folder}/es.db"})
    ids = []
    money = [e for c in range(total // PER_CYCLE) for e in cycle_events(c)
             if isinstance(e, events.TradeExecuted | events.FeeCharged)]
    for start in range(0, len(money), 1000):
        account = Account()
        for e in money[start:start + 1000]:
            if isinstance(e, events.TradeExecuted):
                account.trade(e.symbol, e.side, e.qty, e.price)
            elif isinstance(e, events.FeeCharged):
                account.fee(e.amount)
        app.save(account)
        ids.append(account.id)
    started = time.perf_counter()
    count = sum(app.repository.get(i).version for i in ids)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/ledger.db"
        init_store(url)
        head = fill(url, args.events)
        with open_store(url) as store:
            started = time.perf_counter()
            state = portfolio.rebuild(store, checkpoint=False)
            full = time.perf_counter() - started
            marks = {s: Decimal(120) for s in SYMBOLS}
            print(f"ledger: {head:,} events (SQLite), mix per cycle: 1 snapshot, 2 trades, "
                  f"2 fees, 1 validation")
            print(f"tally rebuild from zero       {full:7.2f} s  {head / full:>10,.0f} events/s  "
                  f"equity {state.equity(marks):.2f}")
            es_time, es_events = eventsourcing_rebuild(folder, args.events)
            print(f"eventsourcing aggregate rebuild {es_time:5.2f} s  "
                  f"{es_events / es_time:>10,.0f} events/s  (its {es_events:,} trade and fee "
                  f"events only)")
            print(f"ratio (events/s): tally {head / full / (es_events / es_time):.2f}x")
            portfolio.rebuild(store)  # saves a checkpoint at the head
        fill(url, 10_002, first_cycle=args.events // PER_CYCLE)
        with open_store(url) as store:
            started = time.perf_counter()
            resumed = portfolio.rebuild(store)
            tail = time.perf_counter() - started
            assert resumed == portfolio.rebuild(store, checkpoint=False)
            print(f"checkpointed restart: {store.head() - head:,} new events folded in "
                  f"{tail * 1000:.0f} ms (a full rebuild took {full:.2f} s)")


if __name__ == "__main__":
    main()
