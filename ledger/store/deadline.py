"""A deadline on every call to a database server: a frozen server is an error, never a hang.

PostgreSQL's own limits (``statement_timeout``, ``lock_timeout``) are enforced by the server,
so a server that is frozen (SIGSTOP, a hung host, a network path that drops packets without
a reset) enforces nothing, and the kernel keeps acknowledging our packets, so TCP timeouts
do not fire either. The client has to give up by itself: when one call outlasts
``store.call_timeout_s``, a timer thread shuts the connection's socket down, the blocked
driver call returns with an error, and the call fails as a lost connection (transient: it
can be retried once the server answers again).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ledger.errors import StoreDeadlineExceeded


class CallDeadline:
    """Bounds blocking calls on sockets by ``seconds``, watched by one thread.

    Arming a call is a dictionary entry under a lock (microseconds): a thread a call would
    cost ~0.2 ms, several times per append. The watcher sleeps until the earliest armed
    deadline and cuts the socket of any call still running then."""

    def __init__(self, seconds: float, display_url: str) -> None:
        self.seconds = seconds
        self.display_url = display_url
        self._calls: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket fd)
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._changed = threading.Condition()
        self._watcher: threading.Thread | None = None

    @contextmanager
    def bound(self, fd: int) -> Iterator[None]:
        """Run the block; if it is still running after ``seconds``, cut socket ``fd``."""
        token = next(self._tokens)
        with self._changed:
            self._calls[token] = (time.monotonic() + self.seconds, fd)
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="tally-call-deadline", daemon=True
                )
                self._watcher.start()
            self._changed.notify()
        try:
            yield
        except BaseException as error:
            if token in self._fired:
                raise StoreDeadlineExceeded(
                    f"the PostgreSQL server did not answer within store.call_timeout_s "
                    f"({self.seconds:g} s): it is frozen, overloaded or cut off",
                    hint="check the server and the network; the call was abandoned whole "
                    "and can be retried when the server answers",
                    url=self.display_url,
                ) from error
            raise
        finally:
            with self._changed:
                self._calls.pop(token, None)
                self._fired.discard(token)

    def _watch(self) -> None:
        with self._changed:
            while True:
                if not self._calls:
                    self._changed.wait()
                    continue
                now = time.monotonic()
                token, (deadline, fd) = min(self._calls.items(), key=lambda item: item[1][0])
                if deadline > now:
                    self._changed.wait(deadline - now)
                    continue
                del self._calls[token]
                self._fired.add(token)
                _cut(fd)


def _cut(fd: int) -> None:
    """Shut socket ``fd`` down: the call blocked on it returns with an error."""
    with suppress(OSError):  # already closed: the call is ending anyway
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()  # only our duplicate; the driver still owns ``fd``


class BoundedCursor:
    """A DBAPI cursor whose ``execute`` is bounded by a deadline (fetches are local: a
    psycopg client-side cursor has the whole result once ``execute`` returns)."""

    def __init__(self, cursor: Any, deadline: CallDeadline, fd: int) -> None:
        self.raw = cursor
        self.deadline = deadline
        self.fd = fd

    def execute(self, statement: str, params: Any = None) -> Any:
        """Run one statement; its whole round trip is bounded."""
        with self.deadline.bound(self.fd):
            return self.raw.execute(statement, params)

    def executemany(self, statement: str, params: Any) -> Any:
        """Run one statement for each of ``params`` (psycopg pipelines them); the whole
        exchange is bounded."""
        with self.deadline.bound(self.fd):
            return self.raw.executemany(statement, params)

    def fetchone(self) -> Any:
        """The next row of the last result (already here: no wait)."""
        return self.raw.fetchone()

    def fetchall(self) -> Any:
        """The remaining rows of the last result (already here: no wait)."""
        return self.raw.fetchall()

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        return int(self.raw.rowcount)

    def close(self) -> None:
        """Close the cursor."""
        self.raw.close()
