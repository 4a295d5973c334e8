"""What the server may know about a transformer checkpoint without importing torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECKPOINT_META = "tunedeck.json"
CHECKPOINT_FORMAT = "tunedeck-transformer"


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / CHECKPOINT_META).is_file()


def read_meta(checkpoint: Path) -> dict[str, Any] | None:
    """A checkpoint's `tunedeck.json`, or None when the folder is not a tunedeck checkpoint."""
    try:
        meta = json.loads((checkpoint / CHECKPOINT_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == CHECKPOINT_FORMAT else None


def standalone_base(checkpoint: Path, name: str) -> dict[str, Any] | None:
    """What a job continuing from `checkpoint` can train on when its base model has left the
    catalog: the checkpoint itself (a whole model), or the base an adapter recorded, if that is
    still on disk. None when neither is usable."""
    meta = read_meta(checkpoint)
    if meta is None:
        return None
    if not meta.get("adapter"):
        return {"name": name, "path": str(checkpoint), "gguf_file": None}
    base = meta.get("base")
    if isinstance(base, dict) and isinstance(base.get("path"), str):
        marker = base.get("gguf_file") or "config.json"
        if (Path(base["path"]) / marker).exists():
            return base
    return None
