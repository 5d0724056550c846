"""The one base for configuration models: unknown keys refused, values frozen.

Every part (store, ingest, validator, runs) declares its settings on this base; the shell
composes them into one file (``tally.settings``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict


class StrictModel(BaseModel):
    """A configuration model that refuses unknown keys and cannot be changed once built.

    Strict types: ``seed: "7"``, ``days: 1.5``, ``durable: "yes"`` or ``heartbeat_s: true``
    are refused, never coerced. Only the types YAML cannot write natively are read from
    text: amounts (``Amount``, so ``'0.01'`` stays exact), times and paths.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# The types YAML has no literal for, read from their text in a strict model.
Amount = Annotated[Decimal, Strict(False)]
Moment = Annotated[datetime, Strict(False)]
Folder = Annotated[Path, Strict(False)]
