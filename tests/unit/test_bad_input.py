"""Bad input never crashes Tally and never poisons the ledger: each mistake a user made in
the issue's trials gets exit 2, a message naming what and where, a hint, no traceback, and
leaves the ledger as it was. Run in-process through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import open_store
from tally.cli import main

pytestmark = pytest.mark.smoke

HEADER = "timestamp,open,high,low,close,volume\n"
TRADES = "timestamp,symbol,side,qty,price,fee,fee_asset\n"


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


# (name, files to write, arguments after the command; {db} and {dir} are filled in, and the
# words the message must hold)
CASES: list[tuple[str, dict[str, str | bytes], list[str], str]] = [
    (
        "param not a number",
        {"c.yaml": "run:\n  strategy:\n    params: {margin: abc}\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "not a number",
    ),
    (
        "constructor refuses",
        {"c.yaml": "run:\n  strategy:\n    path: fractions:Fraction\n    params: {numerator: x}\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "refused its params",
    ),
    (
        "sample start overflows",
        {"c.yaml": "run:\n  sample: {start: '9999-12-30T00:00:00Z'}\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "run.sample",
    ),
    (
        "config byte 0xff",
        {"c.yaml": b"run:\n  seed: \xff\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "not UTF-8",
    ),
    (
        "duplicate key",
        {"c.yaml": "run:\n  seed: 1\n  seed: 2\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "twice: on line 2 and on line 3",
    ),
    (
        "negative cash",
        {"c.yaml": "run:\n  starting_cash: {USDT: '-100'}\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "must be positive",
    ),
    (
        "zero cash",
        {"c.yaml": "run:\n  starting_cash: {USDT: '0'}\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "must be positive",
    ),
    (
        "a number as text",
        {"c.yaml": "run:\n  seed: '7'\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "run.seed",
    ),
    (
        "yes is not true",
        {"c.yaml": "store:\n  durable: 'yes'\n"},
        ["run", "--config", "{dir}/c.yaml"],
        "store.durable",
    ),
    ("empty ohlcv", {"d/BTC_USDT-5m.csv": ""}, ["run", "--data", "{dir}/d"], "empty"),
    ("header only", {"d/BTC_USDT-5m.csv": HEADER}, ["run", "--data", "{dir}/d"], "no candles"),
    (
        "huge stamp",
        {"d/BTC_USDT-5m.csv": HEADER + "99999999999999999999,1,1,1,1,1\n"},
        ["run", "--data", "{dir}/d"],
        "after 2200",
    ),
    (
        "seconds",
        {"d/BTC_USDT-5m.csv": HEADER + "1700000000,1,1,1,1,1\n"},
        ["import", "ohlcv", "{dir}/d"],
        "epoch seconds",
    ),
    (
        "price 1e400",
        {"d/BTC_USDT-5m.csv": HEADER + "1767225600000,1e400,1e400,1e400,1e400,1\n"},
        ["import", "ohlcv", "{dir}/d"],
        "magnitude",
    ),
    ("deposit 1e999999999", {}, ["deposit", "USDT", "1e999999999"], "magnitude"),
    ("deposit tiny", {}, ["deposit", "USDT", "1e-999999999"], "decimal places"),
    (
        "deposit at year 1",
        {},
        ["deposit", "USDT", "5", "--at", "0001-01-01T00:00:00+05:00"],
        "out of range",
    ),
    ("replay at year 9999", {}, ["replay", "--at", "9999-12-31T23:59:59-05:00"], "out of range"),
    (
        "trade qty tiny",
        {"t.csv": TRADES + "2026-01-01T00:00:00Z,BTC/USDT,buy,1e-999999999,1,0,USDT\n"},
        ["import", "trades", "{dir}/t.csv"],
        "decimal places",
    ),
    (
        "trade at the edge",
        {"t.csv": TRADES + "9999-12-31T23:59:59-05:00,BTC/USDT,buy,1,1,0,USDT\n"},
        ["import", "trades", "{dir}/t.csv"],
        "out of range",
    ),
    (
        "sell not held",
        {"t.csv": TRADES + "2026-01-01T00:00:00Z,BTC/USDT,sell,5,100,0,USDT\n"},
        ["import", "trades", "{dir}/t.csv"],
        "holds 0 BTC",
    ),
    ("empty account", {}, ["deposit", "USDT", "5", "--account", ""], "not a valid name"),
    ("account with newline", {}, ["deposit", "USDT", "5", "--account", "a\nb"], "not a valid name"),
    (
        "port not a number",
        {},
        ["stats", "--db", "postgresql+psycopg://t:pw@127.0.0.1:x/t"],
        "not a database URL",
    ),
    ("empty --db", {}, ["stats", "--db", ""], "--db is empty"),
    ("malformed head", {}, ["verify", "--expect-head", "abcd"], "64 characters"),
]


@pytest.mark.parametrize(
    ("files", "argv", "said"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_mistake_is_exit_2_with_what_where_and_a_hint_and_changes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | bytes],
    argv: list[str],
    said: str,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["init", "--db", url]) == 0
    assert main(["deposit", "USDT", "1000", "--db", url]) == 0
    for name, content in files.items():
        write(tmp_path, name, content)
    capsys.readouterr()
    args = [a.replace("{dir}", str(tmp_path)) for a in argv]
    if "--db" not in args:
        args += ["--db", url]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and said in err and "hint: " in err, err
    assert "Traceback" not in err and "pw@" not in err
    with open_store(url) as store:
        assert store.head() == 1  # only the deposit made before
        store.verify()


def test_an_unexpected_failure_is_one_line_and_exit_70(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from tally import cli

    def broken(_call: object) -> int:
        raise KeyError("a bug")

    commands = [replace(c, handler=broken) if c.name == "stats" else c for c in cli.COMMANDS]
    monkeypatch.setattr(cli, "COMMANDS", commands)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["init", "--db", url]) == 0
    capsys.readouterr()
    assert main(["stats", "--db", url]) == 70
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError") and "--debug" in err
    assert "Traceback" not in err
    assert main(["--debug", "stats", "--db", url]) == 70
    assert "Traceback" in capsys.readouterr().err
