"""The one base for configuration models: unknown keys refused, values frozen.

Every part (store, ingest, validator, runs) declares its settings on this base; the shell
composes them into one file (``tally.settings``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A configuration model that refuses unknown keys and cannot be changed once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)
