"""Recorded exchanges: real ccxt code over recorded HTTP responses, with no network.

- ``offline_exchange``: an async ccxt exchange whose transport returns a recorded body
  (ccxt's own offline-test recipe): request building, signing and parsing run unchanged.
- ``RecordedExchangeServer``: serves the recorded bodies over HTTP on 127.0.0.1, behind a
  fault plan (latency, HTTP 429/418/503/504/401, dropped connections, malformed bodies), to a
  ccxt exchange whose URLs point at it: ccxt's real HTTP stack, error mapping and parsing.

Fixtures are the files in ``../shared/data/ccxt/<exchange>/`` (see its README).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt.async_support as ccxt_async
from aiohttp import web

# Query keys that change on every signed request; ignored when matching a request.
VOLATILE_QUERY_KEYS = frozenset({"timestamp", "signature", "recvWindow", "nonce"})
DUMMY_CREDENTIALS = {"apiKey": "key", "secret": "c2VjcmV0", "password": "pw", "uid": "uid"}


def load_fixture(data_dir: Path, exchange_id: str) -> dict[str, Any]:
    """Return the recorded responses of one exchange."""
    return dict(json.loads((data_dir / exchange_id / "response.json").read_text()))


def fixture_cases(data_dir: Path, exchange_id: str, method: str) -> list[dict[str, Any]]:
    return list(load_fixture(data_dir, exchange_id)["methods"].get(method, []))


def build_exchange(data_dir: Path, exchange_id: str, **config: Any) -> Any:
    """An async ccxt exchange with the recorded markets loaded and dummy credentials."""
    folder = data_dir / exchange_id
    markets = json.loads((folder / "markets.json").read_text())
    currencies_file = folder / "currencies.json"
    currencies = json.loads(currencies_file.read_text()) if currencies_file.exists() else None
    exchange = getattr(ccxt_async, exchange_id)({"enableRateLimit": False, **config})
    exchange.set_markets(markets, currencies)
    for key, value in DUMMY_CREDENTIALS.items():
        setattr(exchange, key, value)
    _deep_merge(exchange.options, load_fixture(data_dir, exchange_id).get("options") or {})
    return exchange


def offline_exchange(data_dir: Path, exchange_id: str, case: dict[str, Any]) -> Any:
    """An exchange whose one HTTP call returns ``case``'s recorded body."""
    exchange = build_exchange(data_dir, exchange_id)
    _deep_merge(exchange.options, case.get("options") or {})

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        return case["httpResponse"]

    exchange.fetch = fetch
    return exchange


def _deep_merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


# --- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What the server does instead of (or before) answering one request."""

    kind: str  # "status" | "drop" | "malformed" | "delay"
    status: int = 0
    delay_s: float = 0.0
    retry_after_s: float | None = None

    @classmethod
    def http(cls, status: int, retry_after_s: float | None = None) -> Fault:
        return cls("status", status=status, retry_after_s=retry_after_s)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", delay_s=seconds)


@dataclass
class FaultPlan:
    """Faults for the next requests, in order; requests beyond the plan are answered."""

    faults: deque[Fault] = field(default_factory=deque)

    def then(self, *faults: Fault) -> FaultPlan:
        self.faults.extend(faults)
        return self

    def next(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None


@dataclass
class _Route:
    query: dict[str, str]
    body: Any


class RecordedExchangeServer:
    """Serve recorded responses on 127.0.0.1 to ccxt exchanges pointed at it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.plan = FaultPlan()
        self.requests: list[str] = []
        self._routes: dict[tuple[str, str], list[_Route]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def learn(self, exchange_id: str, method: str, case: dict[str, Any]) -> None:
        """Replay ``case`` offline once to learn which URL it requests; serve it from then on."""
        exchange = build_exchange(self.data_dir, exchange_id)
        _deep_merge(exchange.options, case.get("options") or {})
        seen: list[tuple[str, str]] = []

        async def capture(
            url: str, verb: str = "GET", headers: Any = None, body: Any = None
        ) -> Any:
            seen.append((verb.upper(), url))
            return case["httpResponse"]

        exchange.fetch = capture
        try:
            await getattr(exchange, snake_method(method))(*case["input"])
        finally:
            await exchange.close()
        for verb, url in seen:
            key, query = _route_key(verb, url)
            self._routes.setdefault(key, []).append(_Route(query, case["httpResponse"]))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def exchange(self, exchange_id: str, **config: Any) -> Any:
        """A ccxt exchange with the recorded markets whose API URLs point at this server."""
        exchange = build_exchange(self.data_dir, exchange_id, **config)
        exchange.urls["api"] = _rewrite(exchange.urls["api"], f"http://127.0.0.1:{self.port}")
        return exchange

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = request.path_qs.lstrip("/")
        self.requests.append(target)
        fault = self.plan.next()
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.kind == "status":
                headers = {}
                if fault.retry_after_s is not None:
                    headers["Retry-After"] = f"{fault.retry_after_s:g}"
                return web.json_response(
                    {"code": fault.status, "msg": "injected fault"},
                    status=fault.status,
                    headers=headers,
                )
            if fault.kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=204)
            if fault.kind == "malformed":
                return web.Response(text='{"symbol": "BTC', content_type="application/json")
        key, query = _route_key(request.method, "https://" + target)
        routes = self._routes.get(key)
        if not routes:
            return web.json_response({"msg": f"no recording for {key}"}, status=404)
        match = next((r for r in routes if r.query == query), routes[0])
        return web.json_response(match.body)


def _route_key(method: str, url: str) -> tuple[tuple[str, str], dict[str, str]]:
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qsl(parts.query) if k not in VOLATILE_QUERY_KEYS}
    return (method.upper(), parts.netloc + parts.path), query


def _rewrite(urls: Any, base: str) -> Any:
    """Point every https://host/... at base/host/... (the server routes by the old host)."""
    if isinstance(urls, dict):
        return {key: _rewrite(value, base) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith(("https://", "http://")):
        return f"{base}/{urls.split('://', 1)[1]}"
    return urls


def snake_method(method: str) -> str:
    """``fetchOHLCV`` -> ``fetch_ohlcv``."""
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in method)
    return out.replace("o_h_l_c_v", "ohlcv")
