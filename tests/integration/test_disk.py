"""Disks that fill up and ledgers on read-only disks, for real: a small tmpfs mounted for
the test (it needs root, which CI has; elsewhere the tests say why they cannot run)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import events, init_store, open_store
from ledger.errors import StoreFull, StoreUnavailable
from tally.cli import main


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root is needed): {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "1m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def deposits(n: int, start: int) -> list[events.Event]:
    return [
        events.FundsDeposited(account="main", asset="USDT", amount=Decimal(start + i + 1))
        for i in range(n)
    ]


def test_a_full_disk_says_so_and_keeps_every_committed_event(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    init_store(url)
    committed = 0
    with open_store(url) as store:
        with pytest.raises(StoreFull) as full:
            for batch in range(10_000):
                store.append("portfolio/main", deposits(200, committed), expected_version=None)
                committed += 200
                assert batch < 9_999, "the 1 MiB disk never filled"
        assert "is full" in full.value.message and "free some space" in (full.value.hint or "")
        assert full.value.transient  # a run's spool retries it once space is freed
    with open_store(url) as store:
        assert store.head() == committed  # the batch that did not fit is not there at all
        assert store.verify().events == committed


def test_a_report_to_a_full_disk_is_refused_and_leaves_no_temp_file(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = tmp_path / "tally.yaml"
    config.write_text("run:\n  sample: {days: 1}\n")
    assert main(["run", "--db", url, "--config", str(config), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as out:  # the disk is full to the last byte
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    target = small_disk / "report.html"
    argv = ["report", "equity", "--run", run_id, "--db", url, "--format", "html"]
    code = main([*argv, "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "the disk is full" in err and "Traceback" not in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no temp file left


def test_a_ledger_on_a_read_only_disk_verifies_and_refuses_writes(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{small_disk / 'ledger.db'}"
    init_store(url)
    with open_store(url) as store:
        store.append("portfolio/main", deposits(50, 0), expected_version=0)
        head = store.head_hash().hex()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    capsys.readouterr()
    assert main(["verify", "--db", url, "--expect-head", head]) == 0
    assert "50 events" in capsys.readouterr().out
    assert main(["deposit", "USDT", "5", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "read-only" in err and "Traceback" not in err, err
    with open_store(url) as store, pytest.raises(StoreUnavailable):
        store.append("portfolio/main", deposits(1, 50), expected_version=None)
