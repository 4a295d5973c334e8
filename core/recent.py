"""Recently opened dataset files, newest first, kept in the cache's `meta` table.

The list is small (a few paths), so it is stored as one JSON value; a file that no longer
exists is still listed (it may be on a drive that is not mounted) until it falls off the end.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .cache import Cache

RECENT_KEY = "recent_datasets"
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
