"""Completing a typed file path the way a shell does on Tab: the longest text every match
shares, a `/` after a lone folder. Pure filesystem reads of one folder; nothing else."""

from __future__ import annotations

import os
from pathlib import Path

MAX_ENTRIES = 5000
"""A folder bigger than this is not listed to complete (the UI thread must not stall)."""


def complete_path(typed: str, cwd: Path | None = None) -> tuple[str, list[str]]:
    """(the completed text, the names that still match). The text is `typed` itself when
    nothing matches or the matches share nothing more. Hidden entries match only when the
    typed name starts with a dot, as in a shell."""
    expanded = os.path.expanduser(typed) if typed.startswith("~") else typed
    folder_text, _, stem = expanded.rpartition(os.sep)
    folder = Path(folder_text or (os.sep if expanded.startswith(os.sep) else "."))
    if not folder.is_absolute():
        folder = (cwd or Path.cwd()) / folder
    try:
        with os.scandir(folder) as entries:
            names = []
            for n, entry in enumerate(entries):
                if n >= MAX_ENTRIES:
                    return typed, []
                if entry.name.startswith(stem) and (stem.startswith(".") or not entry.name.startswith(".")):
                    names.append(entry.name + (os.sep if _is_dir(entry) else ""))
    except OSError:
        return typed, []
    if not names:
        return typed, []
    shared = os.path.commonprefix(sorted(names))
    if len(shared) <= len(stem):
        return typed, sorted(names)
    prefix = typed[: len(typed) - len(stem)]
    return prefix + shared, sorted(names)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
