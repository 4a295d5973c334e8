"""Cursor pagination as the SDK's pagers expect it.

The SDK keeps asking for the next page (`after=<last id>`) until `has_more` is false, so
every list must send `has_more` and honour `after`, or a client loops forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import bad_request


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool


def list_body(page: Page, *, with_bounds: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"object": "list", "data": page.items, "has_more": page.has_more}
    if with_bounds:
        body["first_id"] = page.items[0]["id"] if page.items else None
        body["last_id"] = page.items[-1]["id"] if page.items else None
    return body


def parse_limit(query: Mapping[str, str], default: int, maximum: int) -> int:
    """`limit` from the query: a positive integer; larger values are served `maximum` at a time."""
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"Invalid 'limit': expected an integer, got {raw[:40]!r}.", param="limit") from None
    if limit < 1:
        raise bad_request(f"Invalid 'limit': must be at least 1, got {limit}.", param="limit")
    return min(limit, maximum)


def parse_after(query: Mapping[str, str]) -> str | None:
    return query.get("after") or None
