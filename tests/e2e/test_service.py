"""`tally serve` as a real uvicorn process on 127.0.0.1, spoken to with httpx."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_cli import tally
from tests.support.service import issue_token, serving, sse_events

SMALL = textwrap.dedent("""\
    run:
      sample: {days: 1}
    service:
      body_bytes_max: 65536
      append_events_max: 50
    """)


@dataclass
class Live:
    folder: Path
    base: str
    read: str
    append: str
    admin: str

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("service")
    (folder / "small.yaml").write_text(SMALL)
    ran = tally("--config", "small.yaml", "run", cwd=folder)
    assert ran.returncode == 0, ran.stderr
    tokens = {s: issue_token(folder, s) for s in ("read", "append", "admin")}
    with serving(folder, "--config", "small.yaml") as base:
        yield Live(folder, base, tokens["read"], tokens["append"], tokens["admin"])


def stream_events(client: httpx.Client, stream: str, count: int) -> list[dict[str, Any]]:
    """The events of ``stream`` once it holds ``count`` of them (waiting up to 15 s)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = client.get("/v1/events", params={"stream": stream}).json()["events"]
        if len(found) >= count:
            return list(found)
        time.sleep(0.1)
    raise AssertionError(f"{stream} holds fewer than {count} events")


def deposit(amount: str, account: str = "bot") -> dict[str, object]:
    return {
        "type": "FundsDeposited",
        "data": {"account": account, "asset": "USDT", "amount": amount},
    }


def test_no_token_is_401_an_unknown_one_401_a_missing_scope_403(live: Live) -> None:
    body = {"events": [deposit("1")]}
    with live.client(None) as anonymous:
        refused = anonymous.get("/v1/events")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "token" in refused.json()["hint"]
    with live.client("tally_not-a-token") as stranger:
        assert stranger.get("/v1/events").status_code == 401
    with live.client(live.read) as reader:
        assert reader.get("/v1/events", params={"limit": 1}).status_code == 200
        forbidden = reader.post("/v1/streams/bots/events", json=body)
        assert forbidden.status_code == 403 and "needs append" in forbidden.json()["detail"]
    with live.client(live.append) as appender:
        assert appender.post("/v1/verify").status_code == 403
        assert appender.post("/v1/streams/auth-check/events", json=body).status_code == 201


def test_an_append_is_idempotent_and_conflicts_are_409(live: Live) -> None:
    with live.client(live.append) as client:
        body = {"events": [deposit("10.10"), deposit("2")], "expected_version": 0}
        first = client.post("/v1/streams/idem/events", json=body, headers={"Idempotency-Key": "a1"})
        assert first.status_code == 201, first.text
        positions = first.json()["positions"]
        assert len(positions) == 2 and positions[1] == positions[0] + 1
        assert first.json()["version"] == 2
        again = client.post("/v1/streams/idem/events", json=body, headers={"Idempotency-Key": "a1"})
        assert again.status_code == 201 and again.json()["positions"] == positions
        assert again.headers["idempotent-replayed"] == "true"
        other = {"events": [deposit("3")], "expected_version": 2}
        reused = client.post(
            "/v1/streams/idem/events", json=other, headers={"Idempotency-Key": "a1"}
        )
        assert reused.status_code == 409 and reused.json()["title"] == "IdempotencyConflict"
        stale = client.post("/v1/streams/idem/events", json={**other, "expected_version": 1})
        assert stale.status_code == 409
        assert stale.json()["context"] == {"stream": "idem", "expected": 1, "actual": 2}
    with live.client(live.read) as reader:
        page = reader.get("/v1/events", params={"stream": "idem"}).json()
        assert [e["position"] for e in page["events"]] == positions  # nothing doubled
        # Exact decimals: the JSON number 10.10 is stored as "10.10", never as a float.
        assert page["events"][0]["data"]["amount"] == "10.10"
        assert len(page["events"][0]["hash"]) == 64


def funds(**data: object) -> dict[str, object]:
    return {"type": "FundsDeposited", "data": {"account": "b", "asset": "USDT", **data}}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "FundsTeleported", "data": {}}, "type"),
        (
            {"type": "TokenIssued", "data": {"name": "x", "scope": "admin", "token_sha256": "0"}},
            "type",
        ),
        (funds(amount="-1"), "amount"),
        (funds(amount="1e30"), "amount"),
        (funds(amount=[1]), "amount"),
        (funds(amount="1", x=1), "x"),
        ({"type": "FundsDeposited", "data": {"asset": "USDT", "amount": "1"}}, "account"),
        (funds(amount="1", account="no spaces"), "account"),
    ],
)
def test_an_invalid_event_is_422_naming_the_event_and_field_and_nothing_is_written(
    live: Live, event: dict[str, object], field: str
) -> None:
    with live.client(live.append) as client:
        head = client.get("/v1/events", params={"limit": 1}).status_code  # (append can read)
        assert head == 200
        before = client.get("/health/ready").json()
        body = {"events": [deposit("1"), event]}
        refused = client.post("/v1/streams/invalid/events", json=body)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["context"]["event"] == 1 and problem["context"]["field"] == field
        assert problem["detail"].startswith("events[1]") and problem["hint"]
        assert "Traceback" not in refused.text
        assert before["status"] in ("OK", "WARNING")
    with live.client(live.read) as reader:
        assert reader.get("/v1/events", params={"stream": "invalid"}).json()["events"] == []


def test_size_limits_are_413_and_bad_requests_are_problems(live: Live) -> None:
    with live.client(live.append) as client:
        many = client.post("/v1/streams/big/events", json={"events": [deposit("1")] * 51})
        assert many.status_code == 413 and "at most 50" in many.json()["detail"]
        huge = client.post(
            "/v1/streams/big/events",
            content=b'{"events": [' + b" " * 70_000 + b"]}",
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413 and "65,536 bytes" in huge.json()["detail"]
        for content in (b"not json", b"[]", b'{"events": []}', b'{"events": [], "extra": 1}'):
            bad = client.post("/v1/streams/big/events", content=content)
            assert (
                bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
            )
        own = client.post("/v1/streams/tally%2Ftokens/events", json={"events": [deposit("1")]})
        assert own.status_code == 422 and "Tally's own" in own.json()["detail"]
        assert client.get("/v1/events", params={"type": "Bogus"}).status_code == 422
        assert client.get("/v1/events", params={"from_position": 0}).status_code == 422
        assert client.get("/v1/runs/run-nope").status_code == 404
        assert client.get("/v1/nowhere").status_code == 404
    with live.client(live.read) as reader:
        assert reader.get("/v1/accounts/nobody/portfolio").status_code == 404


def test_events_page_in_position_order_and_resume_from_next_position(live: Live) -> None:
    with live.client(live.read) as client:
        first = client.get("/v1/events", params={"limit": 7}).json()
        assert [e["position"] for e in first["events"]] == list(range(1, 8))
        assert first["next_position"] == 8
        second = client.get("/v1/events", params={"from_position": 8, "limit": 3}).json()
        assert [e["position"] for e in second["events"]] == [8, 9, 10]
        snapshots = client.get("/v1/events", params={"type": "SnapshotSealed", "limit": 2}).json()[
            "events"
        ]
        assert [e["type"] for e in snapshots] == ["SnapshotSealed"] * 2


def test_a_subscription_catches_up_goes_live_and_resumes_with_last_event_id(live: Live) -> None:
    with live.client(live.append) as writer:
        writer.post("/v1/streams/sse/events", json={"events": [deposit("1", "sse")]})
        head = writer.get("/v1/events", params={"stream": "sse"}).json()["events"][-1]["position"]
    with (
        live.client(live.read) as client,
        client.stream("GET", "/v1/subscribe", params={"from_position": head - 2}) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        caught_up = sse_events(lines, 3)
        assert [i for i, _ in caught_up] == [head - 2, head - 1, head]
        with live.client(live.append) as writer:
            made = writer.post("/v1/streams/sse/events", json={"events": [deposit("2", "sse")] * 2})
        new = made.json()["positions"]
        arrived = sse_events(lines, 2)
        assert [i for i, _ in arrived] == new and arrived[0][1]["type"] == "FundsDeposited"
    with (
        live.client(live.read) as client,
        client.stream("GET", "/v1/subscribe", headers={"Last-Event-ID": str(new[0])}) as resumed,
    ):
        assert [i for i, _ in sse_events(resumed.iter_lines(), 1)] == [new[1]]


def test_views_answer_what_the_cli_answers(live: Live) -> None:
    runs_cli = json.loads(tally("--config", "small.yaml", "runs", "--json", cwd=live.folder).stdout)
    with live.client(live.read) as client:
        runs = client.get("/v1/runs").json()["runs"]
        assert [r["run_id"] for r in runs] == [r["run_id"] for r in runs_cli]
        run = runs[0]
        assert client.get(f"/v1/runs/{run['run_id']}").json()["fingerprint"] == run["fingerprint"]
        account = run["account"]
        books = client.get(f"/v1/accounts/{account}/portfolio").json()
        replayed = json.loads(
            tally("replay", "--run", run["run_id"], "--json", cwd=live.folder).stdout
        )
        assert books["cash"] == replayed["cash"] and books["equity"] == replayed["equity"]
        early = client.get(f"/v1/accounts/{account}/portfolio", params={"to": 20}).json()
        assert early["position"] == 20
        csv = client.get(f"/v1/accounts/{account}/equity", params={"format": "csv"})
        cli_csv = tally("report", "equity", "--run", run["run_id"], cwd=live.folder).stdout
        assert csv.headers["content-type"].startswith("text/csv") and csv.text == cli_csv
        rows = client.get(f"/v1/accounts/{account}/equity").json()["rows"]
        assert len(rows) == len(cli_csv.splitlines()) - 1
        assert client.get(f"/v1/accounts/{account}/reconcile").json()["account"] == account
        errors = client.get("/v1/errors").json()
        assert errors["total"] == sum(errors["by_class"].values()) > 0
        breakers = client.get("/v1/breakers").json()["breakers"]
        assert all(b["calls"] >= b["failures"] for b in breakers.values())


def test_verify_is_incremental_after_a_full_one(live: Live) -> None:
    with live.client(live.admin) as admin:
        full = admin.post("/v1/verify", json={"full": True}).json()
        assert full["ok"] and full["full"] and full["from_position"] == 1
        admin.post("/v1/streams/verify/events", json={"events": [deposit("1")]})
        step = admin.post("/v1/verify").json()
        assert not step["full"] and step["events"] >= 1
        assert step["from_position"] == full["head_position"] + 1
        idle = admin.post("/v1/verify").json()  # nothing new: the same head, nothing checked
        assert idle["events"] == 0 and idle["head_hash"] == step["head_hash"]
        assert idle["head_position"] == step["head_position"]
        assert admin.post("/v1/verify", content=b'{"fast": 1}').status_code == 422


def test_metrics_parse_and_count_appends_health_has_no_details(live: Live) -> None:
    with live.client(live.append) as client:
        client.post("/v1/streams/metrics/events", json={"events": [deposit("1")] * 3})
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    appended = {
        s.labels["type"]: s.value
        for s in families["tally_events_appended"].samples
        if s.name.endswith("_total")
    }
    assert appended["FundsDeposited"] >= 3
    assert families["tally_append_seconds"].type == "histogram"
    failures = families["tally_fetch_failures"].samples
    assert failures and all(s.labels["source"] for s in failures)
    for name in (
        "tally_breaker_state",
        "tally_stale_marks",
        "tally_orders",
        "tally_alerts_firing",
        "tally_spool_bytes",
        "tally_run_last_cycle_age_seconds",
        "tally_verify_lag_events",
    ):
        assert name in families, name
    ready = httpx.get(live.base + "/health/ready").json()
    assert ready["checks"]["ledger"] == "OK"
    assert set(ready["checks"].values()) <= {"OK", "WARNING", "CRITICAL", "UNKNOWN"}
    assert "summary" not in json.dumps(ready)  # details need a token: /v1/health
    assert httpx.get(live.base + "/openapi.json").json()["info"]["title"] == "Tally"


def test_a_revoked_token_is_refused_and_no_token_is_ever_written(live: Live) -> None:
    token = issue_token(live.folder, "read", "--name", "short-lived")
    with live.client(token) as client:
        assert client.get("/v1/runs").status_code == 200
        assert tally("token", "revoke", "short-lived", cwd=live.folder).returncode == 0
        assert client.get("/v1/runs").status_code == 401
    listed = json.loads(tally("token", "list", "--json", cwd=live.folder).stdout)
    assert any(t["name"] == "short-lived" and t["revoked_at"] for t in listed)
    again = tally("token", "revoke", "short-lived", cwd=live.folder)
    assert again.returncode == 2 and "revoked already" in again.stderr
    for secret in (token, live.read, live.append, live.admin):
        for path in live.folder.iterdir():
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_serving_beyond_loopback_needs_tls_or_an_explicit_flag(tmp_path: Path) -> None:
    assert tally("init", cwd=tmp_path).returncode == 0
    refused = tally("serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert refused.returncode == 2 and "--insecure-bind" in refused.stderr
    half = tally("serve", "--tls-cert", "cert.pem", cwd=tmp_path)
    assert half.returncode == 2 and "go together" in half.stderr


def test_health_exits_as_nagios_expects(tmp_path: Path) -> None:
    assert tally("init", cwd=tmp_path).returncode == 0
    ok = tally("health", "--json", cwd=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "OK"
    (tmp_path / "strict.yaml").write_text(
        "health:\n  verify_lag_events: {warning: 0, critical: 5}\n"
        "  spool_bytes: {warning: 1, critical: 2}\n"
    )
    warned = tally("--config", "strict.yaml", "health", cwd=tmp_path)
    assert warned.returncode == 1 and warned.stdout.startswith("TALLY WARNING")
    assert "verify_lag" in warned.stdout
    spool = tmp_path / "tally-spool"
    spool.mkdir()
    (spool / "run-x.spool").write_bytes(b"x" * 10)
    critical = tally("--config", "strict.yaml", "health", "--json", cwd=tmp_path)
    report = json.loads(critical.stdout)
    assert critical.returncode == 2 and report["status"] == "CRITICAL"
    assert {c["name"]: c["status"] for c in report["checks"]}["spool"] == "CRITICAL"


def test_monitor_reads_the_ledger_or_the_service_and_exports_json_and_csv(live: Live) -> None:
    import csv

    once = tally("--config", "small.yaml", "monitor", "--once", cwd=live.folder)
    assert once.returncode == 0, once.stderr
    for section in ("Errors by class", "Last errors", "Breakers", "Stale prices", "Health"):
        assert section in once.stdout
    exported = tally("--config", "small.yaml", "monitor", "--export", "m.json", cwd=live.folder)
    assert exported.returncode == 0 and "m.json" in exported.stdout
    local = json.loads((live.folder / "m.json").read_text())
    with live.client(live.read) as client:
        remote_api = client.get("/v1/monitor").json()
    remote = tally(
        "monitor", "--url", live.base, "--export", "r.json", cwd=live.folder,
        env={"TALLY_TOKEN": live.read},
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    by_url = json.loads((live.folder / "r.json").read_text())
    for report in (remote_api, by_url):
        assert report.keys() == local.keys()
        assert report["errors"]["by_class"] == local["errors"]["by_class"]
        assert report["breakers"] == local["breakers"] and report["orders"] == local["orders"]
    assert local["errors"]["total"] > 0 and local["stale"]["marks"] >= 0
    assert tally("monitor", "--export", "m.csv", cwd=live.folder).returncode == 0
    with (live.folder / "m.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    totals = {
        r["key"]: int(r["value"])
        for r in rows
        if r["section"] == "errors_by_class" and r["metric"] == "total"
    }
    assert totals == local["errors"]["by_class"]
    refused = tally("monitor", "--url", live.base, "--once", cwd=live.folder,
                    env={"TALLY_TOKEN": "tally_wrong"})  # fmt: skip
    assert refused.returncode == 2 and "401" in refused.stderr
    assert "tally_wrong" not in refused.stderr


def test_serve_reloads_its_configuration_when_the_file_changes_or_on_sighup(
    tmp_path: Path,
) -> None:
    import signal

    assert tally("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "serve.yaml"
    config.write_text("service:\n  append_events_max: 50\n")
    token = issue_token(tmp_path, "admin")
    body = {"events": [deposit("1")] * 20}

    with serving(tmp_path, "--config", "serve.yaml") as base:
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        assert client.post("/v1/streams/r/events", json=body).status_code == 201
        config.write_text("service:\n  append_events_max: 10\n")  # the watcher sees it
        changed = stream_events(client, "tally/config", 1)[0]
        assert changed["type"] == "ConfigChanged"
        assert changed["data"]["changed"] == ["service.append_events_max"]
        assert client.post("/v1/streams/r/events", json=body).status_code == 413  # applied
        log = (tmp_path / "serve.log").read_text().splitlines()
        started = next(line for line in log if "Started server process" in line)
        pid = int(started.rsplit("[", 1)[1].rstrip("]"))
        # Written where the watcher may or may not look in time: SIGHUP asks for a look.
        config.write_text("service:\n  append_events_max: -1\n  port: 1\n")
        os.kill(pid, signal.SIGHUP)
        rejected = stream_events(client, "tally/config", 2)[1]
        assert rejected["type"] == "ConfigRejected"
        assert [e.split(":")[0] for e in rejected["data"]["errors"]] == [
            "service.append_events_max"
        ]
        small = {"events": [deposit("1")] * 5}
        assert client.post("/v1/streams/r/events", json=small).status_code == 201
        assert client.post("/v1/streams/r/events", json=body).status_code == 413  # unchanged
        client.close()


def test_serve_raises_and_resolves_the_wall_clock_alerts(tmp_path: Path) -> None:
    assert tally("init", cwd=tmp_path).returncode == 0
    (tmp_path / "serve.yaml").write_text(
        "service: {alert_check_s: 0.1}\n"
        "run:\n  alerts:\n    rules: [{name: spool, kind: spool_not_empty, cooldown_s: 0}]\n"
    )
    token = issue_token(tmp_path, "read")
    spool = tmp_path / "tally-spool"
    spool.mkdir()

    with (
        serving(tmp_path, "--config", "serve.yaml") as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        (spool / "run-x.spool").write_bytes(b"x" * 100)
        raised = stream_events(client, "alerts/service", 1)[0]
        assert raised["type"] == "AlertRaised" and raised["data"]["key"] == "run-x.spool"
        firing = client.get("/v1/alerts").json()["firing"]
        assert [a["rule"] for a in firing] == ["spool"]
        (spool / "run-x.spool").unlink()
        resolved = stream_events(client, "alerts/service", 2)[1]
        assert (
            resolved["type"] == "AlertResolved" and client.get("/v1/alerts").json()["firing"] == []
        )
    assert "ALERT_RAISED rule=spool" in (tmp_path / "serve.log").read_text()
