"""Structured log lines with the markers operators grep for, rendered from ledger events.

Lines are written from events that were committed (with their positions), so the log and
the ledger cannot disagree: there is no log line without its event, and no event whose
line says something else.

    DATA_RETRY  DATA_FAILURE  STALE_PRICING_USED  DATA_SKIP  DATA_RECOVERY
    SNAPSHOT_<id>_PARTIAL  CIRCUIT_OPEN  CIRCUIT_CLOSED  RUN_STOPPED  RUN_RESUMED
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ledger import events
from ledger.recorded import RecordedEvent

LOGGER = logging.getLogger("tally.ingest")
# The event types that can have a line (``log_line`` says which of their events do).
LOGGED = frozenset(
    {
        events.RetryScheduled,
        events.FetchFailed,
        events.StalePriceUsed,
        events.SymbolSkipped,
        events.DataRecovered,
        events.SnapshotSealed,
        events.CircuitOpened,
        events.CircuitClosed,
        events.RunStopped,
        events.RunResumed,
        events.AlertRaised,
        events.AlertResolved,
    }
)


def log_line(e: events.Event, position: int | None) -> tuple[int, str] | None:
    """Return (level, line) for an event operators care about, or None (``position`` None:
    the event is in a run's spool while the ledger is out, not yet in the ledger)."""
    at = "position=spooled" if position is None else f"position={position}"
    match e:
        case events.RetryScheduled():
            return logging.WARNING, (
                f"DATA_RETRY symbol={e.symbol} source={e.source} endpoint={e.endpoint} "
                f"attempt={e.attempt} delay_ms={e.delay_ms} {at}"
            )
        case events.FetchFailed():
            return logging.WARNING, (
                f"DATA_FAILURE symbol={e.symbol} source={e.source} endpoint={e.endpoint} "
                f"attempt={e.attempt} error={e.error_class} retryable={e.retryable} {at}"
            )
        case events.StalePriceUsed():
            return logging.WARNING, (
                f"STALE_PRICING_USED symbol={e.symbol} price={e.price} "
                f'as_of={e.as_of.isoformat()} age_s={e.age_s} reason="{e.reason}" {at}'
            )
        case events.SymbolSkipped():
            return logging.ERROR, f'DATA_SKIP symbol={e.symbol} reason="{e.reason}" {at}'
        case events.DataRecovered():
            return logging.INFO, (
                f"DATA_RECOVERY symbol={e.symbol} source={e.source} stale_s={e.stale_s} {at}"
            )
        case events.SnapshotSealed() if e.stale or e.failed:
            return logging.WARNING, (
                f"SNAPSHOT_{e.snapshot_id}_PARTIAL fresh={e.fresh} stale={e.stale} "
                f"failed={e.failed} {at}"
            )
        case events.CircuitOpened():
            return logging.ERROR, (
                f'CIRCUIT_OPEN breaker={e.breaker} reason="{e.reason}" '
                f"open_until={e.open_until.isoformat()} {at}"
            )
        case events.CircuitClosed():
            return logging.INFO, (
                f"CIRCUIT_CLOSED breaker={e.breaker} trial_successes={e.trial_successes} {at}"
            )
        case events.RunStopped():
            return logging.WARNING, (
                f"RUN_STOPPED run={e.run_id} reason={e.reason} cycles_done={e.cycles_done} "
                f'cycles_planned={e.cycles_planned} detail="{e.detail}" {at}'
            )
        case events.AlertRaised():
            level = logging.ERROR if e.severity == "critical" else logging.WARNING
            return level, (
                f'ALERT_RAISED rule={e.rule} on="{e.key}" severity={e.severity} '
                f'message="{e.message}" {at}'
            )
        case events.AlertResolved():
            return logging.INFO, f'ALERT_RESOLVED rule={e.rule} on="{e.key}" {at}'
        case events.RunResumed():
            return logging.INFO, (
                f"RUN_RESUMED run={e.run_id} cycles_done={e.cycles_done} "
                f'previously="{e.previously}" {at}'
            )
    return None


def log_events(committed: Iterable[RecordedEvent], logger: logging.Logger = LOGGER) -> int:
    """Log the marker lines of committed events; return how many lines were written."""
    return log_committed(((r.event, r.position) for r in committed), logger)


def log_committed(
    committed: Iterable[tuple[events.Event, int | None]], logger: logging.Logger = LOGGER
) -> int:
    """Log the marker lines of committed (event, position) pairs; return the lines written."""
    if not logger.isEnabledFor(logging.ERROR):  # the loudest marker is ERROR: none would show
        return 0
    written = 0
    for event, position in committed:
        if type(event) not in LOGGED:  # most of a cycle's events: skipped without a match
            continue
        line = log_line(event, position)
        if line is not None:
            logger.log(line[0], line[1])
            written += 1
    return written
