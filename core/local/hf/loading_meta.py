"""What the server may know about a transformer checkpoint without importing torch."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_META = "tunedeck.json"


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / CHECKPOINT_META).is_file()
