"""Views of the ledger as plain JSON values, shared by the command line and the service.

One function per view, so `tally runs --json` and `GET /v1/runs` can never disagree.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from ledger.recorded import RecordedEvent
    from ledger.store import EventStore
    from projections.monitor import MonitorState
    from projections.reconciliation import ReconciliationReport


def event_view(recorded: RecordedEvent, data_key: str = "data") -> dict[str, Any]:
    """An event with its envelope and chain hash, as plain JSON values; its fields under
    ``data_key`` ("data" in the API, "event" in `tally events --json`)."""
    import msgspec

    fields = msgspec.to_builtins(recorded.event)
    fields.pop("type", None)
    return {
        "position": recorded.position,
        "stream": recorded.stream,
        "version": recorded.version,
        "type": recorded.type,
        "recorded_at": recorded.recorded_at.isoformat().replace("+00:00", "Z"),
        "run_id": recorded.run_id,
        "causation_id": recorded.causation_id,
        "correlation_id": recorded.correlation_id,
        "idempotency_key": recorded.idempotency_key,
        data_key: fields,
        "hash": recorded.hash.hex(),
    }


def runs_rows(store: EventStore) -> list[dict[str, Any]]:
    """Every run in the ledger, in the order it started, with its state and progress."""
    from projections.runs import list_runs, run_state
    from tally.run.lifecycle import process_gone, progress_of

    # A lease whose process is known to be gone has lapsed, whatever its expiry says.
    leases = {
        run_id: replace(lease, expires_us=0) if process_gone(lease) else lease
        for run_id, lease in store.leases.all().items()
    }
    now_us = time.time_ns() // 1000  # leases carry the runners' wall-clock expiry
    rows = []
    for record in list_runs(store).records():
        begin, end = record.start, record.finish
        lease = leases.get(begin.run_id)
        state = run_state(record, lease, now_us)
        if state.state == "interrupted":  # its last heartbeat may lag: count the ledger's
            done = progress_of(
                store, begin.run_id, begin.account, record.started.position
            ).cycles_done
            state = replace(state, cycles_done=done)
        rows.append(
            {
                "run_id": begin.run_id,
                "mode": begin.mode,
                "seed": begin.seed,
                "account": begin.account,
                "state": state.state,
                "cycles_done": state.cycles_done,
                "cycles_planned": state.cycles_planned,
                "stop_reason": state.reason or None,
                "stop_detail": state.detail or None,
                "pid": lease.pid if lease is not None and state.state == "running" else None,
                "host": lease.host if lease is not None and state.state == "running" else None,
                "started_position": record.started.position,
                "finished_position": record.finished.position if record.finished else None,
                "cycles": end.cycles if end is not None else None,
                "fingerprint": end.fingerprint if end is not None else None,
            }
        )
    return rows


def live_cycle_ages(
    state: MonitorState, runs: list[dict[str, Any]], now: datetime
) -> dict[str, float | None]:
    """Seconds since the last cycle of each running paper or live run (None: no cycle yet),
    for health, metrics and alerts alike. Backtests are left out: their cycles carry
    simulated times, not the clock ``now`` is on."""
    ages = state.cycle_ages(now)
    live = {str(r["run_id"]) for r in runs if r["state"] == "running" and r["mode"] != "backtest"}
    return {run_id: ages.get(run_id) for run_id in sorted(live)}


def reconciliation_dict(report: ReconciliationReport) -> dict[str, Any]:
    """A reconciliation against the venue: every row, and the decision."""
    return {
        "account": report.account,
        "venue": report.venue,
        "outcome": report.decision.outcome,
        "reason": report.decision.reason,
        "rows": [
            {
                "asset": r.asset,
                "ledger": str(r.ledger),
                "venue": str(r.venue),
                "delta": str(r.delta),
                "decision": report.row_decision(r),
            }
            for r in report.rows
        ],
    }
