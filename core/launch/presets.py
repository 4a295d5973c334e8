"""Named presets: launch forms saved to fill a form again (`<config>/presets.json`).

    save_preset(paths, "tickets-sft", request)
    load_presets(paths) -> {"tickets-sft": LaunchRequest(...)}
    delete_preset(paths, "tickets-sft")

The file is `{"version": 1, "presets": {name: LaunchRequest.to_json()}}`, owner-only (0600,
in a 0700 folder) and replaced atomically, so a crash mid-write leaves the old file whole.
A damaged file (not JSON, not that shape, written by a newer tunedeck) raises `PresetError`
naming it, on reading and on writing alike: the user's saved presets are never silently
replaced by a file holding only the newest one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tunedeck.core.paths import AppPaths

from .request import LaunchRequest

PRESETS_FILE = "presets.json"
VERSION = 1
MAX_NAME = 64


class PresetError(Exception):
    """A preset that cannot be read, saved or named so; the message names the file."""


def presets_path(paths: AppPaths) -> Path:
    return paths.config_dir / PRESETS_FILE


def load_presets(paths: AppPaths) -> dict[str, LaunchRequest]:
    """Every saved preset by name, in the order saved; {} when there is no file yet."""
    return {name: _request(paths, name, data) for name, data in _read(paths).items()}


def save_preset(paths: AppPaths, name: str, request: LaunchRequest) -> str:
    """Save `request` as `name` (replacing a preset of that name); returns the name as saved
    (without surrounding spaces)."""
    name = checked_name(name)
    presets = _read(paths)
    presets[name] = request.to_json()
    _write(paths, presets)
    return name


def delete_preset(paths: AppPaths, name: str) -> bool:
    """Remove preset `name`; False when there is none of that name."""
    presets = _read(paths)
    if name not in presets:
        return False
    del presets[name]
    _write(paths, presets)
    return True


def checked_name(name: str) -> str:
    """`name` without surrounding spaces, once it is 1 to 64 printable characters."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise PresetError(f"a preset's name is 1 to {MAX_NAME} printable characters, not {name[:80]!r}")
    return name


def _read(paths: AppPaths) -> dict[str, Any]:
    path = presets_path(paths)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"cannot read the presets file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PresetError(f"the presets file {path} is damaged (not JSON: {exc}); fix or move it") from None
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        raise PresetError(f"the presets file {path} is damaged (no 'presets' object); fix or move it")
    if data.get("version") != VERSION:
        raise PresetError(
            f"the presets file {path} has version {data.get('version')!r}; this tunedeck reads version {VERSION}"
        )
    presets: dict[str, Any] = data["presets"]
    for name, preset in presets.items():
        if not isinstance(preset, dict):
            raise PresetError(f"the presets file {path} is damaged (preset {name!r} is not an object); fix or move it")
    return presets


def _request(paths: AppPaths, name: str, data: dict[str, Any]) -> LaunchRequest:
    try:
        return LaunchRequest.from_json(data)
    except (TypeError, ValueError) as exc:
        raise PresetError(f"preset {name!r} in {presets_path(paths)} cannot be read: {exc}") from None


def _write(paths: AppPaths, presets: dict[str, Any]) -> None:
    """The whole file, replaced at once: written to a temporary file beside it (created
    0600 by `mkstemp`, never through the umask), flushed to disk, then renamed over it."""
    path = presets_path(paths)
    text = json.dumps({"version": VERSION, "presets": presets}, indent=2, ensure_ascii=False)
    try:
        paths.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{PRESETS_FILE}.", suffix=".tmp", dir=paths.config_dir)
    except OSError as exc:
        raise PresetError(f"cannot write the presets file {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PresetError(f"cannot write the presets file {path}: {exc}") from None
        raise
