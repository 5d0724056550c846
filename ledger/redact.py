"""Secrets never leave the process: what goes into an event, a log line or a report is
redacted at the source.

Exchange errors quote the request (a signed URL, its headers); ccxt's own debug log prints
the API key header. ``redact`` masks the values of signing and credential parameters and
headers by name, and any literal secret registered with ``register_secret`` (the keys a live
run read from the environment), wherever they appear.
"""

from __future__ import annotations

import re

MASK = "***"
# Query or form parameters and JSON/header fields that carry credentials or signatures.
_NAMES = (
    r"signature|sign|apikey|api_key|api-key|key|secret|secretkey|password|passphrase|token|"
    r"access_token|x-mbx-apikey|kc-api-key|kc-api-sign|kc-api-passphrase|ok-access-key|"
    r"ok-access-sign|ok-access-passphrase|x-bapi-api-key|x-bapi-sign|authorization"
)
_PARAM = re.compile(rf"(?i)([?&;\s'\"{{,](?:{_NAMES})['\"]?\s*[=:]\s*['\"]?)([^&\s'\",}}]+)")
_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears from now on (a key, a secret, a password)."""
    if len(value) >= 4:  # a shorter "secret" would mask ordinary text
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with credential values masked."""
    masked = _PARAM.sub(lambda m: m.group(1) + MASK, text)
    for secret in _SECRETS:
        if secret in masked:
            masked = masked.replace(secret, MASK)
    return masked
