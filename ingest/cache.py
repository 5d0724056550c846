"""A parquet cache for OHLCV fetched through ccxt: never trusted without its checksum.

Each entry is ``<exchange>/<BASE_QUOTE>-<timeframe>-<since>-<limit>.parquet`` plus a
``.sha256`` sidecar (the file's sha256, rows, symbol). Both are written atomically: a temp
file in the same folder, fsync, rename, fsync of the folder. A file that does not match its
sidecar (or has none) is corruption: ``CacheCorruptionError`` names it, the file is moved
aside (``*.corrupt``) and never used, and ``fetch_ohlcv_cached`` fetches again. Prices are
stored as text, so the Decimals come back exactly. A manifest per run lists every entry it
used with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import pandas as pd

from ingest.market import OHLCV_COLUMNS
from ledger import events
from ledger.atomic import atomic_write
from ledger.errors import CacheCorruptionError

Emit = Callable[[str, events.Event], None]


class OhlcvSource(Protocol):
    name: str

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class CacheEntry:
    path: str
    symbol: str
    timeframe: str
    rows: int
    sha256: str
    fetched: bool  # True: fetched now; False: served from the cache


class OhlcvCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(
        self, exchange: str, symbol: str, timeframe: str, since: int | None, limit: int | None
    ) -> Path:
        name = (
            f"{symbol.replace('/', '_').replace(':', '_')}-{timeframe}-"
            f"{since if since is not None else 'latest'}-{limit or 'all'}.parquet"
        )
        return self.folder / exchange / name

    def store(self, path: Path, frame: pd.DataFrame, *, symbol: str, timeframe: str) -> CacheEntry:
        table = pd.DataFrame(
            {c: [str(v) for v in frame[c]] for c in OHLCV_COLUMNS},
            index=pd.DatetimeIndex(frame.index, name="timestamp"),
        )
        data = table.to_parquet(engine="pyarrow")
        digest = hashlib.sha256(data).hexdigest()
        atomic_write(path, data)
        sidecar = {"sha256": digest, "rows": len(frame), "symbol": symbol, "timeframe": timeframe}
        atomic_write(_sidecar(path), json.dumps(sidecar, sort_keys=True).encode())
        return CacheEntry(str(path), symbol, timeframe, len(frame), digest, fetched=True)

    def load(self, path: Path) -> tuple[pd.DataFrame, CacheEntry] | None:
        """The cached frame, or None when absent; raise on a file that fails its check."""
        if not path.exists():
            return None
        hint = "the file is moved aside and fetched again; delete *.corrupt files at will"
        try:
            sidecar = json.loads(_sidecar(path).read_text())
            expected = str(sidecar["sha256"])
        except (OSError, ValueError, KeyError) as e:
            raise CacheCorruptionError(
                f"cache file {path.name} has no readable checksum sidecar",
                hint=hint,
                file=str(path),
            ) from e
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise CacheCorruptionError(
                f"cache file {path.name} does not match its sha256 (expected "
                f"{expected[:16]}..., found {digest[:16]}...)",
                hint=hint,
                file=str(path),
            )
        try:
            table = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many classes for a bad file
            raise CacheCorruptionError(
                f"cache file {path.name} is not readable parquet: {e}", hint=hint, file=str(path)
            ) from e
        frame = pd.DataFrame(
            {c: [Decimal(v) for v in table[c]] for c in OHLCV_COLUMNS}, index=table.index
        )
        entry = CacheEntry(
            str(path),
            str(sidecar.get("symbol", "")),
            str(sidecar.get("timeframe", "")),
            len(frame),
            digest,
            fetched=False,
        )
        return frame, entry

    def quarantine(self, path: Path) -> None:
        for victim in (path, _sidecar(path)):
            if victim.exists():
                os.replace(victim, victim.with_name(victim.name + ".corrupt"))

    def write_manifest(self, run_id: str, entries: list[CacheEntry]) -> Path:
        path = self.folder / "manifests" / f"{run_id}.json"
        atomic_write(
            path, json.dumps([asdict(e) for e in entries], indent=1, sort_keys=True).encode()
        )
        return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


async def fetch_ohlcv_cached(
    source: OhlcvSource,
    cache: OhlcvCache,
    symbol: str,
    timeframe: str,
    *,
    since: int | None = None,
    limit: int | None = None,
    emit: Emit | None = None,
) -> tuple[pd.DataFrame, CacheEntry]:
    """Serve from the cache when the entry passes its check; otherwise fetch and store.

    A corrupted entry is recorded (``DataContractViolated`` with rule ``cache_corrupt``),
    moved aside, and fetched again: it is never used.
    """
    path = cache.path_for(source.name, symbol, timeframe, since, limit)
    try:
        found = cache.load(path)
    except CacheCorruptionError as e:
        if emit is not None:
            emit(
                f"symbol/{symbol}",
                events.DataContractViolated(
                    symbol=symbol,
                    source=source.name,
                    rule="cache_corrupt",
                    rows=[],
                    values=[e.message[:200]],
                ),
            )
        cache.quarantine(path)
        found = None
    if found is not None:
        return found
    frame = await source.fetch_ohlcv(symbol, timeframe, since, limit)
    return frame, cache.store(path, frame, symbol=symbol, timeframe=timeframe)
