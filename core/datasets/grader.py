"""The dataset fields a grader reads: every `{{item.<path>}}` in its templates (reference §4.3).

A grader file is JSON: a grader object, `{"grader": {...}}`, or a whole method object;
every string in it is searched, so multi-graders and nested graders are covered. Paths are
dotted, with indices as `[0]` or `.0`: `{{item.meta.level}}`, `{{item.tags[0]}}`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

_TEMPLATE = re.compile(r"\{\{\s*item\.([^{}\s]+?)\s*\}\}")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class GraderError(Exception):
    """The grader file cannot be read or is not JSON."""


@dataclass(frozen=True, slots=True)
class ItemPath:
    text: str  # as written after `item.`, e.g. "meta.level"
    parts: tuple[str | int, ...]


def parse_path(text: str) -> ItemPath:
    parts: list[str | int] = []
    for match in _PART.finditer(text):
        key, index = match.groups()
        parts.append(int(index) if index is not None else key)
    return ItemPath(text, tuple(parts))


def item_paths(grader: Any) -> tuple[ItemPath, ...]:
    """The distinct `{{item.x}}` paths used anywhere in `grader`, in first-seen order."""
    seen: dict[str, ItemPath] = {}
    for text in _strings(grader):
        for match in _TEMPLATE.finditer(text):
            path = match.group(1)
            if path not in seen:
                seen[path] = parse_path(path)
    return tuple(seen.values())


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_grader(source: str | Path | dict[str, Any]) -> tuple[ItemPath, ...]:
    """The item paths of a grader given as a file path or as parsed JSON."""
    if isinstance(source, dict):
        return item_paths(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraderError(f"cannot read the grader {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GraderError(f"the grader {path} is not UTF-8 text") from None
    try:
        grader = json.loads(text)
    except ValueError as exc:
        raise GraderError(f"the grader {path} is not valid JSON ({exc})") from None
    if not isinstance(grader, dict):
        raise GraderError(f"the grader {path} must be a JSON object")
    return item_paths(grader)


def resolve(example: Any, parts: tuple[str | int, ...]) -> bool:
    """Whether the path exists in the example (a null value exists)."""
    current = example
    for part in parts:
        if isinstance(current, dict):
            key = str(part)
            if key not in current:
                return False
            current = current[key]
        elif isinstance(current, list):
            try:
                index = int(part)
            except ValueError:
                return False
            if not 0 <= index < len(current):
                return False
            current = current[index]
        else:
            return False
    return True
