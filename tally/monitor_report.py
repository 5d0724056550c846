"""The monitor's report: errors, breakers, stale prices, orders, alerts and health in one
dict, the same whether it is read from the ledger (`tally monitor`) or from a running
service (`tally monitor --url`, `GET /v1/monitor`), and exported as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.store import EventStore
    from projections.monitor import MonitorState
    from tally.settings import Settings


def build_report(
    store: EventStore, settings: Settings, state: MonitorState, now: datetime
) -> dict[str, Any]:
    from tally.service.health import run_checks, worst

    checks = run_checks(store, settings, state, now)
    return {
        "as_of": now.isoformat().replace("+00:00", "Z"),
        "position": store.head(),
        "health": {"status": worst(checks), "checks": [c.as_dict() for c in checks]},
        "errors": state.errors_dict(now, last=10),
        "breakers": state.breakers_dict(),
        "stale": {
            "marks": state.stale_marks,
            "share": state.stale_share(),
            "by_symbol": dict(sorted(state.stale_by_symbol.items())),
        },
        "orders": state.orders.as_dict(),
        "alerts": [state.alerts_firing[k] for k in sorted(state.alerts_firing)],
    }


def to_csv(report: dict[str, Any]) -> str:
    """One line per figure: section, key, metric, value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "metric", "value"])
    writer.writerow(["report", "", "as_of", report["as_of"]])
    writer.writerow(["report", "", "position", report["position"]])
    writer.writerow(["health", "", "status", report["health"]["status"]])
    for check in report["health"]["checks"]:
        for metric in ("status", "value", "summary"):
            writer.writerow(["health", check["name"], metric, check[metric]])
    errors = report["errors"]
    for dimension in ("class", "source", "symbol"):
        rates = errors[f"rate_per_minute_by_{dimension}"]
        for key, total in errors[f"by_{dimension}"].items():
            writer.writerow([f"errors_by_{dimension}", key, "total", total])
            for window, rate in rates.get(key, {}).items():
                writer.writerow([f"errors_by_{dimension}", key, f"per_min_{window}", rate])
    for window, rate in errors["rate_per_minute"].items():
        writer.writerow(["errors", "", f"per_min_{window}", rate])
    for error in errors["last"]:
        writer.writerow(["last_error", error["position"], error["class"], error["message"]])
    for name, breaker in report["breakers"].items():
        for metric, value in breaker.items():
            writer.writerow(["breaker", name, metric, value])
    writer.writerow(["stale", "", "marks", report["stale"]["marks"]])
    writer.writerow(["stale", "", "share", report["stale"]["share"]])
    for symbol, count in report["stale"]["by_symbol"].items():
        writer.writerow(["stale", symbol, "marks", count])
    for outcome, count in report["orders"].items():
        writer.writerow(["orders", "", outcome, count])
    for alert in report["alerts"]:
        writer.writerow(
            ["alert", f"{alert['rule']}/{alert['key']}", alert["severity"], alert["message"]]
        )
    return out.getvalue()


def render(report: dict[str, Any]) -> Any:
    """The report as rich renderables for the terminal."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def table(title: str, *headers: str) -> Table:
        return Table(*headers, title=title, box=box.SIMPLE_HEAD, title_justify="left")

    health = report["health"]
    line = Text(
        f"TALLY {health['status']}  position {report['position']:,}  as of {report['as_of']}"
    )
    line.stylize({"OK": "green", "WARNING": "yellow"}.get(health["status"], "red"), 0, 12)
    errors = report["errors"]
    by_class = table("Errors by class (per minute)", "class", "total", "1m", "5m", "1h")
    for dimension, title in (("class", None), ("source", "by source"), ("symbol", "by symbol")):
        rates = errors[f"rate_per_minute_by_{dimension}"]
        if title:
            by_class.add_section()
        for key, total in errors[f"by_{dimension}"].items():
            r = rates.get(key, {"1m": 0, "5m": 0, "1h": 0})
            label = key if title is None else f"{title}: {key}"
            by_class.add_row(label, f"{total:,}", f"{r['1m']:g}", f"{r['5m']:g}", f"{r['1h']:g}")
    last = table("Last errors", "position", "class", "symbol", "message")
    for error in reversed(errors["last"]):
        last.add_row(str(error["position"]), error["class"], error["symbol"], error["message"])
    breakers = table("Breakers", "breaker", "state", "calls", "success %", "failures", "rejected")
    for name, b in report["breakers"].items():
        pct = "" if b["success_pct"] is None else f"{b['success_pct']:g}"
        breakers.add_row(
            name, b["state"], f"{b['calls']:,}", pct, f"{b['failures']:,}", f"{b['rejected']:,}"
        )
    stale = report["stale"]
    market = table("Stale prices and orders", "figure", "value")
    market.add_row("stale marks", f"{stale['marks']:,}")
    market.add_row("stale share (last 100 snapshots)", f"{stale['share']:.2%}")
    for symbol, count in stale["by_symbol"].items():
        market.add_row(f"  stale {symbol}", f"{count:,}")
    for outcome, count in report["orders"].items():
        market.add_row(f"orders {outcome.replace('_', ' ')}", f"{count:,}")
    alerts = table("Alerts firing", "severity", "rule", "key", "message", "since")
    for alert in report["alerts"]:
        alerts.add_row(
            alert["severity"], alert["rule"], alert["key"], alert["message"], alert["since"]
        )
    if not report["alerts"]:
        alerts.add_row("", "none", "", "", "")
    checks = table("Health", "check", "status", "summary")
    for check in health["checks"]:
        checks.add_row(check["name"], check["status"], check["summary"])
    return Group(line, by_class, last, breakers, market, alerts, checks)
