"""API tokens: issued and revoked as events, kept only as their sha256.

A token is shown once, when it is issued; the ledger holds its sha256 in ``TokenIssued``
and never the token. Checking a presented token hashes it and compares the digest with
every active one in constant time, so the time taken says nothing about how close a guess
came. Scopes nest: ``admin`` can do what ``append`` can, ``append`` what ``read`` can.

Tokens are drawn from the operating system's CSPRNG (``secrets``), not a run's seeded RNG:
an issued token must not be reproducible, and issuing one is never part of a run.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Literal

from ledger import events
from ledger.errors import InputError
from ledger.market import NAME_PATTERN, NAME_RULE

if TYPE_CHECKING:
    from ledger.store import EventStore

Scope = Literal["read", "append", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "append", "admin")  # each includes those before it
TOKENS_STREAM = "tally/tokens"
TOKEN_PREFIX = "tally_"


def token_digest(token: str) -> str:
    return sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def allows(held: str, needed: Scope) -> bool:
    """Whether a token of scope ``held`` may do what needs ``needed``."""
    return held in SCOPES and SCOPES.index(held) >= SCOPES.index(needed)


@dataclass(frozen=True)
class TokenInfo:
    name: str
    scope: Scope
    issued_at: datetime
    issued_position: int
    revoked_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "scope": self.scope,
            "issued_at": self.issued_at.isoformat().replace("+00:00", "Z"),
            "issued_position": self.issued_position,
            "revoked_at": self.revoked_at.isoformat().replace("+00:00", "Z")
            if self.revoked_at
            else None,
        }


class TokenBook:
    """The tokens of one ledger, folded from its ``tally/tokens`` stream and kept current."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._version = 0
        self._tokens: dict[str, TokenInfo] = {}  # by name, revoked ones included
        self._digests: dict[str, str] = {}  # name -> sha256 of the active token

    def refresh(self) -> None:
        """Fold what was appended to the stream since the last call (one indexed query when
        nothing was)."""
        with self._lock:
            if self.store.stream_version(TOKENS_STREAM) == self._version:
                return
            for recorded in self.store.read(TOKENS_STREAM, self._version + 1):
                event = recorded.event
                if isinstance(event, events.TokenIssued):
                    self._tokens[event.name] = TokenInfo(
                        event.name, event.scope, recorded.recorded_at, recorded.position
                    )
                    self._digests[event.name] = event.token_sha256
                elif isinstance(event, events.TokenRevoked) and event.name in self._tokens:
                    info = self._tokens[event.name]
                    self._tokens[event.name] = TokenInfo(
                        info.name,
                        info.scope,
                        info.issued_at,
                        info.issued_position,
                        recorded.recorded_at,
                    )
                    self._digests.pop(event.name, None)
                self._version = recorded.version

    def all(self) -> list[TokenInfo]:
        self.refresh()
        return sorted(self._tokens.values(), key=lambda t: t.issued_position)

    def check(self, token: str) -> TokenInfo | None:
        """The active token ``token`` is, or None; every active digest is compared."""
        self.refresh()
        presented = token_digest(token)
        found = None
        for name, digest in list(self._digests.items()):
            if hmac.compare_digest(presented, digest):
                found = self._tokens[name]
        return found

    def issue(self, scope: str, name: str | None = None) -> tuple[TokenInfo, str]:
        """Issue a token: (its info, the token itself, shown once and never stored)."""
        if scope not in SCOPES:
            raise InputError(
                f"unknown scope {scope!r}", hint=f"use one of {', '.join(SCOPES)}", field="scope"
            )
        self.refresh()
        if name is None:
            name = f"{scope}-{len(self._tokens) + 1}"
        if not NAME_PATTERN.fullmatch(name):
            raise InputError(f"token name {name!r} is refused", hint=NAME_RULE, field="name")
        if name in self._tokens:
            raise InputError(
                f"a token named {name!r} exists already",
                hint="pick another --name (`tally token list` shows the names in use)",
                field="name",
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.store.append(
            TOKENS_STREAM,
            [events.TokenIssued(name=name, scope=scope, token_sha256=token_digest(token))],
            expected_version=self._version,
        )
        self.refresh()
        return self._tokens[name], token

    def revoke(self, name: str) -> TokenInfo:
        self.refresh()
        info = self._tokens.get(name)
        if info is None:
            raise InputError(
                f"no token named {name!r}", hint="`tally token list` shows the names", field="name"
            )
        if info.revoked_at is not None:
            raise InputError(f"token {name!r} was revoked already", field="name")
        self.store.append(
            TOKENS_STREAM, [events.TokenRevoked(name=name)], expected_version=self._version
        )
        self.refresh()
        return self._tokens[name]
