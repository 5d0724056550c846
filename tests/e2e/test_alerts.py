"""Alerts of a real backtest: recorded with the cycle, reproduced exactly, delivered to a
webhook, and a failing sink recorded without holding the run back."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.e2e.test_cli import tally

RECEIVED: list[dict[str, object]] = []


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        size = int(self.headers["content-length"])
        RECEIVED.append(json.loads(self.rfile.read(size)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.mark.slow
def test_a_backtests_alerts_are_recorded_reproduced_and_delivered(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RECEIVED.clear()
    (tmp_path / "alerts.yaml").write_text(
        "run:\n"
        "  sample: {days: 1}\n"
        "  faults:\n"
        "    outages: [{start_cycle: 100, cycles: 8, symbols: [SOL/USDT]}]\n"
        "  alerts:\n"
        "    rules:\n"
        "      - {name: breaker, kind: breaker_open, severity: critical}\n"
        "      - {name: burst, kind: error_count, threshold: 5, window_s: 600}\n"
        "runner:\n"
        "  notify:\n"
        f"    webhook_url: http://127.0.0.1:{server.server_port}/hook\n"
        f"    command: [{sys.executable}, -c, 'import sys; sys.exit(3)']\n"
    )
    try:
        ran = tally("--config", "alerts.yaml", "run", "--json", cwd=tmp_path)
    finally:
        server.shutdown()
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    assert "ALERT_RAISED rule=breaker" in ran.stderr and "severity=critical" in ran.stderr
    found = tally("events", "--type", "AlertRaised", "--json", cwd=tmp_path).stdout
    raised = [json.loads(line) for line in found.splitlines()]
    assert {r["event"]["rule"] for r in raised} == {"breaker", "burst"}
    assert all(r["run_id"] == run_id and r["stream"] == f"alerts/{run_id}" for r in raised)
    # Delivered: every raise and resolve of the run reached the webhook.
    stats = json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["by_type"]
    firing = [b for b in RECEIVED if b["status"] == "firing"]
    assert len(firing) == stats["AlertRaised"] and firing[0]["run_id"] == run_id
    assert len(RECEIVED) == stats["AlertRaised"] + stats.get("AlertResolved", 0)
    # The command sink fails: each failure is recorded, outside the run.
    assert stats["AlertDeliveryFailed"] == len(RECEIVED)
    failures = tally("events", "--type", "AlertDeliveryFailed", "--json", cwd=tmp_path).stdout
    first = json.loads(failures.splitlines()[0])
    assert first["run_id"] is None and first["event"]["sink"] == "command"
    # The same events again: the alerts reproduce exactly.
    again = tally("--config", "alerts.yaml", "repro", "check", run_id, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:]
