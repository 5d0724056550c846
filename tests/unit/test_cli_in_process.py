"""The CLI's dispatch and error handling, in-process (fast; the e2e suite runs the binary)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import events, open_store
from tally.cli import main

pytestmark = pytest.mark.smoke


def test_commands_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert main(["init", "--db", url]) == 0
    with open_store(url) as store:
        store.append(
            "portfolio/main",
            [events.FundsDeposited(account="main", asset="USDT", amount=Decimal("5"))],
            expected_version=0,
        )
    capsys.readouterr()
    assert main(["verify", "--db", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 1
    assert main(["events", "--db", url, "--json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["event"]["amount"] == "5"
    assert main(["stats", "--db", url]) == 0
    assert "FundsDeposited" in capsys.readouterr().out


def test_errors_print_message_and_hint_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no ledger file")
    assert "hint: run `tally init`" in err
    assert main(["verify", "--bogus"]) == 2
