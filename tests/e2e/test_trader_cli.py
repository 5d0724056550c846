"""The command line as freqtrade users spell it: time ranges, pairs, their own strategy,
market-time replay, flags refused where they do not apply, --json everywhere."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import shared_data
from tests.e2e.test_cli import tally

STRATEGY = textwrap.dedent("""\
    from tally.run.strategy import Momentum


    class Patient(Momentum):
        def __init__(self, **params: object) -> None:
            super().__init__(**{**params, "window": 96})
    """)


def test_timerange_pairs_and_a_strategy_from_a_folder_make_a_reproducible_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "patient.py").write_text(STRATEGY)
    args = ["--timerange", "20260106-20260107", "--pairs", "btc/usdt,ETH/USDT"]
    missing = tally("run", *args, "--strategy", "patient:Patient", cwd=tmp_path)
    assert missing.returncode == 2 and "--strategy-path" in missing.stderr
    ran = tally(
        "run", *args, "--strategy", "patient:Patient", "--strategy-path", "mine", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    # 2026-01-06 00:00 to 2026-01-07 00:00, both days' first candles included: 289 candles.
    assert summary["counts"]["cycles"] == 289 and summary["counts"]["fresh"] <= 2 * 289
    started = json.loads(tally("events", "--type", "RunStarted", "--json", cwd=tmp_path).stdout)
    data = started["event"]["data"]
    assert data["timerange"] == "20260106-20260107" and data["pairs"] == ["BTC/USDT", "ETH/USDT"]
    assert [f["symbol"] for f in data["files"]] == ["BTC/USDT", "ETH/USDT"]
    assert started["event"]["config"]["run"]["strategy"]["path"] == "patient:Patient"
    checked = tally(
        "repro", "check", summary["run_id"], "--strategy-path", "mine", "--json", cwd=tmp_path
    )
    assert checked.returncode == 0 and json.loads(checked.stdout)["reproduced"] is True
    bad = tally("run", "--timerange", "2026-01-06", cwd=tmp_path)
    assert bad.returncode == 2 and "YYYYMMDD" in bad.stderr


def test_flags_of_another_mode_are_refused_with_the_reason(tmp_path: Path) -> None:
    cycles = tally("run", "--cycles", "3", cwd=tmp_path)
    assert cycles.returncode == 2 and "not for a backtest" in cycles.stderr
    data = tally("run", "--mode", "paper", "--data", "x", "--json", cwd=tmp_path)
    error = json.loads(data.stdout)
    assert data.returncode == 2 == error["exit_code"] and "not for a paper run" in error["error"]
    assert not (tmp_path / "tally.db").exists()  # refused before the ledger was created


def test_market_time_replay_sees_imported_history_at_its_own_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = shared_data("ohlcv", "ETH_BTC-5m.csv").read_text().splitlines()
    (data / "ETH_BTC-5m.csv").write_text("\n".join(lines[:201]) + "\n")
    (tmp_path / "t.csv").write_text(
        "timestamp,symbol,side,qty,price,fee,fee_asset\n"
        "2018-01-10T06:00:00Z,ETH/BTC,buy,2,0.0996,0.0002,BTC\n"
    )
    assert json.loads(tally("init", "--json", cwd=tmp_path).stdout)["state"] == "created"
    deposited = tally("deposit", "BTC", "1", "--at", "2018-01-10T00:00:00Z", "--json", cwd=tmp_path)
    assert json.loads(deposited.stdout)["position"] == 1
    assert json.loads(tally("import", "trades", "t.csv", "--json", cwd=tmp_path).stdout)["count"]
    assert tally("import", "ohlcv", "data", cwd=tmp_path).returncode == 0
    recorded = tally("replay", "--at", "2018-01-10T07:00:00Z", cwd=tmp_path)
    assert recorded.returncode == 2 and "--market-time" in recorded.stderr
    before = json.loads(
        tally("replay", "--market-time", "2018-01-10T05:59:59Z", "--json", cwd=tmp_path).stdout
    )
    after = json.loads(
        tally("replay", "--market-time", "2018-01-10T06:00:00Z", "--json", cwd=tmp_path).stdout
    )
    assert before["positions"] == {} and before["cash"] == {"BTC": "1"}
    assert after["positions"] == {"ETH/BTC": "2"} and after["cash"] == {"BTC": "0.8006", "ETH": "2"}
    nobody = tally("replay", "--account", "nobody", cwd=tmp_path)
    assert nobody.returncode == 2 and "holds nothing" in nobody.stderr


def test_a_deposit_dated_after_the_data_is_named_as_the_cause(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = shared_data("ohlcv", "ETH_BTC-5m.csv").read_text().splitlines()
    (data / "ETH_BTC-5m.csv").write_text("\n".join(lines[:50]) + "\n")
    assert tally("init", cwd=tmp_path).returncode == 0
    assert tally("import", "ohlcv", "data", cwd=tmp_path).returncode == 0
    assert tally("deposit", "BTC", "1", cwd=tmp_path).returncode == 0  # dated now: 2026+
    report = tally("report", "summary", cwd=tmp_path)
    assert report.returncode == 2
    assert "after the last price (2018-01-10T" in report.stderr and "--at" in report.stderr
