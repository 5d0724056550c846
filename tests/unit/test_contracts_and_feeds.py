"""The OHLCV contract on real candles (../shared/data/ohlcv) and synthetic breakage; the
sequenced-feed consumer on a real trade feed with injected faults."""

from __future__ import annotations

import csv
import random
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from ingest.contracts import (
    candle_gaps,
    check_ohlcv,
    enforce_ohlcv,
    read_ohlcv_csv,
    report_gaps,
    round_ohlcv,
)
from ingest.feed import SequencedFeed
from ledger import events
from ledger.errors import DataContractError, InputError
from tests.conftest import shared_data

STEP = Decimal("0.00000001")


def test_real_candles_keep_their_float_noise_until_rounded_explicitly() -> None:
    frame = read_ohlcv_csv(shared_data("ohlcv", "ETH_BTC-5m.csv"))
    assert len(frame) > 5000 and str(frame.index.tz) == "UTC"
    noisy = Decimal("0.09946999000000001")
    assert frame["open"].iloc[1] == noisy  # read as text: exactly what the file says
    rounded = round_ohlcv(frame, STEP)
    assert rounded["open"].iloc[1] == Decimal("0.09946999")  # the noise was at 1e-17
    assert all(v == round(v, 8) for v in rounded["close"])
    assert check_ohlcv(rounded) == []


def test_real_gaps_are_reported_not_filled() -> None:
    frame = read_ohlcv_csv(shared_data("ohlcv", "ADA_BTC-5m.csv"))
    gaps = candle_gaps(frame, "5m")
    span = (frame.index[-1] - frame.index[0]) // pd.Timedelta(minutes=5) + 1
    assert sum(missing for _, _, missing in gaps) == span - len(frame) > 0
    log: list[events.Event] = []
    assert report_gaps(
        frame, symbol="ADA/BTC", timeframe="5m", emit=lambda _s, e: log.append(e)
    ) == span - len(frame)
    assert all(isinstance(e, events.FeedGapDetected) for e in log) and len(log) == len(gaps)


def good_frame() -> pd.DataFrame:
    index = pd.DatetimeIndex(
        pd.to_datetime([0, 300_000, 600_000], unit="ms", utc=True), name="timestamp"
    )
    d = Decimal
    return pd.DataFrame(
        {
            "open": [d(1), d(2), d(3)],
            "high": [d(2), d(3), d(4)],
            "low": [d(1), d(1), d(2)],
            "close": [d(2), d(3), d(3)],
            "volume": [d(5), d(0), d(1)],
        },
        index=index,
    )


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        (lambda f: f.drop(columns=["volume"]), "required_columns"),
        (lambda f: f.tz_convert(None), "utc_index"),
        (lambda f: f.iloc[[1, 0, 2]], "sorted"),
        (lambda f: f.iloc[[0, 1, 1]], "no_duplicates"),
        (lambda f: f.assign(close=[Decimal(2), None, Decimal(3)]), "no_missing_values"),
        (lambda f: f.assign(low=[Decimal(1), Decimal(0), Decimal(2)]), "positive_prices"),
        (
            lambda f: f.assign(high=[Decimal(2), Decimal("2.5"), Decimal(4)]),
            "high_at_least_open_close",
        ),
        (
            lambda f: f.assign(low=[Decimal(1), Decimal("2.5"), Decimal(2)]),
            "low_at_most_open_close",
        ),
        (lambda f: f.assign(volume=[Decimal(1), Decimal(-1), Decimal(1)]), "volume_not_negative"),
    ],
)
def test_each_rule_names_itself(breakage: object, rule: str) -> None:
    assert check_ohlcv(good_frame()) == []
    broken = breakage(good_frame())  # type: ignore[operator]
    found = check_ohlcv(broken)
    assert rule in [v.rule for v in found]


@pytest.mark.smoke
def test_violations_are_events_and_strict_mode_raises() -> None:
    frame = good_frame().assign(volume=[Decimal(1), Decimal(-1), Decimal(1)])
    log: list[events.Event] = []
    enforce_ohlcv(frame, symbol="X/Y", source="s", strict=False, emit=lambda _s, e: log.append(e))
    (violated,) = log
    assert isinstance(violated, events.DataContractViolated)
    assert (violated.rule, violated.rows, violated.values) == ("volume_not_negative", [1], ["v=-1"])
    with pytest.raises(DataContractError) as caught:
        enforce_ohlcv(frame, symbol="X/Y", source="s", strict=True, emit=lambda _s, _e: None)
    assert caught.value.context["rule"] == "volume_not_negative" and "strict" in caught.value.hint


def test_a_bad_csv_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "X_Y-5m.csv"
    header = "timestamp,open,high,low,close,volume\n"
    path.write_text(f"{header}1767225600000,1,2,1,2,5\n1767225900000,1,oops,1,2,5\n")
    with pytest.raises(InputError) as caught:
        read_ohlcv_csv(path)
    assert caught.value.context["line"] == 3 and caught.value.context["column"] == "high"


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ("", "empty"),
        ("timestamp,open,high,low,close,volume\n", "no candles"),
        ("timestamp,open,high,low,close,volume\n1700000000,1,1,1,1,1\n", "epoch seconds"),
        ("timestamp,open,high,low,close,volume\n-5,1,1,1,1,1\n", "before 1970"),
        ("timestamp,open,high,low,close,volume\n99999999999999999999,1,1,1,1,1\n", "after 2200"),
        ("timestamp,open,high,low,close,volume\n1767225600000,1e400,1,1,1,1\n", "magnitude"),
        (
            "timestamp,open,high,low,close,volume\n1767225600000,1.0" + "1" * 36 + ",1,1,1,1\n",
            "places",
        ),
    ],
)
def test_an_unusable_ohlcv_file_is_refused_with_what_and_where(
    tmp_path: Path, rows: str, said: str
) -> None:
    path = tmp_path / "X_Y-5m.csv"
    path.write_text(rows)
    with pytest.raises(InputError, match=said) as caught:
        read_ohlcv_csv(path)
    assert caught.value.context["file"] == str(path) and caught.value.exit_code == 2


# --- the sequenced feed --------------------------------------------------------------------


def real_trade_ids() -> list[int]:
    with shared_data("trades", "XRP_ETH-trades.csv").open() as f:
        return [int(row["id"]) for row in csv.DictReader(f)]


@pytest.mark.smoke
def test_the_real_feed_is_clean() -> None:
    ids = real_trade_ids()
    assert len(ids) == 12_477
    feed = SequencedFeed("XRP/ETH", reorder_window_max=100, emit=lambda _s, _e: None)
    assert all(feed.accept(i) for i in ids)
    feed.close()
    assert (feed.counters.duplicates, feed.counters.gaps, feed.counters.out_of_order) == (0, 0, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_injected_fault_is_counted_once_and_nothing_else(seed: int) -> None:
    ids = real_trade_ids()
    rng = random.Random(seed)
    # Pick well-separated places for each fault so that none overlaps another.
    spots = sorted(rng.sample(range(200, len(ids) - 200, 150), 60))
    gap_spots, dup_spots, swap_spots = spots[0::3], spots[1::3], spots[2::3]
    gap_lengths = {s: rng.randint(1, 5) for s in gap_spots}
    stream: list[int] = []
    i = 0
    while i < len(ids):
        if i in gap_lengths:
            i += gap_lengths[i]  # drop a run of messages
            continue
        if i in swap_spots:
            stream += [ids[i + 1], ids[i]]  # two messages arrive swapped
            i += 2
            continue
        stream.append(ids[i])
        if i in dup_spots:
            stream.append(ids[rng.randint(i - 30, i)])  # a re-delivery of a recent one
        i += 1
    log: list[events.Event] = []
    feed = SequencedFeed("XRP/ETH", reorder_window_max=100, emit=lambda _s, e: log.append(e))
    processed = [s for s in stream if feed.accept(s)]
    feed.close()
    assert feed.counters.gaps == len(gap_spots)
    assert feed.counters.missing == sum(gap_lengths.values())
    assert feed.counters.duplicates == len(dup_spots)
    assert feed.counters.out_of_order == len(swap_spots)
    assert sorted(processed) == sorted(set(stream))  # every message once, none lost
    assert sum(isinstance(e, events.FeedGapDetected) for e in log) == len(gap_spots)
    assert {(e.expected, e.missing) for e in log if isinstance(e, events.FeedGapDetected)} == {
        (ids[s], n) for s, n in gap_lengths.items()
    }
