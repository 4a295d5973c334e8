"""Recently opened dataset files, newest first, kept in the cache's `meta` table.

The list is small (a few paths), so it is stored as one JSON value; a file that no longer
exists is still listed (it may be on a drive that is not mounted) until it falls off the end.
Beside it, the line each listed file was left at, so opening it again returns there.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .cache import Cache

RECENT_KEY = "recent_datasets"
LINES_KEY = "recent_dataset_lines"
MAX_RECENT = 12


def with_recent(paths: list[str], path: str, limit: int = MAX_RECENT) -> list[str]:
    """`paths` with `path` moved (or added) to the front, at most `limit` long."""
    return [path, *(p for p in paths if p != path)][:limit]


async def recent_files(cache: Cache) -> list[str]:
    """The remembered paths, newest first (an unreadable value counts as none)."""
    stored = await cache.get_meta(RECENT_KEY)
    try:
        paths = json.loads(stored) if stored else []
    except ValueError:
        return []
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


async def remember_file(cache: Cache, path: str | os.PathLike[str]) -> list[str]:
    """Put `path` (made absolute) first in the list; returns the new list."""
    paths = with_recent(await recent_files(cache), os.path.abspath(os.fspath(path)))
    await cache.set_meta(RECENT_KEY, json.dumps(paths))
    return paths


async def _lines(cache: Cache) -> dict[str, int]:
    stored = await cache.get_meta(LINES_KEY)
    try:
        lines = json.loads(stored) if stored else {}
    except ValueError:
        return {}
    if not isinstance(lines, dict):
        return {}
    return {p: n for p, n in lines.items() if isinstance(p, str) and type(n) is int and n >= 1}


async def last_line(cache: Cache, path: str | os.PathLike[str]) -> int | None:
    """The line `path` was left at when it was last shown (None: never, or forgotten)."""
    return (await _lines(cache)).get(os.path.abspath(os.fspath(path)))


async def remember_line(cache: Cache, path: str | os.PathLike[str], line: int) -> None:
    """Record the line `path` is left at; only files still in the recent list keep theirs."""
    key = os.path.abspath(os.fspath(path))
    listed = set(await recent_files(cache))
    lines = {p: n for p, n in (await _lines(cache)).items() if p in listed}
    if key in listed and line >= 1:
        lines[key] = int(line)
    await cache.set_meta(LINES_KEY, json.dumps(lines))
