"""Where the ledger lives and how long any wait on it may last. Every limit names its unit."""

from __future__ import annotations

from pydantic import Field

from ledger.config import StrictModel


class StoreSettings(StrictModel):
    """The ``store:`` section of the configuration."""

    url: str = "sqlite:///tally.db"
    # true: every committed append survives a power cut (SQLite synchronous=FULL).
    durable: bool = True
    # SQLite: how long a writer waits for another writer's lock before giving up.
    busy_timeout_ms: int = Field(10_000, ge=0, le=600_000)
    # PostgreSQL: the longest wait for a lock (the append lock included), for one statement,
    # and for a transaction left idle; a wait beyond them is an error, never a hang.
    lock_timeout_ms: int = Field(10_000, ge=1, le=600_000)
    statement_timeout_ms: int = Field(20_000, ge=1, le=3_600_000)
    idle_in_transaction_timeout_ms: int = Field(60_000, ge=1, le=3_600_000)
    connect_timeout_s: int = Field(5, ge=1, le=300)
    # PostgreSQL: the longest any one call waits for the server's answer, enforced by the
    # client (a frozen server enforces none of its own limits); past it the connection is
    # cut and the call fails as a lost connection. Keep it above the two limits above.
    call_timeout_s: float = Field(30.0, gt=0, le=3_600)
    # PostgreSQL connection pool: kept connections, extra ones under load, the wait for a
    # free one, and the age after which a connection is replaced.
    pool_size: int = Field(2, ge=1, le=100)
    pool_overflow_max: int = Field(4, ge=0, le=100)
    pool_timeout_s: float = Field(30.0, gt=0, le=600)
    pool_recycle_s: int = Field(3_600, ge=1, le=86_400)
