"""The service's commands: `tally serve`, `tally token ...` and `tally health`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.errors import EXIT_OK, InputError
from tally.cli.table import Command, Invocation
from tally.logs import FORMATS, LEVELS

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default: service.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: service.port, 8800)")
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="...and this key")
    parser.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow plain HTTP on an address other than loopback (tokens travel in clear)",
    )
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        default="info",
        help="lowest level logged (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text or JSON lines (default: %(default)s)",
    )
    parser.add_argument("--log-file", type=Path, metavar="FILE", help="also append the lines here")


def serve(call: Invocation) -> int:
    import logging

    import uvicorn

    from tally.logs import configure as configure_logs
    from tally.service.app import create_app
    from tally.settings import load_settings

    args = call.args
    settings = load_settings(args.config)
    host = args.host or settings.service.host
    port = args.port if args.port is not None else settings.service.port
    if not 0 <= port <= 65_535:
        raise InputError(f"--port must be 0-65535, got {port}", field="port")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together", hint="pass both, or neither")
    for path in (args.tls_cert, args.tls_key):
        if path is not None and not path.is_file():
            raise InputError(f"no file at {path}", hint="pass the PEM file's path", file=str(path))
    fmt = "json" if args.json else args.log_format  # --json: every line a JSON object
    configure_logs(args.log_level, log_file=args.log_file, fmt=fmt, also=("uvicorn",))
    log = logging.getLogger("tally.service")
    if host not in LOOPBACK and not args.tls_cert:
        if not args.insecure_bind:
            raise InputError(
                f"refusing to serve plain HTTP on {host}: tokens would cross the network in clear",
                hint="serve HTTPS with --tls-cert/--tls-key, put a TLS proxy in front and "
                "bind 127.0.0.1, or pass --insecure-bind if the network is trusted",
                host=host,
            )
        log.warning("SERVE_INSECURE plain HTTP on %s: tokens cross the network in clear", host)
    reloader = None
    if args.config is not None:  # watched, and read again on SIGHUP
        import signal

        from tally.reload import FROZEN_FOR_SERVICE, ConfigReloader

        reloader = ConfigReloader(args.config, settings, FROZEN_FOR_SERVICE).start()
        signal.signal(signal.SIGHUP, lambda *_: reloader.request())
    app = create_app(call.ledger, settings, reloader)
    scheme = "https" if args.tls_cert else "http"
    log.info("SERVE_START %s://%s:%d ledger %s", scheme, host, port, call.ledger.url)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=args.log_level == "debug",
        ssl_certfile=str(args.tls_cert) if args.tls_cert else None,
        ssl_keyfile=str(args.tls_key) if args.tls_key else None,
        timeout_graceful_shutdown=int(settings.service.graceful_shutdown_s) or None,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        if reloader is not None:
            reloader.stop()
    log.info("SERVE_STOP")
    return EXIT_OK if server.started else 2


def _token_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scope",
        choices=["read", "append", "admin"],
        required=True,
        help="read: the GET endpoints; append: also POST events; admin: also POST /v1/verify",
    )
    parser.add_argument("--name", help="a name to list and revoke it by (default: SCOPE-N)")


def token_create(call: Invocation) -> int:
    from tally.service.tokens import TokenBook

    info, token = TokenBook(call.ledger).issue(call.args.scope, call.args.name)
    if call.args.json:
        print(json.dumps({"name": info.name, "scope": info.scope, "token": token}))
    else:
        print(token)
        print(
            f"token {info.name!r} (scope {info.scope}): shown once, only its sha256 is kept",
            file=sys.stderr,
        )
    return EXIT_OK


def token_list(call: Invocation) -> int:
    from tally.service.tokens import TokenBook

    tokens = TokenBook(call.ledger).all()
    if call.args.json:
        print(json.dumps([t.as_dict() for t in tokens]))
        return EXIT_OK
    if not tokens:
        print("no tokens (issue one with `tally token create --scope read`)")
    for t in tokens:
        d = t.as_dict()
        state = f"revoked {d['revoked_at']}" if t.revoked_at else "active"
        print(f"{t.name:<24} {t.scope:<7} issued {d['issued_at']}  {state}")
    return EXIT_OK


def _token_revoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")


def token_revoke(call: Invocation) -> int:
    from tally.service.tokens import TokenBook

    info = TokenBook(call.ledger).revoke(call.args.name)
    if call.args.json:
        print(json.dumps(info.as_dict()))
    else:
        print(f"token {info.name!r} revoked: it is refused from now on")
    return EXIT_OK


def health(call: Invocation) -> int:
    from tally.service.health import STATUSES, number, run_checks, worst
    from tally.service.watch import monitor_of
    from tally.settings import load_settings

    settings = load_settings(call.args.config)
    results = run_checks(call.ledger, settings, monitor_of(call.ledger))
    status = worst(results)
    if call.args.json:
        print(json.dumps({"status": status, "checks": [r.as_dict() for r in results]}))
    else:
        from tally.cli.table_text import render

        print(f"TALLY {status}")
        print(
            render(
                ["check", "status", "value", "warn / crit", "summary"],
                [[r.name, r.status, number(r.value), r.threshold, r.summary] for r in results],
            )
        )
    return STATUSES.index(status)


def _monitor_arguments(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="refresh every S seconds (2)"
    )
    when.add_argument("--once", action="store_true", help="print the report once and exit")
    parser.add_argument(
        "--export", type=Path, metavar="FILE", help="write the report to FILE.json or FILE.csv"
    )
    parser.add_argument(
        "--url",
        help="read a running service (token from $TALLY_TOKEN) instead of the ledger",
    )


def monitor(call: Invocation) -> int:
    import os

    from tally.values import write_text

    args = call.args
    if args.export is not None and args.export.suffix not in (".json", ".csv"):
        raise InputError(
            f"--export {args.export}: the file must end in .json or .csv",
            hint="pass report.json or report.csv",
            file=str(args.export),
        )
    if args.interval <= 0:
        raise InputError(f"--interval must be > 0, got {args.interval:g}", field="interval")
    if args.url:
        token = os.environ.get("TALLY_TOKEN", "")
        if not token:
            raise InputError(
                "--url needs a read token in $TALLY_TOKEN",
                hint="export TALLY_TOKEN=$(tally token create --scope read)",
            )
        fetch = _remote_report(args.url.rstrip("/"), token)
        store = None
    else:
        from ledger.store import open_store

        store = open_store(call.url, settings=call.store_settings)
        fetch = _local_report(store, args.config)
    try:
        return _monitor_loop(
            fetch,
            args.once or args.export is not None,
            args.interval,
            args.export,
            write_text,
            as_json=args.json,
        )
    finally:
        if store is not None:
            store.close()


def _local_report(store: Any, config: Path | None) -> Callable[[], dict[str, Any]]:
    from datetime import UTC, datetime

    from tally.monitor_report import build_report
    from tally.service.watch import LedgerWatch
    from tally.settings import load_settings

    settings = load_settings(config)
    watch = LedgerWatch(store)  # folds only what was appended since the last refresh
    return lambda: build_report(store, settings, watch.refresh(), datetime.now(UTC))


def _remote_report(url: str, token: str) -> Callable[[], dict[str, Any]]:
    import httpx

    from ledger.redact import register_secret

    register_secret(token)

    def fetch() -> dict[str, Any]:
        try:
            answer = httpx.get(
                f"{url}/v1/monitor", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
        except httpx.HTTPError as e:
            raise InputError(
                f"cannot reach {url}: {type(e).__name__}",
                hint="check --url and that `tally serve` runs there",
                url=url,
            ) from e
        if answer.status_code != 200:
            detail = answer.json().get("detail", answer.text[:200]) if answer.content else ""
            raise InputError(
                f"{url} answered {answer.status_code}: {detail}",
                hint="check $TALLY_TOKEN (a read token of that ledger)",
                url=url,
            )
        report: dict[str, Any] = answer.json()
        return report

    return fetch


def _monitor_loop(
    fetch: Callable[[], dict[str, Any]],
    once: bool,
    interval: float,
    export: Path | None,
    write_text: Callable[[Path, str], None],
    as_json: bool = False,
) -> int:
    import time

    from rich.console import Console
    from rich.live import Live

    from tally.monitor_report import render, to_csv

    report = fetch()
    if as_json:  # one report, as JSON, for scripts
        print(json.dumps(report))
        return EXIT_OK
    if export is not None:
        text = to_csv(report) if export.suffix == ".csv" else json.dumps(report, indent=2) + "\n"
        write_text(export, text)
        print(f"monitor report written to {export}")
    if once:
        if export is None:
            Console(highlight=False).print(render(report))
        return EXIT_OK
    try:
        with Live(render(report), refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(render(fetch()))
    except KeyboardInterrupt:
        return EXIT_OK


COMMANDS = [
    Command(
        "serve",
        "serve the HTTP API, the dashboard and /metrics",
        serve,
        _serve_arguments,
    ),
    Command(
        "token create", "issue an API token (printed once)", token_create, _token_create_arguments
    ),
    Command("token list", "the tokens issued, active and revoked", token_list),
    Command("token revoke", "revoke a token by name", token_revoke, _token_revoke_arguments),
    Command("health", "the health checks; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN", health),
    Command(
        "monitor",
        "errors, breakers, stale prices, orders, alerts and health, refreshing",
        monitor,
        _monitor_arguments,
        opens_store=False,
    ),
]
