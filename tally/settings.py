"""Configuration: YAML files checked by pydantic models. Unknown keys are refused and every
limit carries its unit in its name; an error names the file, the key path and the value.

This module belongs to the shell: it composes each part's settings
(``ingest.settings`` among them) into one file, so the core modules never import it.
Reading the file, and the store's section alone, is ``tally.config_file``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.settings import IngestSettings
from ledger.config import StrictModel
from ledger.store.settings import StoreSettings
from tally.config_file import DB_ENV, DEFAULT_CONFIG, read_config, resolve_db_url, validated
from tally.run.settings import RunnerSettings, RunSettings
from tally.service.settings import HealthSettings, ServiceSettings

__all__ = ["DB_ENV", "DEFAULT_CONFIG", "Settings", "load_settings", "resolve_db_url"]


class Settings(StrictModel):
    """The whole configuration file: each part's settings under its own key."""

    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    run: RunSettings = RunSettings()
    runner: RunnerSettings = RunnerSettings()
    service: ServiceSettings = ServiceSettings()
    health: HealthSettings = HealthSettings()

    def run_config(self) -> dict[str, Any]:
        """What determines a run (not where its ledger lives): recorded in RunStarted."""
        config = self.model_dump(mode="json", include={"ingest", "run"})
        if not self.run.alerts.rules:  # as recorded before alerts existed: the same run id
            del config["run"]["alerts"]
        return config


def load_settings(path: Path | None = None) -> Settings:
    """Load and check a whole configuration file (the embedded default when ``path`` is None)."""
    source, raw = read_config(path)
    return validated(Settings, raw, source)
