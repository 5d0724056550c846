"""The cycle loop: snapshot -> strategy decides -> venue executes -> validator -> commit.

Each cycle is one atomic append: the facts it observed (fetches, retries, the sealed
snapshot, orders sent, the venue's balances) plus, as the validator decides, its trades and
fees with ``ValidationPassed`` or ``PortfolioReconciled``, or only ``CycleDiscarded`` with
the diff. A backtest groups ``commit_cycles`` whole cycles into one durable transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from ingest.breaker import BreakerRegistry
from ingest.orders import NonceAllocator, OrderExecutor, OrderStatus
from ingest.provider_errors import provider_error
from ingest.settings import IngestSettings
from ingest.snapshot import PriceCache, SnapshotTaker, TickerSource
from ingest.venues import MarketSpec, PaperVenue, Venue
from ledger import events
from ledger.clock import Clock, SimulatedClock
from ledger.market import MESSAGE_LENGTH_MAX
from ledger.store import EventStore
from projections.alerting import AlertEngine
from projections.portfolio import PortfolioState
from projections.reconciliation import state_from_balances
from projections.validator import ValidatorSettings
from tally.run.commit import GroupAppends, commit_cycle
from tally.run.lifecycle import StopSignal
from tally.run.notify import Notifier, alert_body
from tally.run.spool import LedgerLink
from tally.run.strategy import CycleView, Strategy

MONEY = (events.TradeExecuted, events.FeeCharged)
LOGGER = logging.getLogger("tally.run")


@dataclass
class CycleCounts:
    """What the summary counts as the run goes."""

    cycles: int = 0
    trades: int = 0
    fresh: int = 0
    stale: int = 0
    failed: int = 0
    retries: int = 0
    passed: int = 0
    reconciled: int = 0
    discarded: int = 0
    orders_rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Collaborators:
    """The state a cycle loop carries from cycle to cycle, which a restart rebuilds from
    the ledger (``restored``) instead of starting empty."""

    breakers: BreakerRegistry
    prices: PriceCache
    orders: OrderStatus = field(default_factory=OrderStatus)
    nonces: NonceAllocator = field(default_factory=NonceAllocator)
    # Orders whose outcome is unknown: looked up at the venue before the next cycle's
    # strategy may place anything.
    unknown: list[events.OrderSubmitted] = field(default_factory=list)

    @classmethod
    def fresh(cls, ingest: IngestSettings, clock: Clock) -> Collaborators:
        """Closed breakers, no last good prices, no orders: a run's first start."""
        return cls(BreakerRegistry(ingest.breaker, clock), PriceCache())

    @classmethod
    def restored(
        cls,
        store: EventStore,
        ingest: IngestSettings,
        clock: Clock,
        *,
        run_id: str | None = None,
        from_position: int = 1,
    ) -> Collaborators:
        """Rebuild from the ledger what a predecessor left (a restart): breakers (an open one
        stays open until its time, on ``clock``), last good prices with their age, order
        outcomes, nonces above every one used, and the orders still unknown. With
        ``run_id``, only that run's events count."""
        held = cls.fresh(ingest, clock)
        submitted: dict[str, events.OrderSubmitted] = {}
        for recorded in store.read_all(from_position):
            if run_id is not None and recorded.run_id != run_id:
                continue
            event = recorded.event
            held.breakers.apply(event)
            held.prices.apply(event, recorded.recorded_at)
            held.orders.apply(event)
            if isinstance(event, events.OrderSubmitted):
                submitted[event.client_order_id] = event
        held.nonces.recover(held.orders.next_nonce())
        held.unknown = [
            order for cid, order in submitted.items() if held.orders.status[cid] == "unknown"
        ]
        return held


@dataclass
class CycleLoop:
    """Runs cycles: its venue and collaborators are handed in, never built inside."""

    store: EventStore
    run_id: str
    account: str
    quote: str
    symbols: list[str]
    markets: dict[str, MarketSpec]
    sources: Sequence[TickerSource]
    venue: Venue
    strategy: Strategy
    clock: Clock
    seed: int
    ingest: IngestSettings
    validator: ValidatorSettings
    books: PortfolioState
    collaborators: Collaborators
    commit_cycles: int = 1
    progress: Callable[[int], None] | None = None
    # Cycles an earlier start already committed: they run again (their appends replay by
    # idempotency key, so nothing is doubled and the re-derived events are checked against
    # the stored ones), and their log lines are not written twice.
    resume_from: int = 0
    # Paper and live: writes go through the link (to the spool while the ledger is out, and
    # then no orders are placed).
    link: LedgerLink | None = None
    counts: CycleCounts = field(default_factory=CycleCounts)
    marks: dict[str, Decimal] = field(default_factory=dict)  # last known mark per symbol
    # The run's alert rules, folded over each cycle's events on the run's clock; what they
    # raise or resolve is committed with the cycle (None: the run has no rules).
    alerts: AlertEngine | None = None
    notifier: Notifier | None = None  # the alerts' webhook and command, off the cycle's path
    # Sources that cannot suspend (a backtest's files without injected faults): priced
    # symbol after symbol in one task, the same events in the same order, no task each.
    sequential_fetches: bool = False
    # The catalog version the run records (its RunStarted's: a resumed or re-executed run
    # keeps the shape it started with).
    catalog: int = events.CATALOG

    def __post_init__(self) -> None:
        held = self.collaborators
        self.breakers = held.breakers
        self.taker = SnapshotTaker(
            self.sources,
            settings=self.ingest,
            clock=self.clock,
            seed=self.seed,
            breakers=held.breakers,
            cache=held.prices,
            stream=f"snapshots/{self.account}",
            price_steps={s: m.price_step for s, m in self.markets.items()},
            sequential=self.sequential_fetches,
            catalog=self.catalog,
        )
        self._log: list[tuple[str, events.Event]] = []
        self._group: GroupAppends | None = None
        self._raised: list[events.Event] = []  # this cycle's alerts, for the notifier
        self.orders = OrderExecutor(
            self.venue,
            held.orders,
            held.nonces,
            emit=lambda stream, e: self._log.append((stream, e)),
        )
        self.price_steps = {s: m.price_step for s, m in self.markets.items()}

    async def run(
        self,
        times: Sequence[datetime],
        *,
        stop: StopSignal | None = None,
        after_commit: Callable[[int], None] | None = None,
    ) -> int:
        """Run one cycle at each of ``times``, committing every ``commit_cycles`` cycles;
        return the cycles done. A requested stop ends the group after the cycle in hand,
        which then commits whole."""
        done = 0
        for start in range(0, len(times), self.commit_cycles):
            # Paper and live commit through their link, cycle by cycle; a backtest holds
            # its group's appends and writes them in one short transaction.
            self._group = GroupAppends(self.store) if self.link is None else None
            for moment in times[start : start + self.commit_cycles]:
                await self.cycle(done, moment)
                done += 1
                if stop is not None and stop.requested:
                    break
            if self._group is not None:
                last = self._group.flush()
                self.books.position = max(self.books.position, last)
                self._group = None
            if self.progress is not None:
                self.progress(done)
            if after_commit is not None:
                after_commit(done)
            if stop is not None and stop.requested:
                break
        return done

    async def cycle(self, cycle: int, moment: datetime) -> None:
        if isinstance(self.clock, SimulatedClock):
            self.clock.set(moment)
        snapshot = await self.taker.take(self.symbols, cycle)
        counts = self.counts
        counts.cycles += 1
        counts.fresh += snapshot.fresh
        counts.stale += snapshot.stale
        counts.failed += snapshot.failed
        counts.retries += sum(1 for _, e in snapshot.events if type(e) is events.RetryScheduled)
        self.marks.update(snapshot.marks)
        if isinstance(self.venue, PaperVenue):
            self.venue.set_marks(snapshot.marks)
        equity = self.books.equity(self.marks)
        fresh = frozenset(s for s, status in snapshot.status.items() if status == "fresh")
        view = CycleView(
            self.account,
            cycle,
            self.clock.now(),
            snapshot.marks,
            fresh,
            self.books,
            equity,
            self.markets,
        )
        self._log.clear()
        # Orders left unknown by a predecessor: asked about before anything new is placed.
        unknown, self.collaborators.unknown = self.collaborators.unknown, []
        for submitted in unknown:
            await self.orders.resolve(submitted)
        intents = list(self.strategy.decide(view))
        link = self.link
        if intents and link is not None and link.spooling and not link.drain():
            LOGGER.warning(
                "ORDERS_HELD run=%s cycle=%d intents=%d: the ledger is out and cycles go to "
                "the spool; no order is placed until it is drained",
                self.run_id,
                cycle,
                len(intents),
            )
            intents = []
        for intent in intents:
            await self.orders.execute(intent, run_id=self.run_id, cycle=cycle)
        staged = [(s, e) for s, e in self._log if isinstance(e, MONEY)]
        observed = [*snapshot.events, *((s, e) for s, e in self._log if not isinstance(e, MONEY))]
        counts.trades += sum(1 for _, e in staged if type(e) is events.TradeExecuted)
        counts.orders_rejected += sum(1 for _, e in observed if type(e) is events.OrderRejected)
        reference = await self._venue_books(staged, observed)
        decision = commit_cycle(
            self.store,
            account=self.account,
            cycle=cycle,
            run_id=self.run_id,
            staged=staged,
            books=self.books,
            reference=reference,
            marks=self.marks,
            settings=self.validator,
            price_steps=self.price_steps,
            observed=observed,
            log=cycle >= self.resume_from,
            link=self.link,
            alerts=self._alerts if self.alerts is not None else None,
            group=self._group,
        )
        if self._raised and self.notifier is not None and cycle >= self.resume_from:
            at = self.clock.now().isoformat().replace("+00:00", "Z")
            for alert in self._raised:
                self.notifier.send(alert_body(self.run_id, alert, at))
        self._raised = []
        if decision.outcome == "passed":
            counts.passed += 1
        elif decision.outcome == "reconciled":
            counts.reconciled += 1
        else:
            counts.discarded += 1

    def _alerts(
        self, written: Sequence[tuple[str, events.Event]]
    ) -> list[tuple[str, events.Event]]:
        engine, now = self.alerts, self.clock.now()
        assert engine is not None
        stream = f"alerts/{self.run_id}"
        raised = [(stream, a) for _, event in written for a in engine.observe(event, now)]
        self._raised = [a for _, a in raised]
        return raised

    async def _venue_books(
        self, staged: Sequence[tuple[str, events.Event]], observed: list[tuple[str, events.Event]]
    ) -> PortfolioState | None:
        """The venue's balances as books to validate against (None: it did not answer)."""
        try:
            balance = await self.venue.fetch_balance()
        except Exception as raw:  # a venue that does not answer must not stop the cycle
            error = provider_error(raw, source=self.venue.name, endpoint="balance")
            observed.append(
                (
                    f"venue/{self.account}",
                    events.FetchFailed(
                        source=self.venue.name,
                        endpoint="balance",
                        symbol="",
                        attempt=1,
                        error_class=error.error_class,
                        retryable=error.retryable,
                        message=error.message[:MESSAGE_LENGTH_MAX],
                        latency_ms=0,
                    ),
                )
            )
            return None  # validated against the books alone: the critical checks still run
        if staged:  # balances change only with fills: record them when they do
            observed.append(
                (
                    f"venue/{self.account}",
                    events.BalanceObserved(
                        account=self.account, venue=self.venue.name, balances=dict(balance.total)
                    ),
                )
            )
        return state_from_balances(
            self.account, balance.total, quote=self.quote, symbols=self.symbols
        )
