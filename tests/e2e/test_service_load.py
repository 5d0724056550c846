"""Many writers and two followers on one running service: nothing lost, doubled or reordered."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tally
from tests.support.service import issue_token, serving, sse_events

CLIENTS = 8
EVENTS = 20_000
BATCH = 100


def batch_of(client: int, index: int) -> dict[str, object]:
    return {
        "events": [
            {
                "type": "FundsDeposited",
                "data": {
                    "account": f"c{client}",
                    "asset": "USDT",
                    "amount": f"{index + 1}.{k:02d}",
                },
            }
            for k in range(BATCH)
        ]
    }


@pytest.mark.slow
def test_eight_writers_retrying_with_keys_and_two_followers_see_every_position_once(
    tmp_path: Path,
) -> None:
    assert tally("init", cwd=tmp_path).returncode == 0
    writer_token, reader_token = issue_token(tmp_path, "append"), issue_token(tmp_path, "read")
    base_head = 2  # the two TokenIssued events
    batches = EVENTS // BATCH // CLIENTS
    placed: dict[str, list[int]] = {}
    failures: list[str] = []
    seen: list[list[int]] = [[], []]
    with serving(tmp_path) as base:

        def write(client: int) -> None:
            headers = {"Authorization": f"Bearer {writer_token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
                for index in range(batches):
                    key = f"c{client}-b{index}"
                    body = batch_of(client, index)
                    first = http.post(
                        f"/v1/streams/load-{client}/events",
                        json=body,
                        headers={"Idempotency-Key": key},
                    )
                    if first.status_code != 201:
                        failures.append(f"{key}: {first.status_code} {first.text[:200]}")
                        return
                    placed[key] = first.json()["positions"]
                    if index % 3 == 0:  # the answer was "lost": the client sends it again
                        again = http.post(
                            f"/v1/streams/load-{client}/events",
                            json=body,
                            headers={"Idempotency-Key": key},
                        )
                        if again.json().get("positions") != placed[key]:
                            failures.append(f"{key}: the retry got {again.text[:200]}")

        def follow(slot: int) -> None:
            headers = {"Authorization": f"Bearer {reader_token}"}
            with (
                httpx.Client(base_url=base, headers=headers, timeout=60) as http,
                http.stream("GET", "/v1/subscribe", params={"from_position": 1}) as stream,
            ):
                for position, _ in sse_events(stream.iter_lines(), base_head + EVENTS):
                    seen[slot].append(position)

        followers = [threading.Thread(target=follow, args=(s,)) for s in range(2)]
        writers = [threading.Thread(target=write, args=(c,)) for c in range(CLIENTS)]
        for thread in (*followers, *writers):
            thread.start()
        for thread in writers:
            thread.join(timeout=120)
        assert not failures, failures[:5]  # (leaving the block stops the followers too)
        for thread in followers:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in (*writers, *followers)), "a client hung"
    assert len(placed) == CLIENTS * batches
    every = sorted(p for positions in placed.values() for p in positions)
    assert every == list(range(base_head + 1, base_head + EVENTS + 1))  # nothing doubled
    for positions in seen:
        assert positions == list(range(1, base_head + EVENTS + 1))  # once each, in order
    verified = tally("verify", "--json", cwd=tmp_path)
    assert verified.returncode == 0 and json.loads(verified.stdout)["events"] == base_head + EVENTS
    stats = json.loads(tally("stats", "--json", cwd=tmp_path).stdout)
    assert all(stats["by_stream"][f"load-{c}"] == EVENTS // CLIENTS for c in range(CLIENTS))
