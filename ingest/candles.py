"""Candles for backtests: OHLCV files (one per symbol), seeded sample data, and a source that
serves a candle's close at the simulated time.

A file ``BASE_QUOTE-TIMEFRAME.csv`` (or ``.parquet``) holds the symbol ``BASE/QUOTE``; CSV
rows are ``timestamp,open,high,low,close,volume`` in ccxt order, timestamps in epoch ms
(the candle's open). Prices are read as text, so float noise is never parsed as a float.
Every input is listed in a manifest (name, rows, sha256), which a run records.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.contracts import (
    VOLUME_STEP,
    Violation,
    check_candles,
    check_ohlcv,
    epoch_ms,
    read_csv_candles,
    round_candle_columns,
)
from ingest.market import OHLCV_COLUMNS, Ticker, to_decimal, utc_from_ms
from ingest.ohlcv import CLOSE_EXPONENT, CLOSE_UNITS, Candles, canonical_csv, closes_only
from ingest.simulated import FaultInjector, SimulatedFaults
from ledger.clock import Clock, to_micros
from ledger.errors import InputError, ProviderError
from ledger.market import TIMEFRAME_MS, check_amount, round_to_step

if TYPE_CHECKING:
    import pandas as pd

FILE_NAME = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)-(\d+[mhdw])\.(csv|parquet|feather|json)$")
SUFFIXES = (".csv", ".parquet", ".feather", ".json")  # .feather, .json: freqtrade's data dir
SAMPLE_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT")
# Where a sample symbol starts (whole units of the quote asset); others start in 50..5,000.
SAMPLE_START_RANGES = {
    "BTC/USDT": (30_000, 70_000),
    "ETH/USDT": (1_500, 4_000),
    "SOL/USDT": (20, 200),
    "BNB/USDT": (200, 600),
}


@dataclass(frozen=True)
class CandleSet:
    """Candles per symbol, one timeframe; ``manifest`` describes where they came from."""

    timeframe: str
    series: dict[str, Candles]  # symbol -> its candles (see ingest.ohlcv)
    manifest: list[dict[str, Any]]

    @property
    def symbols(self) -> list[str]:
        return sorted(self.series)

    @property
    def step(self) -> timedelta:
        return timedelta(milliseconds=TIMEFRAME_MS[self.timeframe])

    @cached_property
    def frames(self) -> dict[str, pd.DataFrame]:
        """symbol -> OHLCV frame, index: candle open (UTC): the pandas view, for charts."""
        return {symbol: candles.frame() for symbol, candles in self.series.items()}

    def cycle_times(self) -> list[datetime]:
        """One cycle per candle close, over the union of every symbol's candles."""
        opens: set[int] = set()
        for candles in self.series.values():
            opens.update(candles.opens)
        step = TIMEFRAME_MS[self.timeframe]
        return [utc_from_ms(ms + step) for ms in sorted(opens)]


def symbol_of(path: Path) -> tuple[str, str]:
    """``ADA_BTC-5m.csv`` -> (``ADA/BTC``, ``5m``)."""
    found = FILE_NAME.match(path.name)
    if found is None:
        raise InputError(
            f"cannot tell the symbol from the file name {path.name!r}",
            hint="name OHLCV files BASE_QUOTE-TIMEFRAME.csv (or .parquet), e.g. ETH_BTC-5m.csv",
            file=str(path),
        )
    base, quote, timeframe, _ = found.groups()
    if timeframe not in TIMEFRAME_MS:
        raise InputError(
            f"unknown timeframe {timeframe!r} in {path.name}",
            hint=f"use one of {sorted(TIMEFRAME_MS)}",
            file=str(path),
        )
    return f"{base}/{quote}", timeframe


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_ohlcv_parquet(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """Read a parquet (or freqtrade's feather) OHLCV file (from ``content``, its bytes,
    when given); numbers stored as text stay exact, floats go through repr."""
    import pandas as pd

    kind = path.suffix.lstrip(".")
    source = path if content is None else io.BytesIO(content)
    try:
        raw = pd.read_feather(source) if kind == "feather" else pd.read_parquet(source)
    except Exception as e:  # pyarrow raises many classes for a bad file
        raise InputError(f"cannot read {kind} file: {e}", file=str(path)) from e
    if "date" in raw.columns and "timestamp" not in raw.columns:  # freqtrade's column name
        raw = raw.rename(columns={"date": "timestamp"})
    if "timestamp" in raw.columns:
        raw = raw.set_index("timestamp")
    missing = [c for c in OHLCV_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(
            f"{kind} OHLCV file lacks columns {missing}",
            hint="store timestamp,open,high,low,close,volume",
            file=str(path),
        )
    if raw.empty:
        raise InputError(f"the {kind} OHLCV file holds no candles", file=str(path))
    index = raw.index
    try:
        if not isinstance(index, pd.DatetimeIndex):
            index = pd.to_datetime([epoch_ms(int(v)) for v in index], unit="ms", utc=True)
        data = {
            c: [v if v is None else check_amount(v, c) for v in map(to_decimal, raw[c].tolist())]
            for c in OHLCV_COLUMNS
        }
    except (TypeError, ValueError, ArithmeticError) as e:
        raise InputError(f"bad {kind} OHLCV value: {e}", file=str(path)) from e
    return pd.DataFrame(
        data, index=pd.DatetimeIndex(index, name="timestamp"), columns=list(OHLCV_COLUMNS)
    )


def read_ohlcv_json(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """freqtrade's JSON candles: ``[[epoch ms, open, high, low, close, volume], ...]``, read
    as decimals from the text (from ``content``, the file's bytes, when given)."""
    import json

    import pandas as pd

    try:
        text = path.read_text(encoding="utf-8") if content is None else content.decode("utf-8")
        rows = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path.name} as JSON candles: {e}", file=str(path)) from e
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path.name} holds no candles", file=str(path))
    stamps: list[int] = []
    data: dict[str, list[Decimal]] = {c: [] for c in OHLCV_COLUMNS}
    for number, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 6:
            raise InputError(
                f"{path.name}: candle {number} is not [time, open, high, low, close, volume]",
                file=str(path),
                row=number,
            )
        try:
            stamps.append(epoch_ms(int(row[0])))
            for column, value in zip(OHLCV_COLUMNS, row[1:], strict=True):
                data[column].append(check_amount(Decimal(value), column))
        except (TypeError, ValueError, ArithmeticError) as e:
            raise InputError(
                f"{path.name}: candle {number}: {e}", file=str(path), row=number
            ) from e
    index = pd.to_datetime(stamps, unit="ms", utc=True)
    return pd.DataFrame(
        data, index=pd.DatetimeIndex(index, name="timestamp"), columns=list(OHLCV_COLUMNS)
    )


def ohlcv_files(folder: Path) -> list[tuple[Path, str, str]]:
    """(file, symbol, timeframe) of each OHLCV file of ``folder``, in name order: at least
    one, one timeframe, one file a symbol."""
    if not folder.is_dir():
        raise InputError(
            f"no such data folder: {folder}",
            hint="pass a folder of BASE_QUOTE-TIMEFRAME.csv (or .parquet) files",
            folder=str(folder),
        )
    files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
    if not files:
        raise InputError(
            f"no .csv, .parquet, .feather or .json OHLCV files in {folder}",
            hint="one file a symbol, named BASE_QUOTE-TIMEFRAME.csv",
            folder=str(folder),
        )
    found = [(path, *symbol_of(path)) for path in files]
    timeframes = sorted({timeframe for _, _, timeframe in found})
    if len(timeframes) > 1:
        raise InputError(
            f"the files mix timeframes {timeframes}",
            hint="use one timeframe at a time",
            folder=str(folder),
        )
    seen: set[str] = set()
    for path, symbol, _ in found:
        if symbol in seen:
            raise InputError(
                f"two files hold {symbol}", hint="keep one file a symbol", file=str(path)
            )
        seen.add(symbol)
    return found


def read_ohlcv_file(path: Path, content: bytes | None = None) -> pd.DataFrame:
    """One OHLCV file (.csv, .parquet, or freqtrade's .feather or .json), read whole (from
    ``content``, its bytes, when given); a broken contract is an InputError."""
    if path.suffix == ".csv":
        return read_candles_file(path, content).frame()
    frame = _read_frame(path, content)
    _refuse(path, check_ohlcv(frame))
    return frame


def read_candles_file(path: Path, content: bytes | None = None) -> Candles:
    """``read_ohlcv_file`` as columns: a CSV file is read without pandas."""
    if path.suffix == ".csv":
        candles = read_csv_candles(path, content)
        _refuse(path, check_candles(candles))
        return candles
    frame = _read_frame(path, content)
    _refuse(path, check_ohlcv(frame))
    return Candles.from_frame(frame)


def _read_frame(path: Path, content: bytes | None) -> pd.DataFrame:
    if path.suffix == ".json":
        return read_ohlcv_json(path, content)
    return read_ohlcv_parquet(path, content)


def _refuse(path: Path, violations: list[Violation]) -> None:
    """The first broken rule of a file's contract as an InputError (none: nothing)."""
    if violations:
        first = violations[0]
        raise InputError(
            f"{path.name} breaks the OHLCV contract: {first.rule} "
            f"(data rows {first.rows[:5]}, counted from 0 after the header)",
            hint="fix or remove those rows",
            file=str(path),
            rule=first.rule,
        )


def read_file_bytes(path: Path) -> tuple[bytes, str]:
    """An OHLCV file's bytes, read once, and their sha256 (what a run's manifest records:
    the sha256 of the very bytes parsed, even if the file is rewritten while it is read)."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read OHLCV file: {e}", file=str(path)) from e
    return content, hashlib.sha256(content).hexdigest()


def load_candles(folder: Path) -> CandleSet:
    """Every OHLCV file of ``folder``, whole (every column, as written), one after another;
    refuse mixed timeframes and broken contracts. A run prices with less
    (``load_priced_candles``)."""
    files = ohlcv_files(folder)
    series: dict[str, Candles] = {}
    manifest: list[dict[str, Any]] = []
    for path, symbol, _ in files:
        content, digest = read_file_bytes(path)
        candles = read_candles_file(path, content)
        series[symbol] = candles
        manifest.append(
            {"name": path.name, "symbol": symbol, "rows": len(candles), "sha256": digest}
        )
    return CandleSet(files[0][2], series, manifest)


def select_candles(
    candles: CandleSet,
    pairs: Sequence[str] = (),
    start: datetime | None = None,
    stop: datetime | None = None,
) -> CandleSet:
    """Only ``pairs`` (all when empty) and the candles opening in ``[start, stop]`` (both
    ends included, as freqtrade's ``--timerange`` reads them)."""
    _refuse_unknown_pairs(pairs, candles.series)
    series = {
        symbol: _opening_within(held, start, stop)
        for symbol, held in candles.series.items()
        if not pairs or symbol in pairs
    }
    _refuse_empty_range(series, [c.opens for c in candles.series.values()])
    manifest = [e for e in candles.manifest if e["symbol"] in series]
    return CandleSet(candles.timeframe, series, manifest)


def _refuse_unknown_pairs(pairs: Sequence[str], symbols: Iterable[str]) -> None:
    unknown = sorted(set(pairs) - set(symbols))
    if unknown:
        raise InputError(
            f"--pairs names {unknown}, which the data has no file for",
            hint=f"the data holds {', '.join(sorted(symbols))}",
        )


def _opening_within(held: Candles, start: datetime | None, stop: datetime | None) -> Candles:
    """The candles of ``held`` opening in ``[start, stop]`` (an open end takes all)."""
    if start is None and stop is None:
        return held
    first_us = None if start is None else to_micros(start)
    last_us = None if stop is None else to_micros(stop)
    keep = [
        i
        for i, ms in enumerate(held.opens)
        if (first_us is None or ms * 1000 >= first_us) and (last_us is None or ms * 1000 <= last_us)
    ]
    return held.rows(keep)


def _refuse_empty_range(series: Mapping[str, Candles], spans: Iterable[Sequence[int]]) -> None:
    """Refuse a selection that left no candle at all; ``spans``: the opens it chose from."""
    if any(len(c) for c in series.values()):
        return
    opens = [o for o in spans if len(o)]
    if not opens:
        raise InputError(
            "the data holds no candles", hint="check the files: each has only a header"
        )
    raise InputError(
        "the time range selects no candles",
        hint=f"the data runs from {utc_from_ms(min(o[0] for o in opens))} "
        f"to {utc_from_ms(max(o[-1] for o in opens))}",
    )


def _rounded_series(
    name: str, symbol: str, held: Candles, price_steps: Mapping[str, Decimal]
) -> Candles:
    """``held`` at ``symbol``'s price step; refused if a low rounds to 0."""
    rounded = round_candle_columns(held, price_steps[symbol])
    zero = next((i for i, low in enumerate(rounded.columns["low"]) if low == 0), None)
    if zero is not None:
        raise InputError(
            f"{name}: the low of the candle at "
            f"{utc_from_ms(rounded.opens[zero]).isoformat()} rounds to 0 "
            f"at {symbol}'s price step {price_steps[symbol]}",
            hint=f"set a finer run.markets.{symbol}.price_step",
            file=name,
        )
    return rounded


def _with_steps(entry: dict[str, Any], price_steps: Mapping[str, Decimal]) -> dict[str, Any]:
    return {
        **entry,
        "price_step": str(price_steps[entry["symbol"]]),
        "volume_step": str(VOLUME_STEP),
    }


# Candles a run keeps whole (every column, as ``Decimal``s: about 560 bytes a candle, 28 MB
# at most). A close is looked up faster in whole candles (a dict) than in closes-only ones
# (a bisection and a ``Decimal`` made): 40,320 fetches of the seven real files' backtest
# took 19 ms against 44 ms. Beyond this many, memory matters more: a data set's candles are
# cut to their closes (``closes_only``: 17 bytes a candle), every file's. (At 200,000 whole,
# 50 symbols x 90 days peaked 56 MB higher: the freed candles' memory stays with Python.)
WHOLE_CANDLES_MAX = 50_000


def hash_files(files: Sequence[tuple[Path, str, str]]) -> dict[Path, str]:
    """The sha256 of each of ``files`` (``ohlcv_files``' list), read a block at a time."""
    digests = {}
    for path, _, _ in files:
        try:
            digests[path] = sha256_file(path)
        except OSError as e:
            raise InputError(f"cannot read OHLCV file: {e}", file=str(path)) from e
    return digests


def load_priced_candles(
    files: Sequence[tuple[Path, str, str]],
    digests: Mapping[Path, str],
    price_steps: Mapping[str, Decimal],
    pairs: Sequence[str] = (),
    start: datetime | None = None,
    stop: datetime | None = None,
) -> CandleSet:
    """What a run prices with, from ``files``: the candles ``load_candles`` and
    ``select_candles`` make, rounded to each market's price step (volumes at
    ``VOLUME_STEP``, half to even; the manifest records both steps, so a run says what it
    priced with); beyond ``WHOLE_CANDLES_MAX`` candles, kept as their closes only
    (``closes_only``).

    One file at a time: it is read, checked against its sha256 in ``digests``
    (``hash_files``: the bytes parsed are the bytes recorded), parsed, cut to ``pairs`` and
    ``[start, stop]`` and rounded (unless ``price_steps`` is empty: runs recorded before the
    steps were) before the next is read, so a folder's bytes are never held at once, nor a
    large data set's candles as ``Decimal``s (a year of 50 pairs is five million candles).
    Files of pairs not chosen are not read.
    """
    _refuse_unknown_pairs(pairs, [symbol for _, symbol, _ in files])
    series: dict[str, Candles] = {}
    manifest: list[dict[str, Any]] = []
    spans: list[tuple[int, ...]] = []  # each chosen file's first and last open
    held = 0  # candles chosen so far
    cutting = False  # beyond WHOLE_CANDLES_MAX: every file's candles cut to their closes
    for path, symbol, _ in files:
        if pairs and symbol not in pairs:
            continue
        content, digest = read_file_bytes(path)
        if digest != digests[path]:
            raise InputError(
                f"{path.name} changed while it was being read",
                hint="run again once nothing is writing to the data folder",
                file=str(path),
            )
        candles = read_candles_file(path, content)
        del content
        entry = {"name": path.name, "symbol": symbol, "rows": len(candles), "sha256": digest}
        spans.append((candles.opens[0], candles.opens[-1]) if len(candles) else ())
        candles = _opening_within(candles, start, stop)
        if price_steps:
            candles = _rounded_series(path.name, symbol, candles, price_steps)
            entry = _with_steps(entry, price_steps)
        held += len(candles)
        if held > WHOLE_CANDLES_MAX and not cutting:  # from now on, and the files before
            cutting = True
            for name, kept in series.items():
                series[name] = closes_only(kept)
        series[symbol] = closes_only(candles) if cutting else candles
        manifest.append(entry)
    if start is not None or stop is not None:
        _refuse_empty_range(series, spans)
    return CandleSet(files[0][2], series, manifest)


def candles_digest(candles: Candles) -> str:
    """sha256 of candles' canonical CSV text (what ``write_candles`` would write)."""
    return hashlib.sha256(canonical_csv(candles).encode()).hexdigest()


def write_candles(candles: CandleSet, folder: Path) -> list[Path]:
    """Write one CSV a symbol (``BASE_QUOTE-TF.csv``), e.g. to export the sample data."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for symbol in candles.symbols:
        path = folder / f"{symbol.replace('/', '_')}-{candles.timeframe}.csv"
        path.write_text(canonical_csv(candles.series[symbol]), encoding="utf-8")
        written.append(path)
    return written


def generate_sample(
    *,
    seed: int,
    start: datetime,
    days: int,
    timeframe: str = "5m",
    symbols: tuple[str, ...] = SAMPLE_SYMBOLS,
    missing_share: float = 0.003,
    compact: bool = False,
) -> CandleSet:
    """Seeded candles: a random walk per symbol with a few missing candles, exact Decimals.

    The same arguments give the same candles on every machine (Python's ``random`` with a
    string seed is stable across platforms and versions). ``compact`` keeps only each
    symbol's closes (``closes_only``), made one symbol at a time: what a backtest prices
    with, at a fraction of the memory; the manifest is the same either way.
    """
    step_ms = TIMEFRAME_MS[timeframe]
    count = days * 86_400_000 // step_ms
    first_ms = to_micros(start) // 1000
    series: dict[str, Candles] = {}
    manifest: list[dict[str, Any]] = []
    price_step = Decimal("0.01")
    for symbol in sorted(symbols):
        rng = random.Random(f"tally-sample:{seed}:{symbol}")
        start_low, start_high = SAMPLE_START_RANGES.get(symbol, (50, 5_000))
        price = Decimal(rng.randint(start_low, start_high))
        stamps, rows = [], []
        for i in range(count):
            change = Decimal(repr(round(rng.gauss(0.0002, 0.004), 6)))
            close = max(price_step, round_to_step(price * (1 + change), price_step))
            wiggle = Decimal(repr(round(abs(rng.gauss(0, 0.0015)), 6)))
            high = round_to_step(max(price, close) * (1 + wiggle), price_step)
            low = max(price_step, round_to_step(min(price, close) * (1 - wiggle), price_step))
            volume = Decimal(rng.randint(1, 5_000_000)) / 1000
            if rng.random() >= missing_share:  # a missing candle is a real feed's habit
                stamps.append(first_ms + i * step_ms)
                rows.append((price, high, low, close, volume))
            price = close
        columns = dict(zip(OHLCV_COLUMNS, map(list, zip(*rows, strict=True)), strict=True))
        made = Candles(stamps, columns if rows else {c: [] for c in OHLCV_COLUMNS})
        series[symbol] = closes_only(made) if compact else made
        manifest.append(
            {
                "name": f"{symbol.replace('/', '_')}-{timeframe}.csv (generated)",
                "symbol": symbol,
                "rows": len(made),
                "sha256": candles_digest(made),
            }
        )
    return CandleSet(timeframe, series, manifest)


class CandleSource:
    """A ticker source over candles: at simulated time t, the close of the candle that
    closed at t. A candle missing from the data is a failed fetch (``CandleMissing``, not
    retried: asking again cannot make it appear), so it takes the same fallback path as a
    feed outage. Optional seeded faults come on top."""

    def __init__(
        self,
        candles: CandleSet,
        *,
        clock: Clock,
        seed: int,
        name: str = "candles",
        faults: SimulatedFaults | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self._step_ms = TIMEFRAME_MS[candles.timeframe]
        self._closes: dict[str, dict[int, Decimal]] = {}
        # Compact candles: close times, units, exponents (looked up by bisection).
        self._compact: dict[str, tuple[Sequence[int], Sequence[int], Sequence[int]]] = {}
        for symbol, held in candles.series.items():
            if held.compact:
                self._compact[symbol] = (
                    array("q", (ms + self._step_ms for ms in held.opens)),
                    held.columns[CLOSE_UNITS],
                    held.columns[CLOSE_EXPONENT],
                )
                continue
            self._closes[symbol] = {
                ms + self._step_ms: close
                for ms, close in zip(held.opens, held.columns["close"], strict=True)
            }
        self._faults = (
            FaultInjector(name, seed=seed, clock=clock, faults=faults)
            if faults is not None
            else None
        )

    def _compact_close(self, symbol: str, close_ms: int) -> Decimal | None:
        times, units, exponents = self._compact[symbol]
        index = bisect_left(times, close_ms)
        if index >= len(times) or times[index] != close_ms:
            return None
        return Decimal(units[index]).scaleb(exponents[index])

    @property
    def local(self) -> bool:
        """Whether a fetch never waits (no injected faults): ``ticker_now`` may be asked."""
        return self._faults is None

    def ticker_now(self, symbol: str) -> Ticker:
        """``fetch_ticker`` without a coroutine, for a source without injected faults: the
        same ticker or the same ``ProviderError``."""
        return self._ticker_at(symbol, self.clock.now())

    async def fetch_ticker(self, symbol: str) -> Ticker:
        now = await self._faults.enter(symbol, "ticker") if self._faults else self.clock.now()
        return self._ticker_at(symbol, now)

    def _ticker_at(self, symbol: str, now: datetime) -> Ticker:
        # The cycle's candle: retries inside the cycle move a task's time by seconds, never
        # past the next close.
        close_ms = to_micros(now) // 1000 // self._step_ms * self._step_ms
        closes = self._closes.get(symbol)
        if closes is None and symbol not in self._compact:
            raise ProviderError(
                f"{self.name}: no data for {symbol}",
                error_class="BadSymbol",
                retryable=False,
                source=self.name,
                endpoint="ticker",
            )
        price = (
            closes.get(close_ms) if closes is not None else self._compact_close(symbol, close_ms)
        )
        if price is None:
            raise ProviderError(
                f"{self.name} ticker failed: no candle for {symbol} closing at "
                f"{utc_from_ms(close_ms).isoformat()}",
                error_class="CandleMissing",
                retryable=False,
                source=self.name,
                endpoint="ticker",
                symbol=symbol,
            )
        return Ticker(symbol=symbol, last=price, bid=None, ask=None, timestamp=now)
