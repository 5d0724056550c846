"""`tally run` as an operator meets it: Ctrl-C, SIGTERM, a second signal, kill -9, a second
process. Real processes, real signals, real ledgers on both backends (slow: kept out of the
README's fast command, run by CI after it)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import open_store
from tests.e2e.test_cli import BIN, tally

pytestmark = pytest.mark.slow

CONFIG = """\
run:
  sample: {days: DAYS}
  commit_cycles: 20
runner:
  heartbeat_s: 0.1
  heartbeat_expiry_s: 5
"""


# Long enough that twenty kills 0.3-2.5 s after start land mostly mid-run even on a fast
# machine (each start replays the committed cycles before it gets further). A start gets
# about 2,800 cycles a second past its start-up; at 15 days (4,320 cycles) the run was
# done after 8 of the twenty, and the rest had nothing left to kill.
KILLED_DAYS = 60


def config(folder: Path, days: int) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "tally.yaml"
    path.write_text(CONFIG.replace("DAYS", str(days)))
    return path


def start(folder: Path, url: str, cfg: Path) -> subprocess.Popen[str]:
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tally.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TALLY_DB"}
    return subprocess.Popen(
        [*command, "run", "--db", url, "--config", str(cfg), "--log-level", "error"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_cycles(folder: Path, url: str, cycles: int) -> dict[str, object]:
    """Poll `tally runs --json` until the run is running with at least ``cycles`` done."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = tally("runs", "--json", "--db", url, cwd=folder)
        rows = json.loads(listed.stdout) if listed.returncode == 0 else []
        if rows and rows[0]["state"] == "running" and (rows[0]["cycles_done"] or 0) >= cycles:
            return dict(rows[0])
        time.sleep(0.05)
    raise AssertionError("the run never got going")


def one_go(folder: Path, days: int) -> str:
    cfg = config(folder, days)
    done = tally(
        "run", "--json", "--db", f"sqlite:///{folder}/one-go.db", "--config", str(cfg), cwd=folder
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["fingerprint"])


def whole_cycles(url: str) -> tuple[int, int]:
    """(sealed snapshots, cycle outcomes) of the ledger's run: equal when no cycle is partial."""
    with open_store(url) as store:
        sealed = sum(1 for _ in store.query(types=("SnapshotSealed",)))
        outcomes = sum(
            1
            for _ in store.query(
                types=("ValidationPassed", "PortfolioReconciled", "CycleDiscarded")
            )
        )
    return sealed, outcomes


# Long enough that each start is still running when `tally runs` (most of a second a look
# on a loaded machine) has seen it going and the signal lands: 6 days could finish first.
SIGNALLED_DAYS = 16


def test_ctrl_c_sigterm_and_a_second_signal_stop_whole_and_resume(tmp_path: Path) -> None:
    expected = one_go(tmp_path, SIGNALLED_DAYS)
    cfg = config(tmp_path, SIGNALLED_DAYS)
    url = f"sqlite:///{tmp_path}/ledger.db"
    for signals, code in (([signal.SIGINT], 130), ([signal.SIGTERM], 143)):
        process = start(tmp_path, url, cfg)
        wait_for_cycles(tmp_path, url, 100)
        for number in signals:
            process.send_signal(number)
        out, err = process.communicate(timeout=60)
        assert process.returncode == code, err
        assert "Traceback" not in err
        assert f"stopped by {signal.Signals(signals[0]).name} after" in out
        assert "run the same command again to resume" in out
        row = json.loads(tally("runs", "--json", "--db", url, cwd=tmp_path).stdout)[0]
        assert row["state"] == "stopped" and row["stop_reason"] == signal.Signals(signals[0]).name
        sealed, outcomes = whole_cycles(url)
        assert sealed == outcomes == row["cycles_done"]
    # The same command again resumes it to the one-go fingerprint, and it reproduces.
    done = tally("run", "--json", "--db", url, "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fingerprint"] == expected
    assert (
        tally(
            "repro", "check", json.loads(done.stdout)["run_id"], "--db", url, cwd=tmp_path
        ).returncode
        == 0
    )
    # A second process while one runs (a fresh run far longer than this test waits: it must
    # still be running when the signals come, however slow the machine) is refused with the
    # first's pid.
    other, long_cfg = f"sqlite:///{tmp_path}/other.db", config(tmp_path / "long", 365)
    process = start(tmp_path, other, long_cfg)
    wait_for_cycles(tmp_path, other, 1)
    second = tally("run", "--db", other, "--config", str(long_cfg), cwd=tmp_path)
    assert second.returncode == 2 and f"pid {process.pid}" in second.stderr
    # Two signals at once: the second stops at once, the group in flight dropped whole.
    assert process.poll() is None, "the long run ended before it could be stopped"
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    assert tally("verify", "--db", other, cwd=tmp_path).returncode == 0
    sealed, outcomes = whole_cycles(other)
    assert sealed == outcomes


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_twenty_seeded_kills_resume_to_the_one_go_fingerprint(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    expected = one_go(tmp_path, KILLED_DAYS)
    cfg = config(tmp_path, KILLED_DAYS)
    url = (
        f"sqlite:///{tmp_path}/ledger.db"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_empty_url"))
    )
    rng = random.Random(20261123)
    kills = 0
    for _ in range(20):
        process = start(tmp_path, url, cfg)
        time.sleep(rng.uniform(0.3, 2.5))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.communicate(timeout=60)
        verified = tally("verify", "--db", url, cwd=tmp_path)
        # Killed before `tally run` created the ledger is the one case with nothing to verify.
        assert verified.returncode == 0 or "tally init" in verified.stderr, verified.stderr
        if verified.returncode == 0:
            sealed, outcomes = whole_cycles(url)
            assert sealed == outcomes  # no cycle is partial
    print(f"{kills} of 20 kills landed mid-run")
    assert kills >= 10  # most of the twenty landed mid-run
    done = tally("run", "--json", "--db", url, "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fingerprint"] == expected
    assert tally("verify", "--db", url, cwd=tmp_path).returncode == 0
