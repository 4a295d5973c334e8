"""Owner-only files and folders: everything the backend keeps is readable by its user alone.

The data directory holds the API key, uploaded datasets and trained weights. Modes are
set where each thing is created (`os.open`/`mkdir` with a mode), not through the process
umask, because the backend may run in a thread of a larger program whose umask is not
ours to change. Folders made by older versions are tightened when they are opened.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) exist; `path` itself ends up owner-only."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path, DIR_MODE)
    return path


def open_private(path: Path, *, exclusive: bool = False, append: bool = False) -> BinaryIO:
    """Open `path` for writing as an owner-only file (truncated unless `append`).
    `exclusive`: fail with FileExistsError when it already exists."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    flags |= os.O_EXCL if exclusive else 0
    flags |= os.O_APPEND if append else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        if not exclusive and hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)  # a file an older version made kept its mode
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a private temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open_private(temporary) as out:
            out.write(data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def tighten(path: Path, mode: int = FILE_MODE) -> None:
    """Set `path`'s mode when it exists (files other programs made, such as SQLite's)."""
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass


def tighten_tree(path: Path) -> None:
    """Make `path` and everything under it owner-only: what trainers write (numpy, a worker
    process's save_pretrained) is created with the umask's modes, not ours."""
    if path.is_dir() and not path.is_symlink():
        tighten(path, DIR_MODE)
        for root, dirs, files in os.walk(path):
            for name in dirs:
                tighten(Path(root) / name, DIR_MODE)
            for name in files:
                tighten(Path(root) / name, FILE_MODE)
    else:
        tighten(path, FILE_MODE)
