"""The command line as a user runs it: a real process, real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import events, open_store

BIN = Path(sys.executable).parent / "tally"


def tally(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tally.cli"]
    environment = {k: v for k, v in os.environ.items() if k != "TALLY_DB"}
    environment.update(env or {})
    result = subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def fill(url: str) -> None:
    with open_store(url) as store:
        store.append(
            "portfolio/main",
            [
                events.FundsDeposited(account="main", asset="USDT", amount=Decimal("10000")),
                events.TradeExecuted(
                    account="main",
                    symbol="BTC/USDT",
                    side="buy",
                    qty=Decimal("0.1"),
                    price=Decimal("43210.5"),
                    order_id="o1",
                    trade_id="t1",
                ),
            ],
            expected_version=0,
            run_id="run-1",
        )
        store.append(
            "symbol/BTC-USDT",
            [
                events.SymbolSkipped(symbol="BTC/USDT", reason="no fresh or stale price"),
            ],
            expected_version=0,
        )


def test_init_verify_stats_events_on_the_default_ledger(tmp_path: Path) -> None:
    first = tally("init", cwd=tmp_path)
    assert first.returncode == 0 and "created" in first.stdout
    assert (tmp_path / "tally.db").exists()  # the default from config/default.yaml
    again = tally("init", cwd=tmp_path)
    assert again.returncode == 0 and "already up to date" in again.stdout
    fill(f"sqlite:///{tmp_path / 'tally.db'}")

    verified = tally("verify", cwd=tmp_path)
    assert verified.returncode == 0
    assert "ok: 3 events verified, head position 3" in verified.stdout

    stats = json.loads(tally("stats", "--json", cwd=tmp_path).stdout)
    assert stats["events"] == 3 and stats["head_position"] == 3
    assert stats["by_type"] == {"FundsDeposited": 1, "SymbolSkipped": 1, "TradeExecuted": 1}
    assert stats["head_hash"] in verified.stdout

    lines = tally("events", "--json", cwd=tmp_path).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["position"] for r in rows] == [1, 2, 3]
    assert rows[1]["event"]["price"] == "43210.5"  # money stays a decimal string
    assert rows[1]["run_id"] == "run-1"

    trades = tally("events", "--type", "TradeExecuted", cwd=tmp_path).stdout.splitlines()
    assert len(trades) == 1 and "qty=0.1" in trades[0]
    ranged = tally("events", "--json", "--from-position", "2", "--to-position", "2", cwd=tmp_path)
    assert [json.loads(x)["position"] for x in ranged.stdout.splitlines()] == [2]
    streamed = tally("events", "--stream", "symbol/BTC-USDT", "--json", cwd=tmp_path)
    assert [json.loads(x)["type"] for x in streamed.stdout.splitlines()] == ["SymbolSkipped"]


def test_tally_db_environment_and_db_flag(tmp_path: Path) -> None:
    env_db = tmp_path / "env.db"
    assert tally("init", cwd=tmp_path, env={"TALLY_DB": f"sqlite:///{env_db}"}).returncode == 0
    assert env_db.exists() and not (tmp_path / "tally.db").exists()
    flag_db = tmp_path / "flag.db"
    assert tally("--db", f"sqlite:///{flag_db}", "init", cwd=tmp_path).returncode == 0
    assert tally("verify", "--db", f"sqlite:///{flag_db}", cwd=tmp_path).returncode == 0


def test_one_byte_changed_on_disk_fails_verify_at_that_position(tmp_path: Path) -> None:
    db = tmp_path / "tally.db"
    assert tally("init", cwd=tmp_path).returncode == 0
    fill(f"sqlite:///{db}")  # closing the store checkpoints the WAL into the file
    data = db.read_bytes()
    at = data.index(b'"price":"43210.5"')
    db.write_bytes(data[: at + 9] + b"9" + data[at + 10 :])  # 43210.5 -> 93210.5, position 2
    result = tally("verify", cwd=tmp_path)
    assert result.returncode == 1
    assert "position 2" in result.stderr
    assert "hint:" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--db", "sqlit:///x.db", "verify"), "unsupported database URL scheme"),
        (("--db", "sqlite:///absent.db", "verify"), "tally init"),
        (("verify", "--expect-head", "xyz"), "hex"),
        (("events", "--from-position", "0"), "--from-position"),
        (("frobnicate",), "invalid choice"),
        (("--config", "missing.yaml", "stats"), "cannot read the configuration file"),
    ],
)
def test_user_mistakes_exit_2_with_a_hint(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    tally("init", cwd=tmp_path)
    result = tally(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "hint:" in result.stderr


def test_corrupt_file_exits_2_and_is_left_alone(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite")
    for command in ("verify", "init"):
        result = tally("--db", f"sqlite:///{bad}", command, cwd=tmp_path)
        assert result.returncode == 2
        assert "not a readable SQLite database" in result.stderr
    assert bad.read_bytes() == b"this is not sqlite"


@pytest.mark.postgres
def test_the_same_commands_on_postgres(pg_empty_url: str, tmp_path: Path) -> None:
    assert tally("init", "--db", pg_empty_url, cwd=tmp_path).returncode == 0
    fill(pg_empty_url)
    result = tally("verify", "--db", pg_empty_url, "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout)["events"] == 3
    assert "***" in tally("stats", "--db", pg_empty_url, cwd=tmp_path).stdout


def test_reconcile_reports_every_asset_and_exits_1_on_a_refused_difference(
    tmp_path: Path,
) -> None:
    assert tally("init", cwd=tmp_path).returncode == 0
    d = Decimal
    with open_store(f"sqlite:///{tmp_path / 'tally.db'}") as store:
        store.append(
            "portfolio/main",
            [
                events.FundsDeposited(account="main", asset="USDT", amount=d("100000")),
                events.TradeExecuted(
                    account="main",
                    symbol="BTC/USDT",
                    side="buy",
                    qty=d("0.12346"),
                    price=d("100000.00"),
                    order_id="o1",
                    trade_id="t1",
                ),
                events.FeeCharged(account="main", trade_id="t1", asset="USDT", amount=d("12.35")),
            ],
            expected_version=0,
        )
        store.append(
            "snapshots/main",
            [
                events.SnapshotSealed(
                    snapshot_id="1", fresh=1, stale=0, failed=0, marks={"BTC/USDT": d("100000.00")}
                )
            ],
            expected_version=0,
        )
        store.append(
            "venue/paper",
            [
                events.BalanceObserved(
                    account="main",
                    venue="paper",
                    balances={"USDT": d("87641.50"), "BTC": d("0.12346")},
                )
            ],
            expected_version=0,
        )
    result = tally("reconcile", "--json", cwd=tmp_path)
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["outcome"] == "reconciled"
    assert {r["asset"]: r["delta"] for r in report["rows"]} == {
        "BTC": "0.00000",
        "USDT": "0.1500000",
    }
    with open_store(f"sqlite:///{tmp_path / 'tally.db'}") as store:
        store.append(
            "venue/paper",
            [
                events.BalanceObserved(
                    account="main",
                    venue="paper",
                    balances={"USDT": d("80000"), "BTC": d("0.12346")},
                )
            ],
            expected_version=1,
        )
    refused = tally("reconcile", cwd=tmp_path)
    assert refused.returncode == 1 and "refused" in refused.stdout
    missing = tally("reconcile", "--account", "nobody", cwd=tmp_path)
    assert missing.returncode == 2 and "BalanceObserved" in missing.stderr


def test_tally_alone_helps_unknown_types_are_errors_and_json_errors_are_objects(
    tmp_path: Path,
) -> None:
    alone = tally(cwd=tmp_path)
    assert alone.returncode == 0 and "usage: tally" in alone.stdout and "serve" in alone.stdout
    assert tally("init", cwd=tmp_path).returncode == 0
    bogus = tally("events", "--type", "Bogus", cwd=tmp_path)
    assert bogus.returncode == 2 and "unknown event type 'Bogus'" in bogus.stderr
    as_json = tally("events", "--type", "Bogus", "--json", cwd=tmp_path)
    error = json.loads(as_json.stdout)
    assert as_json.returncode == 2 == error["exit_code"]
    assert error["error"] == "unknown event type 'Bogus'" and "TradeExecuted" in error["hint"]
    assert error["context"] == {"value": "Bogus"}
    missing = json.loads(tally("replay", "--run", "run-nope", "--json", cwd=tmp_path).stdout)
    assert missing["exit_code"] == 2 and "run-nope" in missing["error"]
