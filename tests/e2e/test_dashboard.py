"""The dashboard in a real headless Chromium: it loads without a console error, shows a run's
numbers as the API gives them, and follows the ledger live."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tally
from tests.support.browser import browser_page, chromium_path
from tests.support.service import issue_token, serving

CONFIG = textwrap.dedent("""\
    run:
      sample: {days: 1}
    """)


@pytest.mark.slow
def test_the_dashboard_shows_a_runs_numbers_and_follows_live(tmp_path: Path) -> None:
    chromium_path()  # skip (or fail on CI) before any work when there is no browser
    (tmp_path / "small.yaml").write_text(CONFIG)
    ran = tally("--config", "small.yaml", "run", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    read, append = issue_token(tmp_path, "read"), issue_token(tmp_path, "append")
    with serving(tmp_path, "--config", "small.yaml") as base:
        headers = {"Authorization": f"Bearer {read}"}
        run = httpx.get(f"{base}/v1/runs", headers=headers).json()["runs"][0]
        rows = httpx.get(
            f"{base}/v1/accounts/{run['account']}/equity",
            params={"run": run["run_id"]},
            headers=headers,
        ).json()["rows"]
        with browser_page(f"{base}/#token={read}") as page:
            end = page.wait_for("document.querySelector('#equity-end')?.textContent")
            assert end == f"end {rows[-1]['equity']} USDT"
            assert (
                page.evaluate("document.querySelector('#runs tbody tr td').textContent")
                == (run["run_id"])
            )
            assert page.evaluate("document.querySelector('#health').textContent") in (
                "OK", "WARNING", "CRITICAL", "UNKNOWN",
            )  # fmt: skip
            assert page.evaluate("document.querySelectorAll('#equity-chart polyline').length") == 1
            assert page.evaluate("document.querySelectorAll('#breakers tbody tr').length") >= 1
            assert page.evaluate("location.hash") == ""  # the token left the address bar
            page.wait_for("document.querySelector('#live').textContent === 'live'")
            placed = httpx.post(
                f"{base}/v1/streams/dashboard/events",
                json={
                    "events": [
                        {
                            "type": "FetchFailed",
                            "data": {
                                "source": "ccxt", "endpoint": "ticker", "symbol": "BTC/USDT",
                                "attempt": 1, "error_class": "NetworkError", "retryable": True,
                                "message": "seen live by the dashboard",
                            },
                        }
                    ]
                },
                headers={"Authorization": f"Bearer {append}"},
            ).json()["positions"][0]  # fmt: skip
            page.wait_for(
                f"document.querySelector('#live').textContent === 'live · position {placed}'"
            )
            page.wait_for(
                "[...document.querySelectorAll('#recent-errors td')]"
                ".some(td => td.textContent === 'seen live by the dashboard')"
            )
            page.drain(0.5)
            shots = os.environ.get("TALLY_SCREENSHOT_DIR")
            if shots:
                page.screenshot(Path(shots) / "dashboard.png")
            assert page.problems == []
