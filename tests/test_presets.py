"""Named presets of the launch form: saved owner-only and atomically, read back whole, and a
damaged file is named and never written over."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tunedeck.core.launch.presets import MAX_NAME, PresetError, delete_preset, load_presets, presets_path, save_preset
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.paths import AppPaths

SFT = LaunchRequest(training_path=Path("/data/train.jsonl"), model="gpt-4o-mini", hyperparameters={"n_epochs": 2})
DPO = LaunchRequest(training_file_id="file-1", model="gpt-4.1-mini", method="dpo", hyperparameters={"beta": 0.2},
                    suffix="prefs", metadata={"team": "a"}, options={"lora_rank": 8})  # fmt: skip


@pytest.fixture
def paths(tmp_path) -> AppPaths:
    return AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


def test_no_file_means_no_presets(paths):
    assert load_presets(paths) == {}
    assert delete_preset(paths, "nothing") is False
    assert not presets_path(paths).exists()


def test_presets_are_saved_and_read_back_in_order(paths):
    save_preset(paths, "tickets sft", SFT)
    assert save_preset(paths, "  prefs ☕  ", DPO) == "prefs ☕"
    assert load_presets(paths) == {"tickets sft": SFT, "prefs ☕": DPO}
    save_preset(paths, "tickets sft", DPO)  # the same name replaces it
    assert load_presets(paths) == {"tickets sft": DPO, "prefs ☕": DPO}
    assert delete_preset(paths, "tickets sft") is True
    assert list(load_presets(paths)) == ["prefs ☕"]


def test_the_file_is_owner_only_and_nothing_temporary_is_left(paths):
    previous = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        save_preset(paths, "a", SFT)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(presets_path(paths).stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.config_dir.stat().st_mode) == 0o700
    assert [p.name for p in paths.config_dir.iterdir()] == ["presets.json"]


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_NAME + 1), "tab\there", "bidi\u202eevil", "new\nline"])
def test_a_name_is_1_to_64_printable_characters(paths, name):
    with pytest.raises(PresetError, match="1 to 64 printable characters"):
        save_preset(paths, name, SFT)
    assert not presets_path(paths).exists()
    save_preset(paths, "x" * MAX_NAME, SFT)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not JSON"),
        ("[]", "no 'presets' object"),
        ('{"version": 1, "presets": []}', "no 'presets' object"),
        ('{"version": 1, "presets": {"a": 3}}', "preset 'a' is not an object"),
        ('{"version": 9, "presets": {}}', "has version 9"),
        ('{"version": 1, "presets": {"a": {"hyperparameters": {}, "unknown_keyword": 1, "seed": 1, "n": 2}}}', None),
    ],
)
def test_a_damaged_file_is_named_and_never_written_over(paths, content, why):
    paths.config_dir.mkdir(parents=True)
    presets_path(paths).write_text(content, encoding="utf-8")
    if why is None:  # unknown keys are not damage: a newer tunedeck's preset still loads
        assert load_presets(paths)["a"].seed == 1
        return
    attempts = (lambda: load_presets(paths), lambda: save_preset(paths, "b", SFT), lambda: delete_preset(paths, "a"))
    for attempt in attempts:
        with pytest.raises(PresetError) as error:
            attempt()
        assert str(presets_path(paths)) in str(error.value) and why in str(error.value)
    assert presets_path(paths).read_text(encoding="utf-8") == content


def test_the_file_holds_the_requests_as_json(paths):
    save_preset(paths, "a", DPO)
    data = json.loads(presets_path(paths).read_text(encoding="utf-8"))
    assert data == {"version": 1, "presets": {"a": DPO.to_json()}}
