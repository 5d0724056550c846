"""schemathesis against the running service's /openapi.json, with an append and a read token."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import tally
from tests.support.service import issue_token, serving

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["append", "read"])
def test_generated_requests_get_no_5xx_and_documented_answers(tmp_path: Path, scope: str) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    (tmp_path / "small.yaml").write_text("run:\n  sample: {days: 1}\n")
    assert tally("--config", "small.yaml", "run", cwd=tmp_path).returncode == 0
    token = issue_token(tmp_path, scope)
    with serving(tmp_path) as base:
        result = subprocess.run(
            [
                st, "run", f"{base}/openapi.json",
                "--header", f"Authorization: Bearer {token}",
                "--max-examples", "30",
                "--generation-deterministic",
                "--checks", CHECKS,
                # A subscription never ends; it has its own tests.
                "--exclude-path", "/v1/subscribe",
                "--request-timeout", "20",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # schemathesis keeps a cache folder where it runs
            timeout=600,
            check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "failures" not in result.stdout.lower()
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and token not in log
