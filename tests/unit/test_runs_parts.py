"""The main job's parts: sample data, candle files, the candle source, strategies, context."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from ingest import candles
from ingest.candles import CandleSource, generate_sample, load_candles, symbol_of, write_candles
from ingest.ohlcv import Candles
from ledger.clock import SimulatedClock
from ledger.errors import ConfigError, InputError, ProviderError
from ledger.recorded import RecordedEvent
from tally.repro import equity_side_by_side, field_diff
from tally.run import context
from tally.run.strategy import load_strategy

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.smoke
def test_the_sample_is_a_function_of_its_seed() -> None:
    one = generate_sample(seed=3, start=START, days=1)
    two = generate_sample(seed=3, start=START, days=1)
    other = generate_sample(seed=4, start=START, days=1)
    assert one.manifest == two.manifest and one.manifest != other.manifest
    frame = one.frames["BTC/USDT"]
    assert 280 <= len(frame) <= 288  # a few candles are left out on purpose
    assert all(isinstance(v, Decimal) and v == v.quantize(Decimal("0.01")) for v in frame["close"])
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert len(one.cycle_times()) == 288


def test_written_sample_files_load_back_with_the_same_digests(tmp_path: Path) -> None:
    sample = generate_sample(seed=1, start=START, days=1)
    write_candles(sample, tmp_path)
    loaded = load_candles(tmp_path)
    assert loaded.symbols == sample.symbols and loaded.timeframe == "5m"
    for symbol in sample.symbols:
        assert loaded.frames[symbol].equals(sample.frames[symbol])
    by_symbol = {m["symbol"]: m for m in loaded.manifest}
    assert all(by_symbol[m["symbol"]]["sha256"] == m["sha256"] for m in sample.manifest)


def test_the_recorded_digest_is_of_the_bytes_parsed_even_if_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = generate_sample(seed=1, start=START, days=1, symbols=("BTC/USDT",))
    write_candles(sample, tmp_path)
    [path] = tmp_path.glob("*.csv")
    parsed = path.read_bytes()
    read = candles.read_candles_file
    rewritten = []

    def read_then_rewritten(file: Path, content: bytes | None = None) -> Candles:
        held = read(file, content)
        file.write_bytes(parsed + parsed.splitlines(keepends=True)[-1])  # a row more
        rewritten.append(file)
        return held

    monkeypatch.setattr(candles, "read_candles_file", read_then_rewritten)
    [entry] = load_candles(tmp_path).manifest
    assert rewritten == [path]  # (the file did change under the reader)
    assert entry["sha256"] == hashlib.sha256(parsed).hexdigest()
    assert entry["rows"] == len(sample.series["BTC/USDT"])


@pytest.mark.parametrize(
    ("name", "needle"),
    [("btc-usdt.csv", "cannot tell the symbol"), ("BTC_USDT-7m.csv", "unknown timeframe")],
)
def test_a_badly_named_file_is_refused_with_a_hint(name: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle) as raised:
        symbol_of(Path(name))
    assert raised.value.hint and ("BASE_QUOTE" in raised.value.hint or "5m" in raised.value.hint)


def test_bad_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \.csv, \.parquet, \.feather or \.json"):
        load_candles(tmp_path)
    sample = generate_sample(seed=1, start=START, days=1, symbols=("BTC/USDT",))
    write_candles(sample, tmp_path)
    (tmp_path / "ETH_USDT-1h.csv").write_text((tmp_path / "BTC_USDT-5m.csv").read_text())
    with pytest.raises(InputError, match="mix timeframes"):
        load_candles(tmp_path)
    (tmp_path / "ETH_USDT-1h.csv").unlink()
    text = (tmp_path / "BTC_USDT-5m.csv").read_text().splitlines()
    text[5] = text[5].replace(",", ",-", 1)  # a negative open price
    (tmp_path / "BTC_USDT-5m.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match="breaks the OHLCV contract"):
        load_candles(tmp_path)


def test_the_candle_source_serves_closes_and_fails_a_missing_candle() -> None:
    sample = generate_sample(seed=2, start=START, days=1, symbols=("BTC/USDT",), missing_share=0.0)
    held = sample.series["BTC/USDT"]
    gapped = held.rows([i for i in range(len(held)) if i != 10])
    candles = type(sample)("5m", {"BTC/USDT": gapped}, sample.manifest)
    times = sample.cycle_times()
    clock = SimulatedClock(times[0])
    source = CandleSource(candles, clock=clock, seed=1)
    ticker = asyncio.run(source.fetch_ticker("BTC/USDT"))
    assert ticker.last == gapped.columns["close"][0] == sample.frames["BTC/USDT"]["close"].iloc[0]
    clock.set(times[10] + timedelta(seconds=1))  # a retry's offset stays in the same candle
    with pytest.raises(ProviderError, match="no candle") as raised:
        asyncio.run(source.fetch_ticker("BTC/USDT"))
    assert raised.value.error_class == "CandleMissing" and not raised.value.retryable


def test_local_sources_priced_in_sequence_give_the_gathered_events_in_order() -> None:
    """Without faults a candle source never suspends, so pricing symbol after symbol in one
    task (a backtest of files) records exactly what concurrent tasks record; catalog 3
    records the same, its first-attempt successes in the seals instead of one event each."""
    from ingest.breaker import BreakerRegistry
    from ingest.settings import IngestSettings
    from ingest.snapshot import SnapshotTaker
    from ledger import events
    from projections.errors import BreakerBoard

    sample = generate_sample(seed=3, start=START, days=1, missing_share=0.05)
    times = sample.cycle_times()

    def taken(sequential: bool, catalog: int) -> tuple[list[events.Event], SnapshotTaker]:
        clock = SimulatedClock(times[0])
        source = CandleSource(sample, clock=clock, seed=1)
        taker = SnapshotTaker([source], settings=IngestSettings(), clock=clock, seed=1,
                              sequential=sequential, catalog=catalog)  # fmt: skip
        found: list[events.Event] = []
        for cycle, moment in enumerate(times[:120]):
            clock.set(moment)
            found.extend(e for _, e in asyncio.run(taker.take(sample.symbols, cycle)).events)
        return found, taker

    gathered, _ = taken(False, 2)
    assert taken(True, 2)[0] == gathered and any("CandleMissing" in repr(e) for e in gathered)
    assert taken(False, 3)[0] == gathered  # sources that may suspend keep their events
    folded, taker = taken(True, 3)
    seals = [e for e in folded if isinstance(e, events.SnapshotSealed)]
    # Every FetchSucceeded is in its cycle's seal instead, nothing else changed, nothing
    # lost: each seal names exactly the successes catalog 2 recorded before it.
    assert not any(isinstance(e, events.FetchSucceeded) for e in folded)
    assert sum(len(s.fetched) for s in seals) == sum(s.fresh for s in seals) > 0
    successes: list[dict[str, str]] = [{}]
    for event in gathered:
        if isinstance(event, events.FetchSucceeded):
            assert event.attempt == 1 and event.latency_ms == 0
            successes[-1][event.symbol] = event.source
        elif isinstance(event, events.SnapshotSealed):
            successes.append({})
    assert [s.fetched for s in seals] == successes[:-1]
    assert [
        msgspec.structs.replace(e, fetched={}) if isinstance(e, events.SnapshotSealed) else e
        for e in folded
    ] == [e for e in gathered if not isinstance(e, events.FetchSucceeded)]
    # Breakers count the folded successes at the seal, live and rebuilt from the events.
    rebuilt = BreakerRegistry(IngestSettings().breaker, SimulatedClock(times[0])).rebuild(folded)
    assert {n: b.snapshot() for n, b in rebuilt} == {n: b.snapshot() for n, b in taker.breakers}
    assert taker.breakers.get("candles", "ticker").counts.successes == sum(
        len(s.fetched) for s in seals
    )
    board = BreakerBoard()
    for position, event in enumerate(folded, start=1):
        row = (position, "s", position, type(event).__name__, START, None, None, None, None)
        board.apply(RecordedEvent(*row, event=event))
    assert board.breakers["candles:ticker"].successes == sum(len(s.fetched) for s in seals)


def test_compact_closes_price_exactly_as_the_decimal_candles_do() -> None:
    """A long backtest holds closes as integers and exponents: every ticker it serves is the
    same Decimal, digit for digit, and the manifest (so the run id) is unchanged."""
    full = generate_sample(seed=5, start=START, days=2, missing_share=0.01)
    compact = generate_sample(seed=5, start=START, days=2, missing_share=0.01, compact=True)
    assert compact.manifest == full.manifest
    times = full.cycle_times()
    assert compact.cycle_times() == times
    clock = SimulatedClock(times[0])
    sources = [CandleSource(c, clock=clock, seed=1) for c in (full, compact)]
    for moment in times[::7]:
        clock.set(moment)
        for symbol in full.symbols:
            served = []
            for source in sources:
                try:
                    served.append(str(asyncio.run(source.fetch_ticker(symbol)).last))
                except ProviderError as e:
                    served.append(e.error_class)
            assert served[0] == served[1]


def test_the_candle_source_reads_half_open_intervals() -> None:
    """At a time t the source knows the last candle that has closed by t: the one whose
    interval [open, open + 5m) ended at or before t, never the one t lies in."""
    sample = generate_sample(seed=2, start=START, days=1, symbols=("BTC/USDT",), missing_share=0.0)
    closes = sample.frames["BTC/USDT"]["close"]
    times = sample.cycle_times()  # the closes: open + 5m
    clock = SimulatedClock(times[3])
    source = CandleSource(sample, clock=clock, seed=1)
    for moment, expected in [
        (times[3], closes.iloc[3]),  # exactly at a close: that candle has just closed
        (times[4] - timedelta(milliseconds=1), closes.iloc[3]),  # still inside the next one
        (times[4], closes.iloc[4]),
    ]:
        clock.set(moment)
        assert asyncio.run(source.fetch_ticker("BTC/USDT")).last == expected


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("nowhere.module:Thing", {}, "cannot load strategy"),
        ("runs.strategy:Momentum", {"speed": 3}, "refused its params"),
        ("tally.run.strategy:CycleView", {}, "refused its params"),
        ("tally.run.strategy:load_strategy", {"path": "x", "params": {}}, "not a strategy path"),
        ("justaname", {}, "not a strategy path"),
    ],
)
def test_a_bad_strategy_path_is_a_config_error(
    path: str, params: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_strategy(path, params)


def test_the_run_id_and_config_hash_are_stable() -> None:
    config = {"run": {"seed": 1, "b": [1, 2]}, "ingest": {"x": "1"}}
    same = {"ingest": {"x": "1"}, "run": {"b": [1, 2], "seed": 1}}
    assert context.config_hash(config) == context.config_hash(same)
    data = {"kind": "generated"}
    assert context.run_id_for(context.config_hash(config), 1, data) == context.run_id_for(
        context.config_hash(same), 1, data
    )
    assert context.run_id_for(context.config_hash(config), 2, data) != context.run_id_for(
        context.config_hash(config), 1, data
    )


def test_field_diff_and_equity_side_by_side() -> None:
    a = b'["s","T","2026-01-01T00:00:00Z","r",null,null,null,{"type":"T","qty":"1","m":{"x":"1"}}]'
    b = b'["s","T","2026-01-01T00:00:00Z","r",null,null,null,{"type":"T","qty":"2","m":{"x":"1"}}]'
    assert field_diff(a, b) == {"event.qty": ("1", "2")}
    assert field_diff(a, b, ignore=("qty",)) == {}
    t = [START + timedelta(minutes=i) for i in range(3)]
    rows = equity_side_by_side({t[0]: Decimal(1), t[2]: Decimal(3)}, {t[1]: Decimal(2)})
    assert rows == [
        (t[0], Decimal(1), None, None),
        (t[1], Decimal(1), Decimal(2), Decimal(-1)),
        (t[2], Decimal(3), Decimal(2), Decimal(1)),
    ]


def test_a_folder_prepared_again_is_reused_only_while_its_files_are_the_same(
    tmp_path: Path,
) -> None:
    from tally.run.backtest import Selection, prepare_inputs
    from tally.run.settings import RunSettings

    write_candles(generate_sample(seed=1, start=START, days=1), tmp_path)
    settings = RunSettings()
    first = prepare_inputs(settings, tmp_path, None)
    again = prepare_inputs(settings, tmp_path, None)
    assert again.candles is first.candles  # a sweep's next point: not read again
    assert again.data == first.data
    # Another selection or other steps are another data set.
    picked = prepare_inputs(settings, tmp_path, None, selection=Selection(pairs=("BTC/USDT",)))
    assert picked.candles.symbols == ["BTC/USDT"]
    stepped = prepare_inputs(
        settings, tmp_path, None, {s: Decimal(1) for s in first.candles.symbols}
    )
    assert stepped.candles is not first.candles
    # A file whose bytes changed is read again, and its new digest is what a run records.
    path = next(tmp_path.glob("BTC_USDT-*.csv"))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")  # one candle fewer
    changed = prepare_inputs(settings, tmp_path, None)
    assert changed.candles is not first.candles
    before = {m["symbol"]: m for m in first.candles.manifest}
    after = {m["symbol"]: m for m in changed.candles.manifest}
    assert after["BTC/USDT"]["sha256"] != before["BTC/USDT"]["sha256"]
    assert after["BTC/USDT"]["rows"] == before["BTC/USDT"]["rows"] - 1
    assert after["ETH/USDT"] == before["ETH/USDT"]


def _priced_from_whole(
    folder: Path, steps: dict[str, Decimal], pairs: tuple[str, ...], start: datetime, stop: datetime
) -> dict[str, list[str]]:
    """Each chosen symbol's closes as text, the long way: every file whole, selected, then
    rounded (what a run priced with before files were loaded one at a time)."""
    from ingest.candles import select_candles
    from ingest.contracts import round_candle_columns

    chosen = select_candles(load_candles(folder), pairs, start, stop)
    return {
        symbol: [str(c) for c in round_candle_columns(held, steps[symbol]).columns["close"]]
        for symbol, held in chosen.series.items()
    }


def _closes(held: Candles) -> list[str]:
    from ingest.ohlcv import CLOSE_EXPONENT, CLOSE_UNITS

    if not held.compact:
        return [str(c) for c in held.columns["close"]]
    pairs = zip(held.columns[CLOSE_UNITS], held.columns[CLOSE_EXPONENT], strict=True)
    return [str(Decimal(units).scaleb(exponent)) for units, exponent in pairs]


@pytest.mark.parametrize("whole_max", [None, 0, 500], ids=["whole", "closes", "crossing"])
@pytest.mark.parametrize("source", ["generated", "real"])
def test_priced_candles_are_the_whole_files_selected_rounded_and_cut_to_their_closes(
    tmp_path: Path, source: str, whole_max: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whole below WHOLE_CANDLES_MAX; beyond it, closes only, every file's (the ones read
    # before the count crossed it too); the same closes and manifest either way.
    from ingest.candles import hash_files, load_priced_candles, ohlcv_files

    if whole_max is not None:
        monkeypatch.setattr(candles, "WHOLE_CANDLES_MAX", whole_max)

    if source == "real":
        from tests.conftest import shared_data

        folder = shared_data("ohlcv")  # Binance candles, with their float noise and gaps
    else:
        folder = tmp_path
        write_candles(generate_sample(seed=5, start=START, days=3), folder)
    files = ohlcv_files(folder)
    symbols = [symbol for _, symbol, _ in files]
    steps = {s: Decimal("0.00001") if s.endswith("/BTC") else Decimal("0.01") for s in symbols}
    whole = load_candles(folder)
    first, last = (
        min(h.opens[0] for h in whole.series.values()),
        max(h.opens[-1] for h in whole.series.values()),
    )
    start = datetime.fromtimestamp((first + (last - first) // 4) / 1000, UTC)
    stop = datetime.fromtimestamp((last - (last - first) // 4) / 1000, UTC)
    pairs = tuple(symbols[::2])
    priced = load_priced_candles(files, hash_files(files), steps, pairs, start, stop)
    assert priced.symbols == sorted(pairs)
    compact = [held.compact for held in priced.series.values()]
    assert compact == [whole_max is not None] * len(pairs)
    assert {s: _closes(h) for s, h in priced.series.items()} == _priced_from_whole(
        folder, steps, pairs, start, stop
    )
    # The manifest: each chosen file whole (its rows and the sha256 of its bytes), and the
    # steps its closes were rounded to.
    by_symbol = {m["symbol"]: m for m in whole.manifest}
    assert priced.manifest == [
        {**by_symbol[s], "price_step": str(steps[s]), "volume_step": "1E-8"} for s in sorted(pairs)
    ]


def test_loading_priced_candles_refuses_a_file_changed_after_it_was_hashed(
    tmp_path: Path,
) -> None:
    from ingest.candles import hash_files, load_priced_candles, ohlcv_files

    write_candles(generate_sample(seed=1, start=START, days=1), tmp_path)
    files = ohlcv_files(tmp_path)
    digests = hash_files(files)
    eth = tmp_path / "ETH_USDT-5m.csv"
    eth.write_text(eth.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ETH_USDT-5m\.csv changed while it was being read"):
        load_priced_candles(files, digests, {})
    # A file of a pair not chosen is not read at all: broken, it refuses nothing.
    eth.write_text("timestamp,open\nnot,a candle\n", encoding="utf-8")
    picked = load_priced_candles(files, digests, {}, ("BTC/USDT",))
    assert picked.symbols == ["BTC/USDT"] and [m["symbol"] for m in picked.manifest] == ["BTC/USDT"]


def test_closes_too_long_for_64_bits_are_kept_whole_and_served_the_same() -> None:
    from ingest.ohlcv import closes_only

    long = Decimal("12345678.12345678901234")  # 22 digits: no int64 holds its units
    columns = {c: [long, long + 1] for c in ("open", "high", "low", "close")}
    held = Candles([0, 300_000], {**columns, "volume": [Decimal(1)] * 2})
    assert closes_only(held) is held  # kept whole: nothing lost
    short = closes_only(held.rows([]))  # (an empty series is compact)
    assert short.compact and len(short) == 0
    set_ = candles.CandleSet("5m", {"X/USDT": held}, [])
    clock = SimulatedClock(datetime.fromtimestamp(600, UTC))
    ticker = CandleSource(set_, clock=clock, seed=1).ticker_now("X/USDT")
    assert ticker.last == long + 1
