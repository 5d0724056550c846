"""The main job as a user runs it: run, verify, replay, repro check, diff, import, report."""

from __future__ import annotations

import json
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.e2e.test_cli import tally

SMALL = textwrap.dedent("""\
    run:
      sample: {days: 1}
      faults:
        failure_rate: 0.05
        outages: [{start_cycle: 100, cycles: 3, symbols: [SOL/USDT]}]
    """)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """The README's first command, once: `tally run` on a fresh folder, then its summary."""
    folder = tmp_path_factory.mktemp("default-run")
    result = tally("run", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    shutil.copy(folder / "tally.db", tmp_path / "tally.db")
    return tmp_path


def test_the_default_run_records_faults_and_finishes_with_a_summary(
    default_run: tuple[Path, dict[str, object]],
) -> None:
    folder, summary = default_run
    counts = summary["counts"]
    assert isinstance(counts, dict)
    assert counts["cycles"] == 864  # 3 days of 5-minute candles
    # The injected faults show in the ledger: retries, stale prices, skipped symbols, and
    # fee roundings the validator reconciled.
    assert counts["retries"] > 0 and counts["stale"] > 0 and counts["failed"] > 0
    assert counts["reconciled"] > 0 and counts["trades"] > 0
    assert counts["fresh"] + counts["stale"] + counts["failed"] == 4 * 864
    assert summary["equity_start"] == "100000"
    verified = tally("verify", "--json", cwd=folder)
    assert verified.returncode == 0 and json.loads(verified.stdout)["events"] == summary["events"]
    text = tally("run", cwd=folder)  # the same inputs: the same run, already recorded
    assert text.returncode == 0 and "already in this ledger" in text.stdout
    assert str(summary["fingerprint"]) in text.stdout
    stats = json.loads(tally("stats", "--json", cwd=folder).stdout)
    assert stats["events"] == summary["events"]
    types = stats["by_type"]
    for kind in (
        "RetryScheduled",
        "StalePriceUsed",
        "SymbolSkipped",
        "PortfolioReconciled",
        "TradeExecuted",
        "FeeCharged",
        "ValidationPassed",
        "BalanceObserved",
        "RunStarted",
        "RunFinished",
        "CircuitOpened",
    ):
        assert types.get(kind, 0) > 0, kind


def test_run_started_records_the_context(default_run: tuple[Path, dict[str, object]]) -> None:
    folder, summary = default_run
    listed = tally("events", "--type", "RunStarted", "--json", cwd=folder)
    started = json.loads(listed.stdout.splitlines()[0])["event"]
    assert started["run_id"] == summary["run_id"] and started["seed"] == 7
    assert len(started["config_hash"]) == 64 and started["config"]["run"]["seed"] == 7
    assert started["code_version"]  # git SHA or package version
    assert started["environment"]["python"].count(".") == 2
    assert "ccxt" in started["environment"] and "sqlalchemy" in started["environment"]
    files = started["data"]["files"]
    assert {f["symbol"] for f in files} == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"}
    assert all(len(f["sha256"]) == 64 and f["rows"] > 800 for f in files)


def test_repro_check_reproduces_the_run(default_run: tuple[Path, dict[str, object]]) -> None:
    folder, summary = default_run
    result = tally("repro", "check", str(summary["run_id"]), cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"reproduced: {summary['events']:,} events, fingerprint {summary['fingerprint']}"
        in result.stdout
    )


def test_one_byte_changed_fails_verify_and_repro_at_that_position(
    default_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    folder = copy_of(default_run[0], tmp_path)
    db = folder / "tally.db"
    with sqlite3.connect(db) as conn:
        position, record = conn.execute(
            "SELECT position, record FROM events WHERE type = 'TradeExecuted' "
            "ORDER BY position LIMIT 1 OFFSET 10"
        ).fetchone()
    data = db.read_bytes()
    at = data.index(record)
    qty = record.index(b'"qty":"') + 7
    changed = b"9" if record[qty : qty + 1] != b"9" else b"8"
    db.write_bytes(data[: at + qty] + changed + data[at + qty + 1 :])
    verified = tally("verify", cwd=folder)
    assert verified.returncode == 1
    assert f"position {position}" in verified.stderr and "hint:" in verified.stderr
    repro = tally("repro", "check", str(default_run[1]["run_id"]), cwd=folder)
    assert repro.returncode == 1 and f"position {position}" in repro.stderr


def test_diff_of_two_seeds_names_the_inputs_and_the_first_divergence(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SMALL)
    ids = []
    for seed in ("1", "2"):
        result = tally("--config", "small.yaml", "run", "--seed", seed, "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        ids.append(json.loads(result.stdout)["run_id"])
    listed = json.loads(tally("--config", "small.yaml", "runs", "--json", cwd=tmp_path).stdout)
    assert [r["run_id"] for r in listed] == ids and all(r["cycles"] == 288 for r in listed)
    out = tally("--config", "small.yaml", "diff", *ids, "--csv", "eq.csv", cwd=tmp_path)
    assert out.returncode == 1
    assert "inputs differ:" in out.stdout and "event.seed: 1 vs 2" in out.stdout
    assert "first difference at event #" in out.stdout and "equity difference" in out.stdout
    rows = (tmp_path / "eq.csv").read_text().splitlines()
    assert rows[0] == "timestamp,equity_a,equity_b,delta" and len(rows) > 288
    same = tally("--config", "small.yaml", "diff", ids[0], ids[0], cwd=tmp_path)
    assert same.returncode == 0 and "record the same events" in same.stdout


STRATEGY = textwrap.dedent("""\
    import os
    from ingest.venues import OrderIntent

    class BuyOnce:
        \"\"\"Buys at the cycle named by an environment variable: not a pure function.\"\"\"

        def decide(self, view):
            if view.cycle == int(os.environ["BUY_AT_CYCLE"]) and "BTC/USDT" in view.fresh:
                return [OrderIntent(view.account, "BTC/USDT", "buy", view.markets[
                    "BTC/USDT"].qty_step * 10, intent="once")]
            return []
    """)


def test_a_run_that_does_not_reproduce_is_shown_at_its_first_differing_event(
    tmp_path: Path,
) -> None:
    (tmp_path / "my_strategy.py").write_text(STRATEGY)
    (tmp_path / "own.yaml").write_text(SMALL + "  strategy: {path: my_strategy:BuyOnce}\n")
    env = {"PYTHONPATH": str(tmp_path), "BUY_AT_CYCLE": "40"}
    run = tally("--config", "own.yaml", "run", "--json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["counts"]["trades"] == 1  # the plugged-in strategy ran
    same = tally("--config", "own.yaml", "repro", "check", summary["run_id"], cwd=tmp_path, env=env)
    assert same.returncode == 0 and "reproduced:" in same.stdout
    other = tally(
        "--config",
        "own.yaml",
        "repro",
        "check",
        summary["run_id"],
        cwd=tmp_path,
        env={**env, "BUY_AT_CYCLE": "41"},
    )
    assert other.returncode == 1
    assert "NOT reproduced" in other.stdout and "first difference at event #" in other.stdout
    # The recorded run ordered at cycle 40; the re-execution validated cycle 40 instead.
    assert (
        'type                   recorded: "OrderSubmitted"  re-executed: "ValidationPassed"'
        in other.stdout
    )


def test_replay_to_a_position_and_to_a_time(default_run: tuple[Path, dict[str, object]]) -> None:
    folder, summary = default_run
    run_id = str(summary["run_id"])
    early = json.loads(
        tally("replay", "--run", run_id, "--to", "1000", "--json", cwd=folder).stdout
    )
    final = json.loads(tally("replay", "--run", run_id, "--json", cwd=folder).stdout)
    assert early["position"] == 1000 and final["position"] == summary["last_position"]
    assert final["equity"] == summary["equity_end"]
    assert sum(early["errors"].values()) < sum(final["errors"].values())
    assert final["breakers"]["candles:ticker"]["failures"] == sum(
        n for k, n in final["errors"].items() if k != "OrderRejected"
    )
    at = json.loads(
        tally(
            "replay", "--run", run_id, "--at", "2026-01-06T00:00:00Z", "--json", cwd=folder
        ).stdout
    )
    assert early["position"] < at["position"] < final["position"]
    assert at["recorded_at"] <= "2026-01-06T00:00:00+00:00"
    text = tally("replay", "--run", run_id, "--to", "1000", cwd=folder).stdout
    assert "as of position 1,000" in text and "breaker" in text


def test_report_equity_in_three_formats(
    default_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    folder, summary = default_run
    run_id = str(summary["run_id"])
    csv = tally("report", "equity", "--run", run_id, cwd=folder).stdout.splitlines()
    assert csv[0] == "timestamp,equity,cash,positions_value,realized_pnl,fees"
    # 864 cycles: the first close comes before the starting deposit (half-open candles), so
    # it has no row; the last cycle trades nothing, so no closing row follows it.
    assert len(csv) == 1 + 863 and csv[-1].split(",")[1] == summary["equity_end"]
    assert csv[1].startswith("2026-01-05T00:10:00Z,100000,")
    rows = json.loads(
        tally("report", "equity", "--run", run_id, "--format", "json", cwd=folder).stdout
    )
    assert rows[0]["equity"] == "100000" and len(rows) == 863
    out = tmp_path / "equity.html"
    made = tally(
        "report", "equity", "--run", run_id, "--format", "html", "--out", str(out), cwd=folder
    )
    assert made.returncode == 0
    page = out.read_text()
    assert "Tally equity" in page and "drawdown %" in page and "reconciliations 1 (purple)" in page
    missing = tally("report", "equity", cwd=folder)  # account main holds nothing
    assert missing.returncode == 2 and "--run" in missing.stderr


def test_import_with_a_bad_row_imports_nothing_and_names_the_line(tmp_path: Path) -> None:
    good = (
        "timestamp,symbol,side,qty,price,fee,fee_asset\n"
        "2018-01-10T06:00:00Z,ETH/BTC,buy,1.5,0.0990,0.0001485,BTC\n"
        "1515567600000,ETH/BTC,sell,0.5,0.1,0.00005,BTC\n"
    )
    (tmp_path / "bad.csv").write_text(
        good + "2018-01-10T08:00:00Z,ETH/BTC,hold,1,0.1,0,BTC\nnot-a-time,ETH/BTC,buy,1,0.1,0,BTC\n"
    )
    (tmp_path / "good.csv").write_text(good)
    assert tally("init", cwd=tmp_path).returncode == 0
    bad = tally("import", "trades", "bad.csv", cwd=tmp_path)
    assert bad.returncode == 2
    assert "line 4: side" in bad.stderr and "line 5: timestamp" in bad.stderr
    assert "nothing imported" in bad.stderr
    assert json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["events"] == 0
    deposit = tally("deposit", "BTC", "10", "--at", "2018-01-10T00:00:00Z", cwd=tmp_path)
    assert deposit.returncode == 0
    first = tally("import", "trades", "good.csv", cwd=tmp_path)
    assert first.returncode == 0 and "2 events" in first.stdout  # each fill with its fee
    again = tally("import", "trades", "good.csv", cwd=tmp_path)
    assert "already imported" in again.stdout
    assert json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["events"] == 3
    assert tally("deposit", "BTC", "-3", cwd=tmp_path).returncode == 2


def test_a_file_imported_by_an_older_tally_as_two_events_a_fill_is_already_imported(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from ledger import events, open_store
    from ledger.store import StreamAppend
    from tally.imports import _file_digest

    (tmp_path / "t.csv").write_text(
        "timestamp,symbol,side,qty,price,fee,fee_asset\n"
        "2018-01-10T06:00:00Z,ETH/BTC,buy,1.5,0.0990,0.0001485,BTC\n"
    )
    assert tally("init", cwd=tmp_path).returncode == 0
    digest = _file_digest(tmp_path / "t.csv")
    tid = f"import-{digest[:12]}-2"
    old_shape = [
        events.TradeExecuted(
            account="main", symbol="ETH/BTC", side="buy", qty=Decimal("1.5"),
            price=Decimal("0.0990"), order_id=tid, trade_id=tid,
            executed_at=datetime(2018, 1, 10, 6, tzinfo=UTC),
        ),
        events.FeeCharged(account="main", trade_id=tid, asset="BTC", amount=Decimal("0.0001485")),
    ]  # fmt: skip
    with open_store(f"sqlite:///{tmp_path / 'tally.db'}") as store:
        store.append_many(
            [StreamAppend("portfolio/main", old_shape)],
            idempotency_key=f"import/trades/main/{digest}",
        )
    again = tally("import", "trades", "t.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already imported" in again.stdout and "1..2" in again.stdout
    assert json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["events"] == 2


def test_import_ohlcv_then_equity_marks_at_each_candle_close(tmp_path: Path) -> None:
    source = shared_data("ohlcv", "ETH_BTC-5m.csv")
    data = tmp_path / "data"
    data.mkdir()
    lines = source.read_text().splitlines()
    (data / "ETH_BTC-5m.csv").write_text("\n".join(lines[:101]) + "\n")  # 100 real candles
    (tmp_path / "t.csv").write_text(
        "timestamp,symbol,side,qty,price,fee,fee_asset\n"
        "1515567600000,ETH/BTC,buy,2,0.0996,0.0002,BTC\n"
    )
    assert tally("init", cwd=tmp_path).returncode == 0
    assert tally("deposit", "BTC", "1", "--at", "1515560000000", cwd=tmp_path).returncode == 0
    assert tally("import", "trades", "t.csv", cwd=tmp_path).returncode == 0
    imported = tally("import", "ohlcv", "data", "--json", cwd=tmp_path)
    assert imported.returncode == 0 and json.loads(imported.stdout)["count"] == 101
    rows = tally("report", "equity", cwd=tmp_path).stdout.splitlines()[1:]
    assert len(rows) == 100
    from decimal import Decimal

    # The file's float noise (0.09946999000000001) is rounded to the market's price step,
    # and the step is recorded with the file.
    last_close = Decimal(lines[100].split(",")[4]).quantize(Decimal("1E-8"))
    _, equity, cash, positions_value, _, fees = rows[-1].split(",")
    assert fees == "0.0002" and Decimal(cash) == Decimal(1) - 2 * Decimal("0.0996") - Decimal(
        "0.0002"
    )
    assert Decimal(positions_value) == 2 * last_close
    assert Decimal(equity) == Decimal(cash) + Decimal(positions_value)
    found = tally("events", "--type", "CandleImported", "--type", "CandlesImported", "--json",
                  cwd=tmp_path).stdout.splitlines()  # fmt: skip
    candles = [json.loads(line)["event"] for line in found]
    assert "0.09946999000000001" in lines[2] and candles[1]["open"] == "0.09946999"
    assert all(len(c[k].partition(".")[2]) <= 8 for c in candles[:-1] for k in ("open", "close"))
    assert candles[-1]["price_step"] == "1E-8" and candles[-1]["rows"] == 100
    # `run --data` prices with exactly the candles `import ohlcv` recorded.
    ran = tally("run", "--data", "data", "--db", "sqlite:///run.db", "--json", cwd=tmp_path)
    run_id = json.loads(ran.stdout)["run_id"]
    sealed = tally("events", "--type", "SnapshotSealed", "--limit", "3", "--json",
                   "--db", "sqlite:///run.db", cwd=tmp_path).stdout.splitlines()  # fmt: skip
    marks = [json.loads(line)["event"]["marks"]["ETH/BTC"] for line in sealed]
    assert marks == [c["close"] for c in candles[:3]] and run_id


@pytest.mark.slow
def test_a_backtest_on_real_candles_takes_missing_candles_as_failed_fetches(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # ADA's real file misses 40 candles between its rows 1,502 and 1,551: take that window.
    ada = shared_data("ohlcv", "ADA_BTC-5m.csv").read_text().splitlines()
    first, last = int(ada[1401].split(",")[0]), int(ada[1701].split(",")[0])
    kept = {}
    for name in ("ADA_BTC-5m.csv", "ETH_BTC-5m.csv"):
        lines = shared_data("ohlcv", name).read_text().splitlines()
        rows = [r for r in lines[1:] if first <= int(r.split(",")[0]) <= last]
        kept[name] = len(rows)
        (data / name).write_text("\n".join([lines[0], *rows]) + "\n")
    assert kept["ETH_BTC-5m.csv"] - kept["ADA_BTC-5m.csv"] == 40
    result = tally("run", "--data", "data", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    counts = summary["counts"]
    stats = json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["by_type"]
    # No faults injected for --data: every failure is a candle missing from the real file.
    assert counts["retries"] == 0
    missing = 2 * counts["cycles"] - sum(kept.values())
    assert missing == 40 and counts["stale"] + counts["failed"] == missing
    assert stats["FetchFailed"] == missing
    assert stats.get("StalePriceUsed", 0) == counts["stale"]
    assert stats.get("SymbolSkipped", 0) == counts["failed"]
    assert summary["quote"] == "BTC"
    again = tally("repro", "check", summary["run_id"], cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    eth = data / "ETH_BTC-5m.csv"
    text = eth.read_text()  # one digit of the last volume changed: another file
    eth.write_text(text[:-2] + ("1" if text[-2] != "1" else "2") + "\n")
    changed = tally("repro", "check", summary["run_id"], cwd=tmp_path)
    assert changed.returncode == 2 and "ETH_BTC-5m.csv" in changed.stderr
    assert "is not the file run" in changed.stderr


@pytest.mark.postgres
def test_a_sqlite_run_reexecuted_on_postgres_has_the_same_fingerprint(
    pg_empty_url: str, tmp_path: Path
) -> None:
    (tmp_path / "small.yaml").write_text(SMALL)
    run = tally("--config", "small.yaml", "run", "--json", cwd=tmp_path)
    summary = json.loads(run.stdout)
    result = tally(
        "--config",
        "small.yaml",
        "repro",
        "check",
        summary["run_id"],
        "--scratch-db",
        pg_empty_url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"fingerprint {summary['fingerprint']}" in result.stdout


def test_live_mode_needs_the_flag_and_keys_from_the_environment(tmp_path: Path) -> None:
    no_flag = tally("run", "--mode", "live", cwd=tmp_path)
    assert no_flag.returncode == 2 and "--live" in no_flag.stderr
    no_keys = tally(
        "run",
        "--mode",
        "live",
        "--live",
        cwd=tmp_path,
        env={"TALLY_API_KEY": "", "TALLY_API_SECRET": ""},
    )
    assert no_keys.returncode == 2 and "TALLY_API_KEY" in no_keys.stderr
    assert not (tmp_path / "tally.db").exists()  # refused before anything was written


def test_the_summary_and_the_trades_of_a_run_add_up(
    default_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    folder, run = default_run
    run_id = str(run["run_id"])
    made = tally("report", "summary", "--run", run_id, "--json", cwd=folder)
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    totals, pairs = out["totals"], out["pairs"]
    assert totals["trades"] == sum(p["trades"] for p in pairs) > 0
    assert totals["wins"] + totals["draws"] + totals["losses"] == totals["trades"]
    from decimal import Decimal

    assert Decimal(totals["profit_abs"]) == sum(Decimal(p["profit_abs"]) for p in pairs)
    equity = tally("report", "equity", "--run", run_id, cwd=folder).stdout.splitlines()
    assert totals["end_equity"] == equity[-1].split(",")[1] == str(run["equity_end"])
    assert totals["start_equity"] == "100000"
    text = tally("report", "summary", "--run", run_id, cwd=folder)
    assert "Per pair" in text.stdout and "Sharpe / Sortino / Calmar" in text.stdout
    listed = tally("report", "trades", "--run", run_id, cwd=folder).stdout.splitlines()
    assert len(listed) - 1 == totals["trades"] + totals["open_trades"]
    assert listed[0].startswith("symbol,side,opened_at,closed_at")
    out_file = tmp_path / "trades.parquet"
    written = tally(
        "report", "trades", "--run", run_id, "--format", "parquet", "--out", str(out_file),
        cwd=folder,
    )  # fmt: skip
    assert written.returncode == 0
    import pandas as pd

    assert len(pd.read_parquet(out_file)) == len(listed) - 1
    refused = tally("report", "trades", "--run", run_id, "--format", "parquet", cwd=folder)
    assert refused.returncode == 2 and "--out" in refused.stderr
