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

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from ledger.errors import StoreDeadlineExceeded


class CallDeadline:
    """Bounds blocking calls on one socket by ``seconds``."""

    def __init__(self, seconds: float, display_url: str) -> None:
        self.seconds = seconds
        self.display_url = display_url

    @contextmanager
    def bound(self, fd: int) -> Iterator[None]:
        """Run the block; if it is still running after ``seconds``, cut socket ``fd``."""
        fired = threading.Event()

        def cut() -> None:
            fired.set()
            with suppress(OSError):  # already closed: the call is ending anyway
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked call with an error
                finally:
                    sock.close()  # only our duplicate; the driver still owns ``fd``

        timer = threading.Timer(self.seconds, cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        except BaseException as error:
            if fired.is_set():
                raise StoreDeadlineExceeded(
                    f"the PostgreSQL server did not answer within store.call_timeout_s "
                    f"({self.seconds:g} s): it is frozen, overloaded or cut off",
                    hint="check the server and the network; the call was abandoned whole "
                    "and can be retried when the server answers",
                    url=self.display_url,
                ) from error
            raise
        finally:
            timer.cancel()


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
