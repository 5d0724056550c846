"""`tally serve` as a real process on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent / "tally"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command() -> list[str]:
    return [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tally.cli"]


def issue_token(folder: Path, scope: str, *extra: str) -> str:
    out = subprocess.run(
        [*command(), "token", "create", "--scope", scope, "--json", *extra],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        env=_environment(),
    )
    return str(json.loads(out.stdout)["token"])


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TALLY_DB"}


@contextmanager
def serving(folder: Path, *args: str, log: Path | None = None) -> Iterator[str]:
    """Run `tally serve` in ``folder`` until the block ends; yield its base URL."""
    port = free_port()
    out = (log or folder / "serve.log").open("ab")
    process = subprocess.Popen(
        [*command(), "serve", "--port", str(port), *args],
        cwd=folder,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=_environment(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tally serve exited {process.returncode}")
            try:
                if httpx.get(base + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tally serve did not answer within 30 s")
            time.sleep(0.05)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()


def sse_events(lines: Iterator[str], count: int) -> list[tuple[int, dict[str, object]]]:
    """Read ``count`` events, (id, data), from a text/event-stream's lines."""
    found: list[tuple[int, dict[str, object]]] = []
    ident: int | None = None
    for line in lines:
        if line.startswith("id: "):
            ident = int(line[4:])
        elif line.startswith("data: "):
            assert ident is not None
            found.append((ident, json.loads(line[6:])))
            if len(found) == count:
                return found
    return found
