"""The sweep's grid: values as written, every combination in order, a stable id."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import InputError
from tally.sweep import SweepResult, grid_points, load_grid_file, parse_values, sweep_id_of


def test_values_keep_their_text_unless_they_are_integers() -> None:
    assert parse_values("window=24, 48") == ("window", [24, 48])
    assert parse_values("margin=0.005,0.010") == ("margin", ["0.005", "0.010"])
    assert parse_values("mode=007") == ("mode", ["007"])  # not silently the number 7
    with pytest.raises(InputError, match="NAME=V1"):
        parse_values("window")


def test_the_grid_is_every_combination_first_name_slowest() -> None:
    points = grid_points({"a": [1, 2], "b": ["x", "y"]})
    assert points == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
                      {"a": 2, "b": "y"}]  # fmt: skip


def test_the_sweep_id_follows_its_inputs() -> None:
    points = grid_points({"a": [1, 2]})
    one = sweep_id_of("h", 7, {"data": None}, points)
    assert one == sweep_id_of("h", 7, {"data": None}, grid_points({"a": [1, 2]}))
    assert one != sweep_id_of("h", 8, {"data": None}, points)
    assert one != sweep_id_of("h", 7, {"data": None}, points[:1])


def test_a_grid_file_and_its_mistakes(tmp_path: Path) -> None:
    good = tmp_path / "g.yaml"
    good.write_text("params:\n  window: [24, 48]\npoints:\n  - {window: 96, margin: '0.02'}\n")
    assert load_grid_file(good) == ({"window": [24, 48]}, [{"window": 96, "margin": "0.02"}])
    bad = tmp_path / "b.yaml"
    bad.write_text("params:\n  window: 24\n")
    with pytest.raises(InputError, match="list of values"):
        load_grid_file(bad)


def test_the_leaderboard_puts_unknown_figures_last_and_drawdown_smallest_first() -> None:
    outcome = lambda dd, sharpe: {"figures": {"max_drawdown_pct": dd, "sharpe": sharpe}}  # noqa: E731
    result = SweepResult("s", [{"a": 1}, {"a": 2}, {"a": 3}],
                         [outcome(5.0, None), outcome(1.0, 2.0), outcome(3.0, 1.0)])  # fmt: skip
    result.metric = "drawdown"
    assert [r["params"]["a"] for r in result.leaderboard()] == [2, 3, 1]
    result.metric = "sharpe"
    assert [r["params"]["a"] for r in result.leaderboard()] == [2, 3, 1]
    result.metric = "profit"
    assert [r["rank"] for r in result.leaderboard()] == [1, 2, 3]


def test_the_cli_offers_exactly_the_metrics_the_leaderboard_knows() -> None:
    # The CLI spells them out so that `tally --help` need not import the sweep module.
    import argparse

    from tally.cli.cmd_sweep import _sweep_arguments
    from tally.sweep import METRICS

    parser = argparse.ArgumentParser()
    _sweep_arguments(parser)
    (metric,) = [a for a in parser._actions if a.dest == "metric"]
    assert metric.choices == list(METRICS)
