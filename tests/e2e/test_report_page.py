"""`tally report html` in a real headless Chromium: the page loads offline with no console
error, draws a pair's candles with the run's buys and sells, equity and drawdown, and the
freqtrade wallet beside the imported account's equity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.e2e.test_cli import tally
from tests.support.browser import browser_page, chromium_path

TRACES = "Array.from(document.getElementById('tally-report')._fullData, t => [t.type, t.name])"


@pytest.mark.slow
def test_the_report_page_draws_a_runs_candles_fills_equity_and_drawdown(tmp_path: Path) -> None:
    chromium_path()
    ran = tally("run", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    made = tally("report", "html", "--run", summary["run_id"], "--out", "r.html", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    page_file = tmp_path / "r.html"
    assert "cdn" not in page_file.read_text()[:2000]  # plotly inline: the file works offline
    trades = json.loads(
        tally("report", "trades", "--run", summary["run_id"], "--json", cwd=tmp_path).stdout
    )
    with browser_page(page_file.as_uri(), width=1400, height=1800) as page:
        page.wait_for("document.querySelector('#tally-report .main-svg')")
        traces = page.evaluate(TRACES)
        kinds = {tuple(t) for t in traces}
        for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"):
            assert ("candlestick", symbol) in kinds
        assert ("scatter", "buy") in kinds and ("scatter", "sell") in kinds
        assert ("scatter", "Tally equity") in kinds and ("scatter", "drawdown %") in kinds
        assert ("scatter", "stale price") in kinds and ("scatter", "reconciled") in kinds
        # Every fill is a marker: as many as the run's trades' fills.
        markers = page.evaluate(
            "Array.from(document.getElementById('tally-report')._fullData)"
            ".filter(t => t.name === 'buy' || t.name === 'sell')"
            ".reduce((n, t) => n + t.x.length, 0)"
        )
        fills = sum(len(t["entry_positions"]) + len(t["exit_positions"]) for t in trades)
        assert markers == fills == summary["counts"]["trades"]
        last = page.evaluate(
            "(d => d.find(t => t.name === 'Tally equity').y.at(-1))"
            "(document.getElementById('tally-report')._fullData)"
        )
        assert abs(last - float(summary["equity_end"])) < 1e-6
        page.drain(1.0)
        assert page.problems == []
        shots = os.environ.get("TALLY_SCREENSHOT_DIR")
        if shots:
            page.screenshot(Path(shots) / "report.png")


@pytest.mark.slow
def test_the_freqtrade_wallet_sits_beside_the_imported_equity(tmp_path: Path) -> None:
    chromium_path()
    export = shared_data("freqtrade", "sample-strategy-7pairs.zip")
    data = shared_data("freqtrade", "data", "binance")
    assert tally("init", cwd=tmp_path).returncode == 0
    assert tally("import", "freqtrade", str(export), cwd=tmp_path).returncode == 0
    assert tally("import", "ohlcv", str(data), cwd=tmp_path).returncode == 0
    made = tally(
        "report", "html", "--account", "freqtrade", "--freqtrade", str(export),
        "--out", "ft.html", cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with browser_page((tmp_path / "ft.html").as_uri(), width=1400, height=2400) as page:
        page.wait_for("document.querySelector('#tally-report .main-svg')")
        names = {t[1] for t in page.evaluate(TRACES)}
        assert {"freqtrade wallet", "Tally equity", "ETH/BTC", "buy", "sell"} <= names
        first, last = page.evaluate(
            "(d => { const w = d.find(t => t.name === 'freqtrade wallet').y;"
            " return [w[0], w[w.length - 1]]; })(document.getElementById('tally-report')._fullData)"
        )
        assert first == pytest.approx(0.01) and last == pytest.approx(0.010144, abs=1e-6)
        page.drain(1.0)
        assert page.problems == []
        shots = os.environ.get("TALLY_SCREENSHOT_DIR")
        if shots:
            page.screenshot(Path(shots) / "report-freqtrade.png")
