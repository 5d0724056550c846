"""Reproduction and comparison of runs.

``check`` re-executes a recorded run from its ``RunStarted`` (configuration, seed, data
manifest) into a scratch ledger and compares the two event by event, in canonical form
(without ledger positions, stream versions or chain hashes, which depend on what else a
ledger holds). ``diverge`` finds where two different runs part ways.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from ledger import events
from ledger.errors import InputError
from ledger.recorded import RecordedEvent
from ledger.store import EventStore, init_store, open_store
from projections.reports import load_series
from projections.runs import finished_run
from tally.run import context
from tally.run.backtest import RunSummary, run_backtest
from tally.settings import Settings

# Fields that name the run itself: two different runs always differ there.
IDENTITY_FIELDS = ("run_id", "account", "client_order_id", "stream", "idempotency_key")
FIELDS_SHOWN_MAX = 12
RECORD_FIELDS = (
    "stream",
    "type",
    "recorded_at",
    "run_id",
    "causation_id",
    "correlation_id",
    "idempotency_key",
)


@dataclass(frozen=True)
class Divergence:
    index: int  # the n-th event of the run (0-based)
    position_a: int | None
    position_b: int | None
    type_a: str | None
    type_b: str | None
    fields: dict[str, tuple[Any, Any]]  # field -> (a, b)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "position_a": self.position_a,
            "position_b": self.position_b,
            "type_a": self.type_a,
            "type_b": self.type_b,
            "fields": {k: [show(a), show(b)] for k, (a, b) in self.fields.items()},
        }

    def render(self, a: str = "recorded", b: str = "re-executed") -> str:
        lines = [
            f"first difference at event #{self.index + 1} of the run "
            f"({a}: position {self.position_a} {self.type_a}; "
            f"{b}: position {self.position_b} {self.type_b})"
        ]
        shown = list(self.fields.items())[:FIELDS_SHOWN_MAX]
        width = max((len(k) for k, _ in shown), default=5)
        for name, (left, right) in shown:
            lines.append(f"  {name:<{width}}  {a}: {show(left)}  {b}: {show(right)}")
        if len(self.fields) > FIELDS_SHOWN_MAX:
            lines.append(f"  ... and {len(self.fields) - FIELDS_SHOWN_MAX} more fields")
        return "\n".join(lines)


def show(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else msgspec.json.encode(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


_ABSENT: Any = object()


def flatten(form: bytes) -> dict[str, Any]:
    """A canonical form as {field path: value}, e.g. ``event.qty``."""
    values = msgspec.json.decode(form)
    flat: dict[str, Any] = dict(zip(RECORD_FIELDS, values[:7], strict=True))

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key in sorted(value):
                walk(f"{prefix}.{key}", value[key])
        else:
            flat[prefix] = value

    walk("event", values[7])
    return flat


def field_diff(
    a: bytes | None, b: bytes | None, ignore: tuple[str, ...] = ()
) -> dict[str, tuple[Any, Any]]:
    left = flatten(a) if a is not None else {}
    right = flatten(b) if b is not None else {}
    out = {}
    for key in sorted(set(left) | set(right), key=lambda k: (k.count("."), k)):
        if key.rsplit(".", 1)[-1] in ignore:
            continue
        lv, rv = left.get(key, _ABSENT), right.get(key, _ABSENT)
        if lv != rv:
            out[key] = (lv, rv)
    return out


def first_divergence(
    a: list[tuple[int, bytes]],
    b: list[tuple[int, bytes]],
    ignore: tuple[str, ...] = (),
    normalize: tuple[dict[str, str], dict[str, str]] | None = None,
) -> Divergence | None:
    """The first index where the runs differ (beyond ``ignore``d fields), or None."""
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        lf = left[1] if left else None
        rf = right[1] if right else None
        if normalize is not None:
            lf = _renamed(lf, normalize[0])
            rf = _renamed(rf, normalize[1])
        if lf == rf:
            continue
        fields = field_diff(lf, rf, ignore)
        if not fields:
            continue
        return Divergence(
            index,
            left[0] if left else None,
            right[0] if right else None,
            _type_of(lf),
            _type_of(rf),
            fields,
        )
    return None


def _renamed(form: bytes | None, names: dict[str, str]) -> bytes | None:
    if form is None:
        return None
    for old, new in names.items():
        form = form.replace(old.encode(), new.encode())
    return form


def _type_of(form: bytes | None) -> str | None:
    return None if form is None else str(msgspec.json.decode(form)[1])


def run_forms(store: EventStore, run_id: str, first_position: int) -> list[tuple[int, bytes]]:
    return list(context.run_records(store.raw_records(first_position), run_id))


def started_of(store: EventStore, run_id: str) -> RecordedEvent:
    """The ``RunStarted`` record of a finished run (an ``InputError`` otherwise)."""
    return finished_run(store, run_id).started


@dataclass(frozen=True)
class CheckResult:
    run_id: str
    events: int
    fingerprint: str
    replayed_fingerprint: str
    divergence: Divergence | None
    notes: list[str]

    @property
    def reproduced(self) -> bool:
        return self.divergence is None and self.fingerprint == self.replayed_fingerprint


def check(
    store: EventStore,
    run_id: str,
    *,
    scratch_url: str | None = None,
    data_dir: Path | None = None,
    progress: Any = None,
) -> CheckResult:
    """Re-execute ``run_id`` into a scratch ledger and compare it event by event."""
    store.verify()  # never compare against a ledger that was tampered with
    recorded = started_of(store, run_id)
    started = recorded.event
    assert isinstance(started, events.RunStarted)
    if started.mode != "backtest":
        raise InputError(
            f"run {run_id} is a {started.mode} run: only backtests re-execute",
            hint="a paper or live run met the real world; audit it with `tally replay` instead",
        )
    settings = Settings.model_validate(started.config)
    original = run_forms(store, run_id, recorded.position)
    notes = []
    now = context.code_version()
    if started.code_version and started.code_version != now:
        notes.append(f"code version differs: recorded {started.code_version}, now {now}")
    with tempfile.TemporaryDirectory(prefix="tally-repro-") as folder:
        url = scratch_url or f"sqlite:///{Path(folder) / 'scratch.db'}"
        init_store(url)
        with open_store(url, durable=False) as scratch:
            if scratch.head() != 0:
                raise InputError(
                    "the scratch ledger is not empty", hint="pass an empty database to --scratch-db"
                )
            summary = run_backtest(
                scratch,
                settings.run,
                settings.ingest,
                config=started.config,
                data_dir=data_dir,
                replay_of=started,
                progress=progress,
            )
            replayed = run_forms(scratch, run_id, 1)
    divergence = first_divergence(original, replayed)
    ours = context.fingerprint(form for _, form in original[:-1])[0]  # before RunFinished
    assert isinstance(summary, RunSummary)  # no stop signal is handed in: it ran to the end
    return CheckResult(run_id, len(original), ours, summary.fingerprint, divergence, notes)


@dataclass(frozen=True)
class RunDiff:
    run_a: str
    run_b: str
    events_a: int
    events_b: int
    inputs: dict[str, tuple[Any, Any]]  # how their RunStarted differ
    divergence: Divergence | None
    equity: list[tuple[datetime, Decimal | None, Decimal | None, Decimal | None]]


def diverge(store: EventStore, run_a: str, run_b: str) -> RunDiff:
    first_a, first_b = started_of(store, run_a), started_of(store, run_b)
    a, b = run_forms(store, run_a, first_a.position), run_forms(store, run_b, first_b.position)
    acc_a = first_a.event.account  # type: ignore[union-attr]
    acc_b = first_b.event.account  # type: ignore[union-attr]
    names = ({run_a: "<run>", acc_a: "<account>"}, {run_b: "<run>", acc_b: "<account>"})
    # The inputs (RunStarted) apart, then the first event where the runs behave differently.
    inputs = field_diff(
        _renamed(a[0][1], names[0]),
        _renamed(b[0][1], names[1]),
        ("config_hash", "run_id", "account"),
    )
    divergence = first_divergence(
        a[1:], b[1:], ignore=(*IDENTITY_FIELDS, "config_hash", "fingerprint"), normalize=names
    )
    if divergence is not None:  # count from the run's first event, RunStarted included
        divergence = dataclasses.replace(divergence, index=divergence.index + 1)
    series_a = load_series(store, acc_a, run_id=run_a).rows
    series_b = load_series(store, acc_b, run_id=run_b).rows
    return RunDiff(
        run_a,
        run_b,
        len(a),
        len(b),
        inputs,
        divergence,
        equity_side_by_side({r[0]: r[1] for r in series_a}, {r[0]: r[1] for r in series_b}),
    )


def equity_side_by_side(
    a: dict[datetime, Decimal], b: dict[datetime, Decimal]
) -> list[tuple[datetime, Decimal | None, Decimal | None, Decimal | None]]:
    """(time, equity A, equity B, A - B) over the union of both runs' time steps; a run
    without a row at a time carries its last equity forward (None before its first)."""
    rows = []
    last_a = last_b = None
    for moment in sorted(set(a) | set(b)):
        last_a = a.get(moment, last_a)
        last_b = b.get(moment, last_b)
        delta = last_a - last_b if last_a is not None and last_b is not None else None
        rows.append((moment, last_a, last_b, delta))
    return rows
