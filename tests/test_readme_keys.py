"""README.md's key tables are the app's bindings (scripts/keys_table.py writes them): a
changed key fails here until the README is regenerated."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def keys_table():
    spec = importlib.util.spec_from_file_location("keys_table", REPO / "scripts" / "keys_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_key_tables_match_the_bindings(keys_table):
    section = keys_table.readme_section((REPO / "README.md").read_text(encoding="utf-8"))
    assert section is not None, "README.md has lost its key-table markers"
    assert section == keys_table.key_tables(), "README.md's keys differ from the bindings: run python scripts/keys_table.py"


def test_the_dataset_keys_the_old_table_got_wrong_are_there(keys_table):
    tables = keys_table.key_tables()
    dataset = tables.split("**Dataset**")[1].split("**")[0]
    assert "| `r` `v` | Raw JSON of the example (again: conversation) |" in dataset
    assert "| `i` | Move to the errors and warnings list |" in dataset
    assert "| `end` `G` | Last example (the examples) |" in dataset
    assert "| `?` `f1` | The keys that work here |" in tables


def test_a_changed_binding_makes_the_check_fail_until_regenerated(keys_table, tmp_path, monkeypatch, capsys):
    from tunedeck.tui.screens.dataset import DatasetScreen

    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(keys_table, "README", readme)
    assert keys_table.main(["--check"]) == 0

    bindings = [replace(b, key="x") if b.id == "dataset.split" else b for b in DatasetScreen.BINDINGS]
    monkeypatch.setattr(DatasetScreen, "BINDINGS", bindings)
    assert keys_table.main(["--check"]) == 1
    assert "differ from the bindings" in capsys.readouterr().err

    assert keys_table.main([]) == 0  # rewrites the tables, and only them
    text = readme.read_text(encoding="utf-8")
    assert "| `x` | Split into train and validation files |" in text
    assert keys_table.main(["--check"]) == 0
    outside = (REPO / "README.md").read_text(encoding="utf-8").split(keys_table.START)
    assert text.startswith(outside[0]) and text.endswith(outside[1].split(keys_table.END)[1])


def test_a_readme_without_markers_is_an_error_that_says_what_to_add(keys_table, tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# tunedeck\n", encoding="utf-8")
    monkeypatch.setattr(keys_table, "README", readme)
    assert keys_table.main(["--check"]) == 1
    assert "no key section" in capsys.readouterr().err
