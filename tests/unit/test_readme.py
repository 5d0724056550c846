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
