"""Where alerts go besides the ledger and the log: a webhook and a command.

Delivery runs on its own thread from a queue, so a slow or failing sink never holds a cycle
back. A webhook gets the alert as JSON (POST), retried with doubling waits; a command gets
the same JSON on its standard input. A delivery that fails after its retries is recorded as
``AlertDeliveryFailed`` in the stream ``alerts/deliveries``, through a connection of its own
(never inside a run's transaction, and outside any run: deliveries are not part of what a
run reproduces).
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ledger import events
from ledger.config import StrictModel
from ledger.redact import redact

if TYPE_CHECKING:
    from ledger.store import EventStore

LOGGER = logging.getLogger("tally.alerts")
DELIVERIES_STREAM = "alerts/deliveries"


class NotifySettings(StrictModel):
    """The `notify:` section: where alerts are sent (none by default; the log always)."""

    webhook_url: str | None = Field(None, pattern=r"^https?://")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120)
    webhook_retries: int = Field(3, ge=0, le=20)
    webhook_backoff_s: float = Field(0.5, ge=0, le=60)
    command: list[str] = Field(default_factory=list)  # argv; the alert as JSON on stdin
    command_timeout_s: float = Field(10.0, gt=0, le=600)


def alert_body(run_id: str, event: events.Event, at: str) -> dict[str, Any]:
    assert isinstance(event, events.AlertRaised | events.AlertResolved)
    return {
        "status": "firing" if isinstance(event, events.AlertRaised) else "resolved",
        "rule": event.rule,
        "key": event.key,
        "severity": getattr(event, "severity", None),
        "message": event.message,
        "run_id": run_id,
        "at": at,
    }


class Notifier:
    """Sends alerts to the configured sinks on a background thread."""

    def __init__(self, settings: NotifySettings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._deliver_all, name="tally-notify", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return bool(self.settings.webhook_url or self.settings.command)

    def send(self, body: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(body)
        except queue.Full:  # a sink that stopped answering long ago: drop, say so
            LOGGER.error("ALERT_DROPPED rule=%s: the delivery queue is full", body["rule"])

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _deliver_all(self) -> None:
        while (body := self._queue.get()) is not None:
            if self.settings.webhook_url:
                self._deliver(body, "webhook", self._post)
            if self.settings.command:
                self._deliver(body, "command", self._run)

    def _deliver(self, body: dict[str, Any], sink: str, send: Any) -> None:
        attempts = 1 + (self.settings.webhook_retries if sink == "webhook" else 0)
        wait = self.settings.webhook_backoff_s
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                send(body)
                return
            except Exception as e:
                error = redact(f"{type(e).__name__}: {e}")[:300]
                if attempt < attempts:
                    time.sleep(wait)
                    wait *= 2
        LOGGER.error(
            "ALERT_DELIVERY_FAILED rule=%s sink=%s attempts=%d error=%s",
            body["rule"], sink, attempts, error,
        )  # fmt: skip
        self._record_failure(body, sink, attempts, error)

    def _post(self, body: dict[str, Any]) -> None:
        import httpx

        assert self.settings.webhook_url is not None
        answer = httpx.post(
            self.settings.webhook_url, json=body, timeout=self.settings.webhook_timeout_s
        )
        answer.raise_for_status()

    def _run(self, body: dict[str, Any]) -> None:
        subprocess.run(
            self.settings.command,
            input=json.dumps(body),
            text=True,
            capture_output=True,
            timeout=self.settings.command_timeout_s,
            check=True,
        )

    def _record_failure(self, body: dict[str, Any], sink: str, attempts: int, error: str) -> None:
        from ledger.errors import TallyError

        try:
            self.store.append(  # this thread's own transaction, never a run's unit of work
                DELIVERIES_STREAM,
                [
                    events.AlertDeliveryFailed(
                        rule=body["rule"], key=body["key"], sink=sink, attempts=attempts,
                        error=error,
                    )
                ],
                expected_version=None,
            )  # fmt: skip
        except TallyError as e:
            LOGGER.error("ALERT_DELIVERY_UNRECORDED sink=%s: %s", sink, e.message)
