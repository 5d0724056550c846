"""The shell that wires ingest to the ledger: commit a cycle's events atomically and log
them from what was committed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec

from ingest.logs import LOGGER, log_committed, log_events
from ingest.snapshot import Snapshot
from ledger import events
from ledger.recorded import RecordedEvent
from ledger.store import Append, EventStore, StreamAppend, group_appends
from projections import portfolio
from projections.portfolio import PortfolioState
from projections.validator import Decision, ValidatorSettings, validate
from tally.run.spool import LedgerLink


def record_snapshot(
    store: EventStore,
    snapshot: Snapshot,
    *,
    run_id: str | None = None,
    logger: logging.Logger = LOGGER,
) -> list[RecordedEvent]:
    """Append every event of a cycle in one transaction, then log the committed events."""
    key = f"snapshot/{run_id or '-'}/{snapshot.snapshot_id}"
    head_before = store.head()
    positions = [
        p
        for batch in store.append_many(snapshot.batches(), run_id=run_id, idempotency_key=key)
        for p in batch
    ]
    if not positions:
        return []
    committed = list(store.read_all(positions[0], positions[-1]))
    if positions[0] > head_before:  # a replayed commit was logged the first time
        log_events(committed, logger)
    return committed


class GroupAppends:
    """A group of cycles' appends, held in memory and written in one short transaction at
    the group's end (``flush``).

    A backtest commits ``commit_cycles`` cycles at a time. Holding the write transaction
    open while those cycles compute kept the ledger's write lock for the whole run, so two
    runs into one SQLite file (a sweep's workers) took turns run by run. Held here, the lock
    is taken for the writing only, and the group's rows go in with one insert
    (``EventStore.append_all``). Each append keeps the time it was made at (the store's
    clock when it was held) and its idempotency key, so the events, their hashes and a
    resume's replay are exactly as before; a group that never reaches ``flush`` (a second
    Ctrl-C, a crash) writes nothing, as a rolled-back transaction did.
    """

    def __init__(self, store: EventStore, logger: logging.Logger = LOGGER) -> None:
        self.store = store
        self.logger = logger
        self.pending: list[Append] = []
        self.logged: list[bool] = []

    def append_many(
        self, appends: list[StreamAppend], *, run_id: str, idempotency_key: str, log: bool
    ) -> None:
        self.pending.append(
            Append(
                appends,
                idempotency_key=idempotency_key,
                run_id=run_id,
                recorded_at=self.store.clock.now(),
            )
        )
        self.logged.append(log)

    def flush(self) -> int:
        """Write every held append in one transaction; log them; return the last position
        (0 when nothing was held)."""
        if not self.pending:
            return 0
        placed = self.store.append_all(self.pending)
        last = 0
        for append, log, committed in zip(self.pending, self.logged, placed, strict=True):
            positions = [p for batch in committed for p in batch]
            last = max(last, *positions) if positions else last
            if log:
                written = (e for batch in append.batches for e in batch.events)
                log_committed(zip(written, positions, strict=True), self.logger)
        self.pending, self.logged = [], []
        return last


def commit_cycle(
    store: EventStore,
    *,
    account: str,
    cycle: int,
    run_id: str,
    staged: Sequence[tuple[str, events.Event]],
    books: PortfolioState,
    reference: PortfolioState | None,
    marks: dict[str, Decimal],
    settings: ValidatorSettings,
    price_steps: dict[str, Decimal] | None = None,
    observed: Sequence[tuple[str, events.Event]] = (),
    log: bool = True,
    logger: logging.Logger = LOGGER,
    link: LedgerLink | None = None,
    alerts: Callable[[Sequence[tuple[str, events.Event]]], list[tuple[str, events.Event]]]
    | None = None,
    group: GroupAppends | None = None,
) -> Decision:
    """Validate a cycle's staged events and commit them atomically with the outcome.

    ``books`` is the portfolio before the cycle; it is advanced by what was committed.
    ``observed`` are facts of the cycle that hold whatever is decided (fetches, the sealed
    snapshot, orders sent, balances seen): they are committed first in every outcome.
    ``reference`` is what the venue says (None when it could not be asked: only the critical
    checks apply). Passed: the staged events and ``ValidationPassed``. Reconciled: the same and
    ``PortfolioReconciled`` with the adjustments. Discarded: only ``CycleDiscarded``, with
    the reason, the diff and what was staged, so nothing disappears silently.
    With ``log``, the operator lines of what was committed go to ``logger`` (a cycle that
    a resumed run replays was logged the first time). With ``link`` (a paper or live run),
    the append goes through it: to the spool while the ledger is out. ``alerts`` is given
    the cycle's events and returns the alert events they make due, committed with them.
    """
    candidate = books.copy()
    for _, event in staged:
        portfolio.apply(candidate, event)
    decision = validate(
        candidate,
        candidate if reference is None else reference,
        marks,
        settings=settings,
        price_steps=price_steps,
    )
    diff = decision.diff.as_dict()
    stream = f"portfolio/{account}"
    if decision.outcome == "discarded":
        diff["staged"] = [msgspec.to_builtins(e) for _, e in staged]
        outcome: list[tuple[str, events.Event]] = [
            (
                stream,
                events.CycleDiscarded(
                    account=account, cycle=cycle, reason=decision.reason, diff=diff
                ),
            )
        ]
    elif decision.outcome == "reconciled":
        outcome = [
            *staged,
            (
                stream,
                events.PortfolioReconciled(
                    account=account, cycle=cycle, diff=diff, adjustments=decision.adjustments
                ),
            ),
        ]
    else:
        outcome = [
            *staged,
            (stream, events.ValidationPassed(account=account, cycle=cycle, diff=diff)),
        ]
    raised = alerts([*observed, *outcome]) if alerts is not None else []
    appends = group_appends(written := [*observed, *outcome, *raised])
    key = f"cycle/{run_id}/{account}/{cycle}"
    committed: list[list[int]] | None
    if group is not None:  # written with its group: the group logs it, with its positions
        group.append_many(appends, run_id=run_id, idempotency_key=key, log=log)
        committed, log = None, False
    elif link is None:
        committed = store.append_many(appends, run_id=run_id, idempotency_key=key)
    else:
        committed = link.append_many(appends, run_id=run_id, idempotency_key=key, cycle=cycle)
    everything: list[int | None]
    if committed is None:  # in the spool, durably: no positions until it is drained
        everything = [None] * len(written)
    else:
        everything = [p for batch in committed for p in batch]
    if log:  # from what was committed, with its positions (appends keep the order)
        log_committed(zip((e for _, e in written), everything, strict=True), logger)
    positions = [
        books.position if p is None else p
        for p in everything[len(observed) : len(observed) + len(outcome)]
    ]
    for (_, event), position in zip(outcome, positions, strict=True):
        portfolio.apply(books, event, position)  # a discard moves only the position
    return decision
