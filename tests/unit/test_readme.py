"""The README's two commands are what a newcomer runs, and CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.smoke


def readme_commands() -> list[str]:
    return re.findall(r"```\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first, second = readme_commands()
    assert text.index(first) < 600, "the main-job command must open the README"
    assert "pip install" in first and first.endswith("tally run")
    assert "pip install" in second and "pytest" in second


def test_ci_runs_the_readme_test_command() -> None:
    _, test_command = readme_commands()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_python_examples_run_and_print_what_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import runpy

    caplog.set_level(logging.INFO)
    from tally.cli import main

    text = (ROOT / "README.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(examples) == 2
    for number, code in enumerate(examples):  # each on a fresh ledger, as a reader would
        folder = tmp_path / f"example{number}"
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert main(["init", "--db", "sqlite:///tally.db"]) == 0
        (folder / "example.py").write_text(code)
        runpy.run_path(str(folder / "example.py"))
    shown = "\n".join(f"{r.levelname} {r.getMessage()}" for r in caplog.records)
    # The feed-blip example's log lines are the README's excerpt, position for position.
    for line in re.findall(r"^((?:ERROR|INFO) CIRCUIT_\S+ .*)$", text, re.M):
        assert line in shown, line
