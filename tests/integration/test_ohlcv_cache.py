"""The parquet cache: OHLCV fetched through real ccxt from recorded responses, checked by
sha256, atomic, and never used when corrupted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ingest.cache import OhlcvCache, fetch_ohlcv_cached
from ingest.ccxt_source import CcxtSource
from ledger import events
from ledger.errors import CacheCorruptionError
from tests.conftest import shared_data
from tests.support.recorded_exchange import fixture_cases, offline_exchange


class CountingSource:
    """ccxt's binance, answering from its recorded fetchOHLCV response; counts fetches."""

    def __init__(self) -> None:
        data = shared_data("ccxt")
        case = fixture_cases(data, "binance", "fetchOHLCV")[0]
        self.source = CcxtSource(offline_exchange(data, "binance", case))
        self.name = "binance"
        self.calls = 0

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> Any:
        self.calls += 1
        return await self.source.fetch_ohlcv(symbol, timeframe, since, limit)


def fetch(source: CountingSource, cache: OhlcvCache, log: list[events.Event]) -> Any:
    return asyncio.run(
        fetch_ohlcv_cached(
            source,
            cache,
            "BTC/USDT",
            "1h",
            since=1706628191000,
            limit=3,
            emit=lambda _s, e: log.append(e),
        )
    )


def test_fetched_once_then_served_exactly_from_the_cache(tmp_path: Path) -> None:
    source, cache, log = CountingSource(), OhlcvCache(tmp_path), []
    frame, entry = fetch(source, cache, log)
    assert entry.fetched and entry.rows == len(frame) == 3 and source.calls == 1
    path = Path(entry.path)
    sidecar = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert sidecar["sha256"] == entry.sha256 and sidecar["rows"] == 3
    again, cached = fetch(source, cache, log)
    assert not cached.fetched and source.calls == 1
    assert again.equals(frame) and list(again["close"]) == list(frame["close"])  # Decimals
    assert not list(tmp_path.rglob("*.tmp")) and log == []
    manifest = json.loads(cache.write_manifest("run-1", [entry, cached]).read_text())
    assert [m["sha256"] for m in manifest] == [entry.sha256] * 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_sidecar"])
def test_a_corrupted_entry_is_detected_set_aside_and_fetched_again(
    tmp_path: Path, damage: str
) -> None:
    source, cache, log = CountingSource(), OhlcvCache(tmp_path), []
    frame, entry = fetch(source, cache, log)
    path = Path(entry.path)
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CacheCorruptionError, match=path.name) as raised:
        cache.load(path)
    assert raised.value.exit_code == 1 and "fetched again" in (raised.value.hint or "")
    again, refetched = fetch(source, cache, log)
    assert refetched.fetched and source.calls == 2 and again.equals(frame)
    assert list(tmp_path.rglob("*.corrupt"))  # kept aside for a look, never used
    violation = log[0]
    assert isinstance(violation, events.DataContractViolated)
    assert violation.rule == "cache_corrupt" and violation.source == "binance"
