from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ledger.errors import ConfigError
from tally.config_file import SECTIONS, load_store_settings
from tally.settings import DEFAULT_CONFIG, Settings, load_settings, resolve_db_url

pytestmark = pytest.mark.smoke


def test_the_embedded_default_loads() -> None:
    settings = load_settings()
    assert DEFAULT_CONFIG.exists()
    assert settings.store.url == "sqlite:///tally.db"
    assert settings.store.durable is True


def test_the_embedded_file_says_what_the_models_default_to() -> None:
    # Read commands without --config use StoreSettings() without parsing the file.
    from tally.config_file import load_store_settings

    settings = load_settings()
    assert settings.store == load_store_settings(None) == Settings().store
    assert settings.ingest == Settings().ingest and settings.runner == Settings().runner
    assert settings.service == Settings().service and settings.health == Settings().health


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tally.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  ulr: sqlite:///x.db\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.context["key"] == "store.ulr"
    assert caught.value.context["file"] == str(path)


def test_bad_value_names_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "store:\n  durable: sometimes\n"))
    assert caught.value.context["key"] == "store.durable"
    assert "sometimes" in caught.value.context["value"]


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "store:\n  url: [\n"))
    assert caught.value.context["line"] == 3


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_db_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    monkeypatch.delenv("TALLY_DB", raising=False)
    assert resolve_db_url(None, settings.store) == "sqlite:///tally.db"
    monkeypatch.setenv("TALLY_DB", "sqlite:///env.db")
    assert resolve_db_url(None, settings.store) == "sqlite:///env.db"
    assert resolve_db_url("sqlite:///cli.db", settings.store) == "sqlite:///cli.db"


def test_ingest_limits_are_range_checked_with_their_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "ingest:\n  retry:\n    fetch_attempts_max: 0\n"))
    assert caught.value.context["key"] == "ingest.retry.fetch_attempts_max"
    assert caught.value.context["value"] == "0"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "ingest:\n  breaker:\n    open_seconds: 5\n"))
    assert caught.value.context["key"] == "ingest.breaker.open_seconds"  # units are in names
    with pytest.raises(ConfigError, match="backoff_ms_cap must be >= backoff_ms_base"):
        load_settings(
            write(
                tmp_path, "ingest:\n  retry:\n    backoff_ms_base: 500\n    backoff_ms_cap: 100\n"
            )
        )


def test_the_default_ingest_limits_are_the_seed_systems() -> None:
    retry = load_settings().ingest.retry
    assert (retry.fetch_attempts_max, retry.backoff_ms_base, retry.backoff_ms_cap) == (3, 100, 1000)


def test_the_file_sections_are_the_settings_fields() -> None:
    assert tuple(Settings.model_fields) == SECTIONS


def test_the_store_section_alone_is_checked_for_read_commands(tmp_path: Path) -> None:
    store = load_store_settings(write(tmp_path, "store:\n  lock_timeout_ms: 250\n"))
    assert store.lock_timeout_ms == 250
    with pytest.raises(ConfigError) as caught:
        load_store_settings(write(tmp_path, "store:\n  durable: sometimes\n"))
    assert caught.value.context["key"] == "store.durable"
    with pytest.raises(ConfigError) as caught:
        load_store_settings(write(tmp_path, "stroe:\n  durable: true\n"))
    assert caught.value.context["key"] == "stroe"  # a misspelt section is never ignored
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_store_settings(write(tmp_path, "store:\n  url: [\n"))


def test_a_read_command_builds_no_run_or_ingest_models(tmp_path: Path) -> None:
    code = (
        "import sys; from tally.cli import main; main(['init', '--db', sys.argv[1]]); "
        "main(['verify', '--db', sys.argv[1]]); "
        "print(sorted(m for m in ('ingest.settings', 'tally.run.settings', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{tmp_path}/t.db"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
