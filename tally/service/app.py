"""The HTTP API: FastAPI over one opened ledger.

Endpoints are plain functions (FastAPI runs them in its thread pool), because the store is
synchronous; the subscription is the one asynchronous endpoint, reading the ledger in worker
threads between waits. Appends through this process are serialized by one lock, so its
threads never spin on SQLite's write lock; other processes still append in between, and
positions stay gapless either way (the store allocates them under the ledger's own lock).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

import anyio
import msgspec
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.events import EVENT_TYPES
from ledger.market import NAME_PATTERN
from ledger.store import EventStore
from tally import __version__
from tally.reload import ConfigReloader
from tally.service import problems, schemas
from tally.service.appending import SERVICE_ONLY, read_append
from tally.service.metrics import ServiceMetrics
from tally.service.problems import ServiceProblem
from tally.service.tokens import Scope, TokenBook, TokenInfo, allows
from tally.service.watch import HeadSignal, LedgerWatch
from tally.settings import Settings
from tally.views import event_view

ACCOUNT = "^" + NAME_PATTERN.pattern + "$"
SUBSCRIBE_PAGE = 500
LOGGER = logging.getLogger("tally.alerts")  # events read per catch-up step of a subscription
_json = msgspec.json.Encoder(decimal_format="string")
BEARER = HTTPBearer(auto_error=False, description="a token from `tally token create`")


@dataclass(frozen=True)
class Guard:
    """The token checks, as dependencies: one per scope."""

    read: Any
    append: Any
    admin: Any


@dataclass
class Service:
    store: EventStore
    settings: Settings
    tokens: TokenBook
    watch: LedgerWatch
    signal: HeadSignal
    metrics: ServiceMetrics
    append_lock: threading.Lock


def json_response(value: Any, status: int = 200, **headers: str) -> Response:
    return Response(
        _json.encode(value), status_code=status, media_type="application/json", headers=headers
    )


def not_found(what: str, hint: str, **where: Any) -> ServiceProblem:
    return ServiceProblem(404, what, hint=hint, **where)


def needs_scope(service: Service, scope: Scope) -> Callable[..., TokenInfo]:
    """A dependency: the request's token, checked to hold ``scope`` (401 or 403 otherwise)."""

    # Dependencies as default values: annotations are strings here (PEP 563), and FastAPI
    # resolves them in the module's globals, where a closure's locals are not.
    def authorized(
        credentials: HTTPAuthorizationCredentials | None = Depends(BEARER),  # noqa: B008
    ) -> TokenInfo:
        if credentials is None or not credentials.credentials:
            raise ServiceProblem(
                401,
                "no token",
                hint="send Authorization: Bearer TOKEN (`tally token create` issues one)",
            )
        info = service.tokens.check(credentials.credentials)
        if info is None:
            raise ServiceProblem(
                401, "unknown or revoked token", hint="`tally token list` shows the tokens"
            )
        if not allows(info.scope, scope):
            raise ServiceProblem(
                403,
                f"token {info.name!r} has scope {info.scope}; this needs {scope}",
                hint=f"use a token with scope {scope} or above",
                token=info.name,
            )
        return info

    return authorized


def create_app(
    store: EventStore, settings: Settings, reloader: ConfigReloader | None = None
) -> FastAPI:
    """The service over ``store`` (opened by the caller, who closes it after); with
    ``reloader``, a changed configuration file applies to the next request."""
    watch = LedgerWatch(store)
    service = Service(
        store=store,
        settings=settings,
        tokens=TokenBook(store),
        watch=watch,
        signal=HeadSignal(),
        metrics=ServiceMetrics(store, watch, settings.runner.spool_dir),
        append_lock=threading.Lock(),
    )

    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        service.signal.bind(asyncio.get_running_loop())
        tasks = [asyncio.create_task(_alerting(service))]
        if reloader is not None:
            tasks.append(asyncio.create_task(_reloading(service, reloader)))
        yield
        for task in tasks:
            task.cancel()

    from contextlib import asynccontextmanager

    app = FastAPI(
        title="Tally",
        version=__version__,
        description="An event-sourced, hash-chained ledger for trading systems. Every /v1 "
        "request needs `Authorization: Bearer TOKEN` (`tally token create`).",
        lifespan=asynccontextmanager(lifespan),
    )
    app.state.service = service
    problems.install(app)
    schemas.document_problems(app)

    guard = Guard(*(Depends(needs_scope(service, scope)) for scope in ("read", "append", "admin")))
    _event_routes(app, service, guard)
    _view_routes(app, service, guard)
    _health_routes(app, service, guard)
    return app


def _event_routes(app: FastAPI, service: Service, guard: Guard) -> None:
    """Append, read and subscribe."""
    store = service.store
    read, append = guard.read, guard.append
    # Settings are read per request: a reloaded configuration applies to the next one.
    append_body = _body_of(lambda: service.settings.service.body_bytes_max)
    # --- writing ---------------------------------------------------------------------------

    @app.post(
        "/v1/streams/{stream:path}/events",
        status_code=201,
        tags=["events"],
        summary="Append events to a stream, atomically",
        dependencies=[append],
        openapi_extra={"requestBody": schemas.append_request_body(SERVICE_ONLY)},
        responses={
            201: {"model": schemas.Appended},
            409: {
                "model": schemas.Problem,
                "description": "stale expected_version, or a key reused",
            },
            413: {"model": schemas.Problem, "description": "over a size limit"},
            503: {"model": schemas.Problem, "description": "the ledger is unavailable"},
        },
    )
    def append_events(
        stream: Annotated[str, Path(pattern=schemas.STREAM_PATTERN.pattern)],
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=200)
        ] = None,
        request_body: bytes = Depends(append_body),
    ) -> Response:
        schemas.check_stream(stream)
        batch, expected = read_append(
            stream, request_body, service.settings.service.append_events_max
        )
        started = time.perf_counter()
        with service.append_lock:
            head_before = store.head()
            positions = store.append(
                stream, batch, expected_version=expected, idempotency_key=idempotency_key
            )
        service.metrics.append_seconds.observe(time.perf_counter() - started)
        replayed = positions[-1] <= head_before
        if not replayed:
            service.signal.notify()
            for kind, count in Counter(type(event).__name__ for event in batch).items():
                service.metrics.appended.labels(kind).inc(count)
        last = next(iter(store.query(from_position=positions[-1], to_position=positions[-1])))
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return json_response({"positions": positions, "version": last.version}, 201, **headers)

    # --- reading ---------------------------------------------------------------------------

    @app.get(
        "/v1/events",
        tags=["events"],
        summary="Events in position order (from_position inclusive)",
        dependencies=[read],
        responses={200: {"model": schemas.EventsPage}},
    )
    def list_events(
        from_position: Annotated[int, Query(ge=1)] = 1,
        limit: Annotated[int, Query(ge=1)] = 100,
        stream: Annotated[str | None, Query(max_length=200)] = None,
        type: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        types = type or []
        for name in types:
            if name not in EVENT_TYPES:
                raise ServiceProblem(
                    422,
                    f"unknown event type {name!r}",
                    hint="the event types are listed in /openapi.json",
                    field="type",
                )
        limit = min(limit, service.settings.service.read_limit_max)
        head = store.head()  # the page ends here, so an event appended meanwhile is not skipped
        found = [
            event_view(r)
            for r in store.query(
                stream=stream,
                types=types,
                from_position=from_position,
                to_position=head,
                limit=limit,
            )
        ]
        # A short page scanned everything up to the head.
        upto = found[-1]["position"] + 1 if len(found) == limit else max(from_position, head + 1)
        return json_response({"events": found, "next_position": upto})

    @app.get(
        "/v1/subscribe",
        tags=["events"],
        summary="Server-Sent Events: every event from from_position, then live",
        dependencies=[read],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def subscribe(
        request: Request,
        from_position: Annotated[int, Query(ge=1)] = 1,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,18}$")
        ] = None,
    ) -> StreamingResponse:
        start = from_position
        if last_event_id:
            if not last_event_id.isdigit():
                raise ServiceProblem(
                    422,
                    f"Last-Event-ID must be a position, got {last_event_id[:40]!r}",
                    hint="send the id of the last event received",
                    field="Last-Event-ID",
                )
            start = int(last_event_id) + 1
        return StreamingResponse(
            _follow(service, request, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _view_routes(app: FastAPI, service: Service, guard: Guard) -> None:
    """The views the CLI gives: runs, books, equity, reconciliation, errors, breakers."""
    store = service.store
    read = guard.read

    @app.get(
        "/v1/runs",
        tags=["views"],
        summary="Every run, with state and progress",
        dependencies=[read],
    )
    def runs() -> Response:
        from tally.views import runs_rows

        return json_response({"runs": runs_rows(store)})

    @app.get("/v1/runs/{run}", tags=["views"], summary="One run", dependencies=[read])
    def run(run: Annotated[str, Path(max_length=100)]) -> Response:
        from tally.views import runs_rows

        for row in runs_rows(store):
            if row["run_id"] == run:
                return json_response(row)
        raise not_found(f"no run {run!r} in this ledger", "GET /v1/runs lists them", run=run)

    @app.get(
        "/v1/accounts/{account}/portfolio",
        tags=["views"],
        summary="The books as of a position (to=) or a recording time (at=), else now",
        dependencies=[read],
    )
    def portfolio(
        account: Annotated[str, Path(pattern=ACCOUNT)],
        at: Annotated[datetime | None, Query()] = None,
        to: Annotated[int | None, Query(ge=1)] = None,
    ) -> Response:
        from projections.replay import replay

        _check_account(account)
        if at is not None and to is not None:
            raise ServiceProblem(422, "give at= or to=, not both", hint="", field="at")
        position = store.head()
        if to is not None:
            position = min(to, position)
        elif at is not None:
            moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            position = store.position_at(moment)
        view = replay(store, account=account, position=position)
        out = view.as_dict()
        if view.books.quote is None and not out["cash"] and not out["positions"]:
            raise not_found(
                f"account {account!r} has no money events up to position {position:,}",
                "check the account's name (GET /v1/runs shows each run's account)",
                account=account,
            )
        return json_response(out)

    @app.get(
        "/v1/accounts/{account}/equity",
        tags=["views"],
        summary="Equity per time step, as JSON or CSV",
        dependencies=[read],
        responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
    )
    def equity(
        account: Annotated[str, Path(pattern=ACCOUNT)],
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
        run: Annotated[str | None, Query(max_length=100)] = None,
    ) -> Response:
        from projections import reports

        _check_account(account)
        series = reports.load_series(store, account, run_id=run)
        if not series.rows:
            raise not_found(
                f"no equity to report for account {account!r}",
                "the account needs money events and prices (GET /v1/runs lists the runs)",
                account=account,
            )
        if format == "csv":
            return Response(reports.to_csv(series), media_type="text/csv")
        return json_response(
            {"account": account, "quote": series.quote, "rows": reports.to_json(series)}
        )

    @app.get(
        "/v1/accounts/{account}/reconcile",
        tags=["views"],
        summary="The books against the latest venue balances",
        dependencies=[read],
    )
    def reconcile(account: Annotated[str, Path(pattern=ACCOUNT)]) -> Response:
        from ledger.errors import InputError
        from projections.reconciliation import reconcile_with_venue
        from projections.validator import ValidatorSettings
        from tally.views import reconciliation_dict

        _check_account(account)
        try:
            report = reconcile_with_venue(store, account, settings=ValidatorSettings())
        except InputError as e:
            raise not_found(e.message, e.hint, account=account) from e
        return json_response(reconciliation_dict(report))

    @app.get(
        "/v1/errors",
        tags=["views"],
        summary="Errors by class, source and symbol, with rates",
        dependencies=[read],
    )
    def errors() -> Response:
        state = service.watch.refresh()
        return json_response(state.errors_dict(datetime.now(UTC)))

    @app.get(
        "/v1/breakers",
        tags=["views"],
        summary="Every breaker's state and counts",
        dependencies=[read],
    )
    def breakers() -> Response:
        return json_response({"breakers": service.watch.refresh().breakers_dict()})

    @app.get(
        "/v1/monitor",
        tags=["views"],
        summary="The monitor's report: errors, breakers, stale prices, orders, alerts, health",
        dependencies=[read],
    )
    def monitor() -> Response:
        from tally.monitor_report import build_report

        state = service.watch.refresh()
        return json_response(build_report(store, service.settings, state, datetime.now(UTC)))

    @app.get("/v1/alerts", tags=["views"], summary="Alerts firing now", dependencies=[read])
    def alerts() -> Response:
        state = service.watch.refresh()
        return json_response(
            {"firing": [state.alerts_firing[k] for k in sorted(state.alerts_firing)]}
        )


def _health_routes(app: FastAPI, service: Service, guard: Guard) -> None:
    """Health, metrics and the dashboard (no token, unless metrics ask for one)."""
    store = service.store
    read, admin = guard.read, guard.admin
    verify_body = _body_of(lambda: 4096)

    @app.get(
        "/v1/health", tags=["health"], summary="Every check with its value", dependencies=[read]
    )
    def health_detail() -> Response:
        from tally.service.health import run_checks, worst

        results = run_checks(store, service.settings, service.watch.refresh())
        return json_response({"status": worst(results), "checks": [r.as_dict() for r in results]})

    @app.post(
        "/v1/verify",
        tags=["ledger"],
        summary="Verify the chain from the last verified position, or whole with full",
        dependencies=[admin],
        openapi_extra={"requestBody": schemas.VERIFY_BODY},
        responses={409: {"model": schemas.Problem, "description": "the chain is broken"}},
    )
    def verify(request_body: bytes = Depends(verify_body)) -> Response:
        from tally.verification import verify as verify_chain

        full = schemas.read_verify(request_body)
        return json_response(verify_chain(store, full=full))

    @app.get("/health/live", tags=["health"], summary="The process answers")
    def live() -> Response:
        return json_response({"status": "OK"})

    @app.get(
        "/health/ready",
        tags=["health"],
        summary="The ledger answers and no check is CRITICAL (names and statuses only)",
        responses={503: {"description": "a check is CRITICAL or UNKNOWN"}},
    )
    def ready() -> Response:
        from tally.service.health import run_checks, worst

        results = run_checks(store, service.settings, service.watch.refresh())
        status = worst(results)
        body = {"status": status, "checks": {r.name: r.status for r in results}}
        return json_response(body, 503 if status in ("CRITICAL", "UNKNOWN") else 200)

    reader = needs_scope(service, "read")

    def metrics_auth(
        credentials: HTTPAuthorizationCredentials | None = Depends(BEARER),  # noqa: B008
    ) -> None:
        if service.settings.service.metrics_token_required:
            reader(credentials)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        dependencies=[Depends(metrics_auth)],
        responses={200: {"content": {"text/plain": {}}}},
    )
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ("dashboard.js", "dashboard.css"):
            raise not_found(f"no file {name!r}", "")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(_static(name), media_type=kind)


def _static(name: str) -> str:
    return resources.files("tally.service").joinpath("static", name).read_text("utf-8")


def _check_account(account: str) -> None:
    from ledger.market import NAME_PATTERN, NAME_RULE

    if not NAME_PATTERN.fullmatch(account):
        raise ServiceProblem(
            422, f"account {account[:60]!r} is not a valid name", hint=NAME_RULE, field="account"
        )


def _body_of(limit_of: Callable[[], int]) -> Callable[..., Any]:
    """A dependency reading the request's body, refusing (413) more than ``limit_of()``
    bytes."""

    async def body(request: Request) -> bytes:
        limit = limit_of()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_big(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_big(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    return body


def _too_big(limit: int) -> ServiceProblem:
    return ServiceProblem(
        413,
        f"the request body is over {limit:,} bytes",
        hint="split the append (service.body_bytes_max sets the limit)",
        limit=limit,
    )


CONFIG_STREAM = "tally/config"  # the service's configuration changes and rejections


async def _reloading(service: Service, reloader: ConfigReloader) -> None:
    """Look at the configuration file a few times a second; apply and record what changed."""
    import asyncio

    while True:
        found = await anyio.to_thread.run_sync(reloader.poll)
        if found is not None:
            record = functools.partial(
                service.store.append, CONFIG_STREAM, [found.event], expected_version=None
            )
            await anyio.to_thread.run_sync(record)
            service.signal.notify()
            if found.settings is not None:
                service.settings = found.settings
        await asyncio.sleep(0.25)


async def _alerting(service: Service) -> None:
    """Every few seconds: the wall-clock alert rules (a stalled run, a spool in use)."""
    import asyncio

    from ingest.logs import log_committed
    from tally.run.notify import Notifier, alert_body
    from tally.service.alerting import STREAM, evaluate, service_engine
    from tally.views import runs_rows

    engine, rules, notifier = None, None, None
    try:
        while True:
            if service.settings.run.alerts.rules != rules:  # (a reloaded configuration)
                rules = service.settings.run.alerts.rules
                engine = await anyio.to_thread.run_sync(
                    service_engine, service.store, service.settings
                )
            sinks = service.settings.runner.notify
            if notifier is not None and notifier.settings != sinks:  # reloaded sinks
                await anyio.to_thread.run_sync(notifier.close)
                notifier = None
            if notifier is None and (sinks.webhook_url or sinks.command):
                notifier = Notifier(sinks, service.store)
            if engine is not None:
                state = await anyio.to_thread.run_sync(service.watch.refresh)
                running = await anyio.to_thread.run_sync(runs_rows, service.store)
                due = evaluate(engine, service.settings, state, running)
                if due:
                    record = functools.partial(
                        service.store.append, STREAM, due, expected_version=None
                    )
                    positions = await anyio.to_thread.run_sync(record)
                    log_committed(zip(due, positions, strict=True), LOGGER)
                    service.signal.notify()
                    if notifier is not None:
                        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                        for alert in due:
                            notifier.send(alert_body("", alert, at))
            await asyncio.sleep(service.settings.service.alert_check_s)
    finally:
        if notifier is not None:  # the service stops: what is queued gets a moment to go
            notifier.close(2.0)


async def _follow(service: Service, request: Request, start: int) -> AsyncIterator[bytes]:
    """Catch up from ``start``, then follow: each event once, in position order."""
    store = service.store
    poll_s = service.settings.service.subscribe_poll_ms / 1000
    next_position = start
    idle_since = time.monotonic()

    def page(first: int) -> list[tuple[int, bytes]]:
        if store.head() < first:
            return []
        return [
            (r.position, _json.encode(event_view(r)))
            for r in store.read_all(first, first + SUBSCRIBE_PAGE - 1)
        ]

    yield b": subscribed\n\n"
    while True:
        found = await anyio.to_thread.run_sync(page, next_position)
        if found:
            yield b"".join(
                b"id: %d\ndata: %s\n\n" % (position, payload) for position, payload in found
            )
            next_position = found[-1][0] + 1
            idle_since = time.monotonic()
            continue
        if await request.is_disconnected():
            return
        if time.monotonic() - idle_since >= service.settings.service.subscribe_heartbeat_s:
            yield b": keep-alive\n\n"
            idle_since = time.monotonic()
        await service.signal.wait(poll_s)
