"""CSV candles are read, checked and rounded as plain columns, without pandas: the same
values, digit for digit, as a pandas read of the text, the same contract verdicts as the
frame checks, and a run of CSV files that never imports pandas or numpy."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.candles import generate_sample, write_candles
from ingest.contracts import (
    check_candles,
    check_ohlcv,
    read_csv_candles,
    read_ohlcv_csv,
    round_candle_columns,
    round_ohlcv,
)
from ingest.market import OHLCV_COLUMNS
from ingest.ohlcv import Candles
from ledger.errors import InputError
from tests.conftest import shared_data

HEADER = "timestamp,open,high,low,close,volume\n"
ROOT = Path(__file__).resolve().parents[2]


def test_real_files_read_as_a_pandas_read_of_their_text_does() -> None:
    folder = shared_data("ohlcv")
    files = sorted(folder.glob("*.csv"))
    assert len(files) == 7
    for path in files:
        candles = read_csv_candles(path)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert list(candles.opens) == [int(t) for t in raw["timestamp"]], path.name
        for column in OHLCV_COLUMNS:
            ours = [str(v) for v in candles.columns[column]]  # the digits, not just the value
            assert ours == [str(Decimal(t)) for t in raw[column]], (path.name, column)
        frame = read_ohlcv_csv(path)
        assert list(frame.index.as_unit("ms").asi8) == list(candles.opens)
        assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
        assert check_candles(candles) == check_ohlcv(frame) == []
        step = Decimal("0.00000001")
        rounded = round_candle_columns(candles, step)
        assert rounded.frame().equals(round_ohlcv(frame, step)), path.name


def broken(rows: list[tuple[int, str, str, str, str, str]]) -> Candles:
    columns = {
        c: [Decimal(r[i]) if r[i] else None for r in rows]
        for i, c in enumerate(OHLCV_COLUMNS, start=1)
    }
    return Candles([r[0] for r in rows], columns)


@pytest.mark.parametrize(
    ("rows", "rule"),
    [
        ([(2, "1", "2", "1", "2", "1"), (1, "1", "2", "1", "2", "1")], "sorted"),
        ([(1, "1", "2", "1", "2", "1"), (1, "1", "2", "1", "2", "1")], "no_duplicates"),
        ([(1, "1", "2", "1", "2", "1"), (2, "1", "", "1", "2", "1")], "no_missing_values"),
        ([(1, "0", "2", "0", "2", "1")], "positive_prices"),
        ([(1, "3", "2", "1", "2", "1")], "high_at_least_open_close"),
        ([(1, "1", "2", "1.5", "2", "1")], "low_at_most_open_close"),
        ([(1, "1", "2", "1", "2", "-1")], "volume_not_negative"),
    ],
)
def test_columns_break_the_contract_as_their_frame_does(
    rows: list[tuple[int, str, str, str, str, str]], rule: str
) -> None:
    stamped = [(1_767_225_600_000 + 300_000 * r[0], *r[1:]) for r in rows]
    candles = broken(stamped)  # type: ignore[arg-type]
    found = check_candles(candles)
    assert [v.rule for v in found] == [rule]
    assert found == check_ohlcv(candles.frame())  # the same rows and values shown


@pytest.mark.parametrize(
    ("text", "said", "line"),
    [
        (HEADER + "1767225600000,1,2,1,2,5\n1767225900000,1,2,1,2\n", "5 fields", 3),
        (HEADER + "\n1767225600000,1,2,1,2,5\n\n1767225900000,1,x,1,2,5\n", "high", 5),
        (HEADER + "1767225600000,1,2,1,2,5\x00\n", "volume", 2),
        (HEADER.replace("high", "hi"), "columns must be", None),
    ],
)
def test_a_bad_csv_is_refused_naming_its_line(
    tmp_path: Path, text: str, said: str, line: int | None
) -> None:
    path = tmp_path / "X_Y-5m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=said) as caught:
        read_csv_candles(path)
    assert caught.value.context["file"] == str(path) and caught.value.exit_code == 2
    assert caught.value.context.get("line") == line


def test_bytes_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "X_Y-5m.csv"
    path.write_bytes(HEADER.encode() + b"1767225600000,1,2,1,\xff,5\n")
    with pytest.raises(InputError, match="can't decode byte 0xff") as caught:
        read_csv_candles(path)
    assert "UTF-8" in caught.value.hint


def test_quoted_fields_and_blank_lines_read_as_plain_ones(tmp_path: Path) -> None:
    path = tmp_path / "X_Y-5m.csv"
    path.write_text(HEADER + '\n"1767225600000","1.10","2",1,"2",5\r\n\n')
    candles = read_csv_candles(path)
    assert list(candles.opens) == [1_767_225_600_000]
    assert [str(candles.columns[c][0]) for c in OHLCV_COLUMNS] == ["1.10", "2", "1", "2", "5"]


def test_a_run_of_csv_files_imports_neither_pandas_nor_numpy(tmp_path: Path) -> None:
    """Nothing a run does with CSV candles needs them: importing them is a fifth of a
    second of every run's process."""
    sample = generate_sample(seed=1, start=pd.Timestamp("2026-01-05", tz="UTC"), days=1)
    write_candles(sample, tmp_path / "data")
    script = (
        "import sys\n"
        "from tally.cli import main\n"
        "try:\n"
        f"    main(['run', '--data', {str(tmp_path / 'data')!r},"
        f" '--db', 'sqlite:///{tmp_path}/t.db'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_plain_file_and_the_same_candles_as_general_csv_read_alike(tmp_path: Path) -> None:
    """A file as ccxt writes it is split into columns at once; the same rows with a blank
    line, a quote or CRLF endings go through the CSV parser: the candles are the same."""
    rows = ["1767225600000,1.10,2,1,2,5", "1767225900000,2,2.5,1.9,2.2,0.00000001"]
    variants = {
        "plain": HEADER + "\n".join(rows) + "\n",
        "no final newline": HEADER + "\n".join(rows),
        "blank line": HEADER + "\n".join(rows) + "\n\n",
        "quoted": HEADER + rows[0] + '\n"1767225900000",2,2.5,1.9,2.2,0.00000001\n',
        "crlf": (HEADER + "\n".join(rows) + "\n").replace("\n", "\r\n"),
    }
    read = {}
    for name, text in variants.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_text(text, newline="")
        candles = read_csv_candles(path)
        read[name] = (
            list(candles.opens),
            {c: list(map(str, v)) for c, v in candles.columns.items()},
        )
    assert all(got == read["plain"] for got in read.values()), read
    assert read["plain"][1]["open"] == ["1.10", "2"]


number_texts = st.one_of(
    st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e9"), places=8).map(str),
    st.floats(min_value=1e-9, max_value=9.9, allow_nan=False).map(repr),  # float noise, 1e-05
    st.integers(min_value=1, max_value=10**12).map(str),
)


@settings(max_examples=120, derandomize=True, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 10**6), number_texts, number_texts, st.booleans()),
        min_size=1,
        max_size=12,
        unique_by=lambda r: r[0],
    ),
    ending=st.sampled_from(["\n", "\r\n"]),
    last_newline=st.booleans(),
    blank_line=st.booleans(),
    quoted=st.booleans(),
)
def test_any_well_formed_file_reads_as_pandas_reads_its_text(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[int, str, str, bool]],
    ending: str,
    last_newline: bool,
    blank_line: bool,
    quoted: bool,
) -> None:
    """Random candles written in the forms files take (CRLF, a blank line, quotes, a last
    line without its newline, float noise and exponents): the columns read are the texts
    pandas reads, digit for digit, whichever of the two paths reads them."""
    lines = []
    for n, (step, one, other, keep_volume) in enumerate(sorted(rows)):
        stamp = 1_767_225_600_000 + 300_000 * step
        low, high = sorted((one, other), key=Decimal)  # open = low, close = high: a good candle
        fields = [str(stamp), low, high, low, high, "5" if keep_volume else "0"]
        if quoted and n == 0:
            fields = [f'"{f}"' for f in fields]
        lines.append(",".join(fields))
    if blank_line:
        lines.insert(len(lines) // 2, "")
    text = ending.join([HEADER.strip(), *lines]) + (ending if last_newline else "")
    path = tmp_path_factory.mktemp("csv") / "X_Y-5m.csv"
    path.write_bytes(text.encode())
    candles = read_csv_candles(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(candles.opens) == [int(t) for t in raw["timestamp"]]
    for column in OHLCV_COLUMNS:
        assert [str(v) for v in candles.columns[column]] == [str(Decimal(t)) for t in raw[column]]
    assert check_candles(candles) == check_ohlcv(read_ohlcv_csv(path)) == []
