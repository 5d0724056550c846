"""`tally sweep`: every point a normal, reproducible run; the sweep recorded; a leaderboard;
the same sweep again records nothing; interrupted, it resumes and skips finished points;
and the same command on a local Dask cluster with the ledger on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.test_cli import BIN, tally

SMALL = "run:\n  sample: {days: 1}\n"


def events_of(folder: Path, *types: str, db: str | None = None) -> list[dict[str, object]]:
    flags = [a for t in types for a in ("--type", t)] + (["--db", db] if db else [])
    found = tally("events", *flags, "--json", cwd=folder).stdout.splitlines()
    return [json.loads(line) for line in found]


def finished_runs(ledger: Path) -> int:
    """How many RunFinished rows ``ledger`` holds (0 before it exists or has its schema)."""
    if not ledger.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as conn:
            query = "SELECT count(*) FROM events WHERE type = 'RunFinished'"
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # no events table yet
        return 0


def test_a_sweep_is_runs_a_record_and_a_leaderboard(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SMALL)
    args = ["--config", "small.yaml", "sweep", "--param", "window=24,48", "--metric", "sharpe"]
    first = tally(*args, "--param", "margin=0.005", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    board = json.loads(first.stdout)["leaderboard"]
    assert [row["params"] for row in sorted(board, key=lambda r: r["params"]["window"])] == [
        {"window": 24, "margin": "0.005"},
        {"window": 48, "margin": "0.005"},
    ]
    assert [row["rank"] for row in board] == [1, 2] and not any(r["already"] for r in board)
    started = events_of(tmp_path, "RunStarted")
    params = sorted(e["event"]["config"]["run"]["strategy"]["params"]["window"] for e in started)
    assert params == [24, 48]  # each point is an ordinary run with its own params
    [sweep_started] = events_of(tmp_path, "SweepStarted")
    [finished] = events_of(tmp_path, "SweepFinished")
    assert sweep_started["event"]["grid"] == {"window": [24, 48], "margin": ["0.005"]}
    assert set(finished["event"]["run_ids"]) == {row["run_id"] for row in board}
    # Each point reproduces, as any run does.
    checked = tally("repro", "check", board[0]["run_id"], "--json", cwd=tmp_path)
    assert json.loads(checked.stdout)["reproduced"] is True
    again = tally(*args, "--param", "margin=0.005", cwd=tmp_path)
    assert "0 run now, 2 already in the ledger" in again.stdout
    assert len(events_of(tmp_path, "SweepStarted", "SweepFinished", "RunStarted")) == 4


def test_a_bad_sweep_is_refused_before_anything_runs(tmp_path: Path) -> None:
    bare = tally("sweep", cwd=tmp_path)
    assert bare.returncode == 2 and "--param" in bare.stderr
    bad = tally("sweep", "--param", "window", cwd=tmp_path)
    assert bad.returncode == 2 and "NAME=V1,V2" in bad.stderr
    dask = tally("sweep", "--param", "window=24", "--engine", "dask", cwd=tmp_path)
    assert dask.returncode == 2 and "PostgreSQL" in dask.stderr
    refused = tally("sweep", "--param", "speed=3", cwd=tmp_path)  # Momentum has no `speed`
    assert refused.returncode == 2 and "speed" in refused.stderr
    assert not events_of(tmp_path, "RunFinished")


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_skipping_finished_points(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SMALL)
    args = ["--config", "small.yaml", "sweep", "--param", "window=12,24,36,48,60,72"]
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tally.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TALLY_DB"}
    process = subprocess.Popen([*command, *args], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 60
    # Watched through sqlite3 itself (a millisecond a look, where `tally events` takes most
    # of a second, in which a point of one day can finish): killed within a point of two.
    while time.monotonic() < deadline and finished_runs(tmp_path / "tally.db") < 2:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {e["run_id"] for e in events_of(tmp_path, "RunFinished")}
    assert 2 <= len(done_before) < 6 and not events_of(tmp_path, "SweepFinished")
    resumed = tally(*args, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    board = json.loads(resumed.stdout)["leaderboard"]
    assert {r["run_id"] for r in board if r["already"]} == done_before
    # Nothing was recorded twice: one start and one finish per point.
    assert len(events_of(tmp_path, "RunStarted")) == 6 == len(events_of(tmp_path, "RunFinished"))
    assert (
        len(events_of(tmp_path, "SweepStarted")) == 1 == len(events_of(tmp_path, "SweepFinished"))
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_the_same_sweep_runs_on_a_local_dask_cluster_into_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    pytest.importorskip("distributed", reason="the dask extra: pip install -e '.[dask]'")
    (tmp_path / "small.yaml").write_text(SMALL)
    args = ["--config", "small.yaml", "sweep", "--param", "window=24,48,96", "--db", pg_url]
    on_dask = tally(*args, "--engine", "dask", "--workers", "2", "--json", cwd=tmp_path)
    assert on_dask.returncode == 0, on_dask.stderr
    board = json.loads(on_dask.stdout)["leaderboard"]
    assert len(board) == 3 and not any(r["already"] for r in board)
    # The same points run locally find every run already there: the same runs, by id.
    local = json.loads(tally(*args, "--json", cwd=tmp_path).stdout)["leaderboard"]
    assert {r["run_id"] for r in local} == {r["run_id"] for r in board}
    assert all(r["already"] for r in local)
