"""A reloaded configuration: validated whole, applied or refused with every key path."""

from __future__ import annotations

from pathlib import Path

from ledger import events
from tally.reload import (
    FROZEN_FOR_RUNS,
    FROZEN_FOR_SERVICE,
    RELOADABLE_FOR_RUNS,
    ConfigReloader,
    changed_paths,
)
from tally.settings import load_settings


def reloader(tmp_path: Path, text: str, **options: object) -> ConfigReloader:
    path = tmp_path / "tally.yaml"
    path.write_text(text)
    return ConfigReloader(path, load_settings(path), **options)  # type: ignore[arg-type]


def look(found: ConfigReloader, text: str) -> object:
    found.path.write_text(text)
    found.request()
    return found.poll()


def test_a_valid_change_names_its_key_paths_and_the_two_hashes(tmp_path: Path) -> None:
    watch = reloader(tmp_path, "service:\n  append_events_max: 50\n", frozen=FROZEN_FOR_SERVICE)
    before = watch.sha256
    assert watch.poll() is None  # nothing asked for
    found = look(watch, "service:\n  append_events_max: 10\n  read_limit_max: 7\n")
    assert found is not None and found.settings is not None  # type: ignore[attr-defined]
    event = found.event  # type: ignore[attr-defined]
    assert isinstance(event, events.ConfigChanged)
    assert event.changed == ["service.append_events_max", "service.read_limit_max"]
    assert event.old_sha256 == before and event.new_sha256 == watch.sha256 != before
    assert watch.settings.service.append_events_max == 10


def test_an_invalid_change_lists_every_error_and_changes_nothing(tmp_path: Path) -> None:
    watch = reloader(tmp_path, "service:\n  append_events_max: 50\n", frozen=FROZEN_FOR_SERVICE)
    found = look(watch, "service:\n  append_events_max: 0\n  read_limit_max: lots\n")
    event = found.event  # type: ignore[attr-defined]
    assert isinstance(event, events.ConfigRejected) and found.settings is None  # type: ignore[attr-defined]
    assert [e.split(":")[0] for e in event.errors] == [
        "service.append_events_max", "service.read_limit_max",
    ]  # fmt: skip
    assert watch.settings.service.append_events_max == 50
    watch.request()
    assert watch.poll() is None  # the same rejected content: reported once
    broken = look(watch, "service: [unclosed\n")
    assert isinstance(broken.event, events.ConfigRejected)  # type: ignore[attr-defined]


def test_keys_a_running_process_cannot_take_are_refused_with_the_reason(tmp_path: Path) -> None:
    served = reloader(tmp_path, "service:\n  port: 8800\n", frozen=FROZEN_FOR_SERVICE)
    event = look(served, "service:\n  port: 8801\n").event  # type: ignore[attr-defined]
    assert isinstance(event, events.ConfigRejected)
    assert event.errors[0].startswith("service.port: cannot change while running")
    run = reloader(
        tmp_path, "run:\n  live: {interval_s: 60}\n",
        frozen=FROZEN_FOR_RUNS, reloadable=RELOADABLE_FOR_RUNS,
    )  # fmt: skip
    mode = look(run, "run:\n  mode: live\n  live: {interval_s: 60}\n").event  # type: ignore[attr-defined]
    assert "run.mode: cannot change while running" in mode.errors[0]
    seed_of_data = look(run, "run:\n  sample: {days: 2}\n  live: {interval_s: 60}\n")
    assert "takes effect only when the run starts again" in seed_of_data.event.errors[0]  # type: ignore[attr-defined]
    fine = look(run, "run:\n  live: {interval_s: 5}\n").event  # type: ignore[attr-defined]
    assert isinstance(fine, events.ConfigChanged) and fine.changed == ["run.live.interval_s"]


def test_changed_paths_walks_mappings_and_takes_lists_whole() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    new = {"a": {"b": 2, "c": [1, 3]}, "e": 1}
    assert changed_paths(old, new) == ["a.b", "a.c", "d", "e"]
