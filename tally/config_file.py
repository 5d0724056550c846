"""Reading the YAML configuration file, and the store's part of it alone.

Commands that only read the ledger (verify, stats, events, runs, replay, ...) need nothing
of the file but its ``store:`` section; checking only that section keeps them from
building the ingest and run models (about 0.1 s of start-up). Every command still refuses
an unreadable file, invalid YAML and an unknown top-level section; ``tally run`` checks the
whole file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ledger.errors import ConfigError
from ledger.store.settings import StoreSettings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
DB_ENV = "TALLY_DB"
# The file's top-level sections; `tally.settings.Settings` has exactly these fields (tested).
SECTIONS = ("store", "ingest", "run", "runner", "service", "health")

M = TypeVar("M", bound=BaseModel)


def read_config(path: Path | None) -> tuple[Path, dict[str, Any]]:
    """(the file read, its top-level mapping): readable, valid YAML, known sections only."""
    import yaml

    source = path or DEFAULT_CONFIG
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"cannot read the configuration file: {e.strerror}",
            hint="pass an existing YAML file with --config",
            file=str(source),
        ) from e
    except UnicodeDecodeError as e:
        line = source.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"the configuration file is not UTF-8 text: byte 0x{e.object[e.start]:02x} at "
            f"byte {e.start}",
            hint="save the file as UTF-8",
            file=str(source),
            line=line,
        ) from e
    try:
        raw: Any = yaml.load(text, Loader=_loader()) or {}  # a SafeLoader (see _loader)
    except _DuplicateKey as e:
        raise ConfigError(
            f"the configuration file sets {e.key!r} twice: on line {e.first} and on line {e.again}",
            hint="keep one of them (YAML would silently take the last)",
            file=str(source),
            line=e.again,
        ) from e
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
        raise ConfigError("the configuration file must hold a mapping of keys", file=str(source))
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(
                f"invalid configuration value at {key}: Extra inputs are not permitted",
                hint=f"the file's sections are {', '.join(SECTIONS)}; "
                "see config/default.yaml for every key and its unit",
                file=str(source),
                key=str(key),
            )
    return source, raw


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, again: int) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


def _loader() -> Any:
    """A SafeLoader that refuses a key given twice in one mapping (YAML takes the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    hash(key)
                except TypeError:  # a list as a key: the base class says so
                    continue
                if key in seen:
                    raise _DuplicateKey(str(key), seen[key], line)
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return Loader


def validated(model: type[M], raw: Any, source: Path, prefix: str = "") -> M:
    """``raw`` checked by ``model``; a failure names the file, the key path and the value."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in (*([prefix] if prefix else []), *first["loc"]))
        raise ConfigError(
            f"invalid configuration value at {key}: {first['msg']}",
            hint="fix or remove the key; see config/default.yaml for every key and its unit",
            file=str(source),
            key=key,
            value=repr(first.get("input"))[:80],
        ) from e


def load_store_settings(path: Path | None = None) -> StoreSettings:
    """The ``store:`` section of a configuration file, checked (the default file if None)."""
    if path is None:
        # The embedded file's store section is the model's defaults (a test holds them
        # equal): no YAML parser to import for a read command's start-up.
        return StoreSettings()
    source, raw = read_config(path)
    return validated(StoreSettings, raw.get("store") or {}, source, "store")


def resolve_db_url(cli_value: str | None, store: StoreSettings) -> str:
    """Pick the ledger URL: --db, then $TALLY_DB, then the configuration file."""
    if cli_value is not None and not cli_value.strip():
        raise ConfigError(
            "--db is empty",
            hint="pass a ledger URL such as sqlite:///tally.db, or leave --db out to use "
            "$TALLY_DB or the configuration file",
        )
    return cli_value or os.environ.get(DB_ENV) or store.url
