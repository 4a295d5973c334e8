"""Walking a cursor-paged list without trusting the server to end it.

A list says `has_more` and the client asks again with `after=<last id>`. An endpoint that
never says `has_more: false` (a bug, a proxy replaying a cached page) would keep a client
asking forever: one was seen to take 21,083 requests in 20 s. A `CursorWalk` stops when a
cursor comes back, when a page adds nothing new, or at a page cap, and keeps a sentence
saying why for the front ends (`warning`).
"""

from __future__ import annotations

from typing import Any

JOBS_MAX_PAGES = 1000  # 100,000 jobs at 100 a page
EVENTS_MAX_PAGES = 1000  # 100,000 events at 100 a page: beyond any job's history


class CursorWalk:
    """The state of one walk over `what` (e.g. "the job list"); feed it each page in turn."""

    def __init__(self, what: str, max_pages: int) -> None:
        self.what = what
        self.max_pages = max_pages
        self.pages = 0
        self.warning: str | None = None
        """Why the walk stopped while the endpoint still said `has_more`; None when it ended."""
        self._ids: set[str] = set()
        self._cursors: set[str] = set()
        self._new_on_last_page = 0

    def unseen(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Count one page; return its items not already returned by an earlier page."""
        self.pages += 1
        fresh = []
        for item in items:
            key = str(item.get("id"))
            if key not in self._ids:
                self._ids.add(key)
                fresh.append(item)
        self._new_on_last_page = len(fresh)
        return fresh

    def after(self, items: list[dict[str, Any]], has_more: bool) -> str | None:
        """The cursor for the next page (the page `unseen` last counted), or None to stop."""
        if not has_more or not items:
            return None
        cursor = str(items[-1].get("id"))
        if cursor in self._cursors:
            why = f"the endpoint repeated cursor {cursor!r}"
        elif not self._new_on_last_page:
            why = f"page {self.pages} only repeated entries of earlier pages"
        elif self.pages >= self.max_pages:
            why = f"the page cap ({self.max_pages} pages) was reached and the endpoint still had more"
        else:
            self._cursors.add(cursor)
            return cursor
        self.warning = f"{self.what}: stopped after {self.pages} pages: {why}"
        return None
