"""Fuzzing through the real CLI entry point, in-process: configuration documents, trade and
OHLCV files, times, amounts and argument lists. Whatever comes in: no traceback and no
internal error, exit 0 or a user error; nothing written on a refusal; and a value that was
accepted always replays. Fixed seeds (derandomize), bounded examples."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import open_store
from tally.cli import main

FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_cases = itertools.count()

# Text that users (and broken exporters) put where numbers and times belong.
odd_text = st.sampled_from(
    [
        "",
        " ",
        "abc",
        "NaN",
        "-nan",
        "inf",
        "-Infinity",
        "1e999999999",
        "1e-999999999",
        "-0",
        "0",
        "0.0",
        "1e18",
        "999999999999999999",
        "1." + "1" * 40,
        "1,5",
        "0x10",
        "\uff11\uff12",
        "\u0000",
        "\n",
        "2026-01-01",
        "2026-13-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "1700000000",
        "1700000000000",
        "-5",
        "99999999999999999999",
        "BTC/USDT",
        "btc/usdt",
        "buy",
        "SELL",
        "short",
        "USDT",
        "\ufffd",
    ]
)
numbers_as_text = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats().map(repr),
)
cell = st.one_of(odd_text, numbers_as_text, st.text(max_size=12))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        code = int(exit.code or 0)
    # Shown by --hypothesis-show-statistics (ascii: xdist's channel refuses lone surrogates).
    event(f"{ascii(argv[0])[:24] if argv else '-'}: exit {code}")
    captured = capsys.readouterr()
    return code, captured.err + captured.out  # --json puts an error on stdout


def assert_no_crash(code: int, err: str, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert code in allowed, err
    assert "Traceback" not in err and "internal error" not in err, err


def fresh_ledger(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'ledger.db'}"
    assert main(["init", "--db", url]) == 0
    return url


def head(url: str) -> int:
    with open_store(url) as store:
        return store.head()


def assert_replays(url: str, account: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The ledger verifies and the account's books rebuild (nothing poisoned)."""
    code, err = run_cli(["verify", "--db", url], capsys)
    assert code == 0, err
    code, err = run_cli(["replay", "--account", account, "--db", url, "--json"], capsys)
    # An account that a refused import left empty is an error that says so, not a crash.
    assert code == 0 or (code == 2 and "holds nothing" in err), err


# --- configuration documents -------------------------------------------------------------

KEYS = [
    ("run", "seed"),
    ("run", "account"),
    ("run", "starting_cash", "USDT"),
    ("run", "commit_cycles"),
    ("run", "sample", "start"),
    ("run", "sample", "days"),
    ("run", "sample", "symbols"),
    ("run", "strategy", "params", "margin"),
    ("run", "strategy", "params", "window"),
    ("run", "strategy", "params", "allocation"),
    ("run", "strategy", "path"),
    ("run", "faults", "failure_rate"),
    ("run", "markets", "BTC/USDT", "qty_step"),
    ("store", "busy_timeout_ms"),
    ("ingest", "breaker", "open_s"),
    ("runner", "heartbeat_s"),
    ("run", "nonsense"),
]
values = st.one_of(
    cell,
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(cell, max_size=3),
    st.dictionaries(cell, cell, max_size=2),
)


@settings(FUZZ, max_examples=40)
@given(path=st.sampled_from(KEYS), value=values)
def test_any_configuration_value_is_run_or_refused_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[str, ...], value: Any
) -> None:
    folder = tmp_path / f"c{next(_cases)}"
    folder.mkdir()
    document: dict[str, Any] = {"run": {"sample": {"days": 1, "symbols": ["BTC/USDT"]}}}
    place = document
    for key in path[:-1]:
        place = place.setdefault(key, {}) if isinstance(place.get(key, {}), dict) else {}
    place[path[-1]] = value
    config = folder / "tally.yaml"
    config.write_text(yaml.safe_dump(document, allow_unicode=True))
    url = f"sqlite:///{folder / 'ledger.db'}"
    code, err = run_cli(["run", "--config", str(config), "--db", url, "--json"], capsys)
    assert_no_crash(code, err)
    if code == 0:
        run_id = json.loads(capsys.readouterr().out or "{}").get("run_id")
        with open_store(url) as store:
            assert store.verify().events > 0
        if run_id:
            code, err = run_cli(["replay", "--run", run_id, "--db", url], capsys)
            assert code == 0, err
    else:
        assert not (folder / "ledger.db").exists()  # refused before the ledger was created


@settings(FUZZ, max_examples=25)
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_configuration_file_are_refused_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes
) -> None:
    config = tmp_path / f"raw{next(_cases)}.yaml"
    config.write_bytes(raw)
    code, err = run_cli(["runs", "--config", str(config), "--db", "sqlite:///none.db"], capsys)
    assert_no_crash(code, err)
    assert code == 2  # no ledger there in any case; the file is checked first or the ledger


# --- files: trades and candles -----------------------------------------------------------


def mostly(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Good values 19 times in 20, so that accepted rows are exercised too."""
    return st.integers(0, 19).flatmap(lambda n: cell if n == 0 else good)


good_amount = st.decimals(min_value="0.00000001", max_value="100000", places=8).map(str)
trade_row = st.tuples(
    mostly(st.sampled_from(["2026-01-01T00:00:00Z", "1767225600000", "2018-03-01 12:00:00"])),
    mostly(st.sampled_from(["BTC/USDT", "ETH/USDT"])),
    mostly(st.sampled_from(["buy", "sell", "BUY"])),
    mostly(good_amount),
    mostly(good_amount),
    mostly(st.sampled_from(["0", "0.1", "0.00012"])),
    mostly(st.sampled_from(["USDT", "BTC"])),
).map(list)
candle_row = st.tuples(
    mostly(st.integers(0, 9).map(lambda i: str(1767225600000 + i * 300_000))),
    mostly(st.sampled_from(["100", "101.5", "99.25", "0.00005330000000000001"])),
    mostly(good_amount),
).map(lambda t: [t[0], t[1], t[1], t[1], t[1], t[2]])  # open = high = low = close


@settings(FUZZ, max_examples=60)
@given(rows=st.lists(trade_row, min_size=1, max_size=4))
def test_any_trade_rows_are_imported_or_refused_without_poisoning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[list[str]]
) -> None:
    folder = tmp_path / f"t{next(_cases)}"
    url = fresh_ledger(folder)
    body = "\n".join(",".join(c.replace(",", ";").replace("\n", " ") for c in r) for r in rows)
    trades = folder / "trades.csv"
    trades.write_text(
        "timestamp,symbol,side,qty,price,fee,fee_asset\n" + body + "\n",
        encoding="utf-8",
        errors="surrogateescape",
    )
    code, err = run_cli(["import", "trades", str(trades), "--db", url], capsys)
    assert_no_crash(code, err)
    if code == 2:
        assert head(url) == 0
    assert_replays(url, "main", capsys)


@settings(FUZZ, max_examples=40)
@given(rows=st.lists(candle_row, min_size=1, max_size=4, unique_by=lambda r: r[0]))
def test_any_ohlcv_rows_are_imported_or_refused_without_poisoning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[list[str]]
) -> None:
    folder = tmp_path / f"o{next(_cases)}"
    url = fresh_ledger(folder)
    rows = sorted(rows, key=lambda r: r[0])
    data = folder / "data"
    data.mkdir()
    body = "\n".join(",".join(c.replace(",", ";").replace("\n", " ") for c in r) for r in rows)
    (data / "BTC_USDT-5m.csv").write_text(
        "timestamp,open,high,low,close,volume\n" + body + "\n",
        encoding="utf-8",
        errors="surrogateescape",
    )
    code, err = run_cli(["import", "ohlcv", str(data), "--db", url], capsys)
    assert_no_crash(code, err)
    if code == 2:
        assert head(url) == 0
    code, err = run_cli(["verify", "--db", url], capsys)
    assert code == 0, err


# --- times, amounts, names ---------------------------------------------------------------


@settings(FUZZ, max_examples=80)
@given(
    amount=mostly(good_amount),
    at=st.one_of(st.none(), mostly(st.sampled_from(["2026-01-01T00:00:00Z", "1767225600000"]))),
    account=mostly(st.sampled_from(["main", "desk-2", "a.b@c"])),
)
def test_any_deposit_is_recorded_or_refused_without_poisoning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], amount: str, at: str | None, account: str
) -> None:
    url = fresh_ledger(tmp_path / f"d{next(_cases)}")
    argv = ["deposit", "USDT", amount, "--account", account, "--db", url]
    code, err = run_cli([*argv, *(["--at", at] if at is not None else [])], capsys)
    assert_no_crash(code, err)
    if code == 0:
        assert_replays(url, account, capsys)
    else:
        assert head(url) == 0


# --- argument lists ----------------------------------------------------------------------

COMMANDS = [
    ["verify"],
    ["stats"],
    ["events"],
    ["runs"],
    ["replay"],
    ["report", "equity"],
    ["reconcile"],
    ["repro", "check"],
    ["diff"],
    ["import", "trades"],
    ["import", "ohlcv"],
    ["deposit"],
    ["init"],
    [],
]
WORDS = [
    "init",
    "verify",
    "stats",
    "events",
    "runs",
    "replay",
    "report",
    "equity",
    "reconcile",
    "repro",
    "check",
    "diff",
    "import",
    "trades",
    "ohlcv",
    "deposit",
    "--json",
    "--limit",
    "--type",
    "--from-position",
    "--to",
    "--at",
    "--account",
    "--run",
    "--expect-head",
    "--format",
    "--out",
    "--help",
    "-h",
    "--version",
    "USDT",
    "5",
    "-1",
    "abc",
    "run-x",
    "",
]


@settings(FUZZ, max_examples=100)
@given(
    command=st.sampled_from(COMMANDS),
    words=st.lists(st.one_of(st.sampled_from(WORDS), cell), max_size=5),
)
def test_any_argument_list_is_answered_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], words: list[str]
) -> None:
    url = fresh_ledger(tmp_path / f"a{next(_cases)}")
    main(["deposit", "USDT", "100", "--db", url])  # something to list, replay and report
    words = [w for w in words if w != "run"]  # the main job is fuzzed above, through its file
    code, err = run_cli([*command, *words, "--db", url], capsys)
    assert_no_crash(code, err, allowed=(0, 1, 2))
    code, err = run_cli(["verify", "--db", url], capsys)
    assert code == 0, err
