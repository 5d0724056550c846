"""Configuration: YAML files checked by pydantic models. Unknown keys are refused and every
limit carries its unit in its name; an error names the file, the key path and the value.

This module belongs to the shell: it composes each part's settings
(``ingest.settings`` among them) into one file, so the core modules never import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.settings import IngestSettings
from ledger.config import StrictModel
from ledger.errors import ConfigError
from ledger.store.settings import StoreSettings
from tally.run.settings import RunSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
DB_ENV = "TALLY_DB"


class Settings(StrictModel):
    """The whole configuration file: each part's settings under its own key."""

    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    run: RunSettings = RunSettings()

    def run_config(self) -> dict[str, Any]:
        """What determines a run (not where its ledger lives): recorded in RunStarted."""
        return self.model_dump(mode="json", include={"ingest", "run"})


def load_settings(path: Path | None = None) -> Settings:
    """Load and check a configuration file (the embedded default when ``path`` is None)."""
    source = path or DEFAULT_CONFIG
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"cannot read the configuration file: {e.strerror}",
            hint="pass an existing YAML file with --config",
            file=str(source),
        ) from e
    try:
        raw: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = {"line": mark.line + 1, "column": mark.column + 1} if mark else {}
        raise ConfigError(
            f"the configuration file is not valid YAML: {getattr(e, 'problem', e)}",
            hint="fix the YAML syntax at the named line",
            file=str(source),
            **where,
        ) from e
    if not isinstance(raw, dict):
        raise ConfigError(
            "the configuration file must hold a mapping of keys",
            file=str(source),
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"invalid configuration value at {key}: {first['msg']}",
            hint="fix or remove the key; see config/default.yaml for every key and its unit",
            file=str(source),
            key=key,
            value=repr(first.get("input"))[:80],
        ) from e


def resolve_db_url(cli_value: str | None, settings: Settings) -> str:
    """Pick the ledger URL: --db, then $TALLY_DB, then the configuration file."""
    return cli_value or os.environ.get(DB_ENV) or settings.store.url
