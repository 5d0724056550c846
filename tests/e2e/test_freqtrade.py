"""freqtrade's own backtest export (../shared/data/freqtrade), imported as it is."""

from __future__ import annotations

import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import shared_data
from tests.e2e.test_cli import tally


def export_document(zip_path: Path) -> dict[str, object]:
    with zipfile.ZipFile(zip_path) as archive:
        name = next(
            n for n in archive.namelist()
            if n.startswith("backtest-result-") and n.endswith(".json") and "_config" not in n
        )  # fmt: skip
        return dict(json.loads(archive.read(name), parse_float=Decimal))


def test_a_freqtrade_export_books_to_its_final_balance_once(tmp_path: Path) -> None:
    export = shared_data("freqtrade", "sample-strategy-7pairs.zip")
    results = export_document(export)["strategy"]["SampleStrategy"]  # type: ignore[index]
    assert tally("init", cwd=tmp_path).returncode == 0
    first = tally("import", "freqtrade", str(export), "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    orders = sum(len(t["orders"]) for t in results["trades"])
    assert done["imported"] == 1 + orders and not done["already"]
    assert done["final_balance"] == str(results["final_balance"]) and done["within_rounding"]
    assert abs(Decimal(done["difference"])) <= Decimal("5e-9") * len(results["trades"])
    assert done["open_positions"] == {}
    again = json.loads(tally("import", "freqtrade", str(export), "--json", cwd=tmp_path).stdout)
    assert again["already"] and again["last_position"] == done["last_position"]
    stats = json.loads(tally("stats", "--json", cwd=tmp_path).stdout)
    assert stats["events"] == 1 + orders  # nothing recorded twice
    # Each round trip's profit is freqtrade's, to its rounding of each trade to 8 decimals.
    trips = json.loads(
        tally("report", "trades", "--account", "freqtrade", "--format", "json", cwd=tmp_path).stdout
    )
    theirs = sorted((t["pair"], t["open_timestamp"], t["profit_abs"]) for t in results["trades"])
    ours = sorted(trips, key=lambda t: (t["symbol"], t["opened_at"]))
    assert len(ours) == len(theirs)
    for trip, (pair, _, profit) in zip(ours, theirs, strict=True):
        assert trip["symbol"] == pair
        assert abs(Decimal(trip["profit_abs"]) - profit) <= Decimal("5e-9"), (trip, profit)


def test_a_damaged_export_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    export = shared_data("freqtrade", "sample-strategy-7pairs.zip")
    assert tally("init", cwd=tmp_path).returncode == 0
    cut = tmp_path / "cut.zip"
    cut.write_bytes(export.read_bytes()[:5000])
    refused = tally("import", "freqtrade", str(cut), cwd=tmp_path)
    assert refused.returncode == 2 and "not a readable zip archive" in refused.stderr
    document = export_document(export)
    trade = document["strategy"]["SampleStrategy"]["trades"][3]  # type: ignore[index]
    del trade["orders"][1]["safe_price"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document, default=float))
    named = tally("import", "freqtrade", str(broken), cwd=tmp_path)
    assert named.returncode == 2
    assert "trades[3].orders[1].safe_price is missing" in named.stderr
    assert json.loads(tally("stats", "--json", cwd=tmp_path).stdout)["events"] == 0
    other = tmp_path / "other.json"
    other.write_text('{"trades": []}')
    foreign = tally("import", "freqtrade", str(other), cwd=tmp_path)
    assert foreign.returncode == 2 and "not a freqtrade backtest export" in foreign.stderr


@pytest.mark.slow
def test_freqtrades_data_dir_reads_as_the_csv_files_and_the_pairs_match_the_export(
    tmp_path: Path,
) -> None:
    data = shared_data("freqtrade", "data", "binance")
    export = shared_data("freqtrade", "sample-strategy-7pairs.zip")
    results = export_document(export)["strategy"]["SampleStrategy"]  # type: ignore[index]
    assert tally("init", cwd=tmp_path).returncode == 0
    assert tally("import", "freqtrade", str(export), cwd=tmp_path).returncode == 0
    candles = tally("import", "ohlcv", str(data), cwd=tmp_path)
    # 40,275 candles and one CandlesImported (steps, sha256) per file of the 7
    assert candles.returncode == 0 and "40,282 events" in candles.stdout
    made = tally("report", "summary", "--account", "freqtrade", "--json", cwd=tmp_path)
    ours = {p["symbol"]: p for p in json.loads(made.stdout)["pairs"]}
    for theirs in results["results_per_pair"]:
        if theirs["key"] == "TOTAL":
            continue
        pair = ours[theirs["key"]]
        assert (pair["trades"], pair["wins"], pair["draws"], pair["losses"]) == (
            theirs["trades"], theirs["wins"], theirs["draws"], theirs["losses"],
        )  # fmt: skip
        gap = abs(Decimal(pair["profit_abs"]) - theirs["profit_total_abs"])
        assert gap <= Decimal("5e-9") * int(theirs["trades"]), (theirs["key"], gap)


def test_json_candles_in_freqtrades_format_read_exactly(tmp_path: Path) -> None:
    from ingest.candles import read_ohlcv_file

    feather = read_ohlcv_file(shared_data("freqtrade", "data", "binance", "ETH_BTC-5m.feather"))
    csv = read_ohlcv_file(shared_data("ohlcv", "ETH_BTC-5m.csv"))
    # freqtrade's feather file: the same candles at the same times, the same decimals
    assert list(feather.index) == list(csv.index)
    assert feather.values.tolist() == csv.values.tolist()
    rows = [
        [int(t.timestamp() * 1000), *(str(v) for v in row)]
        for t, row in zip(csv.index[:50], csv.values[:50].tolist(), strict=True)
    ]
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ETH_BTC-5m.json").write_text(
        json.dumps(rows).replace('"', "")  # numbers as JSON numbers, as freqtrade writes them
    )
    parsed = read_ohlcv_file(folder / "ETH_BTC-5m.json")
    assert list(parsed.index) == list(csv.index[:50])
    assert parsed.values.tolist() == csv.values[:50].tolist()
    (folder / "ETH_BTC-5m.json").write_text("[[1, 2, 3]]")
    assert tally("import", "ohlcv", str(folder), cwd=tmp_path).returncode == 2
