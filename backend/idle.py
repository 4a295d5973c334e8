"""How long the backend has had nothing to do, for a service that exits once it is idle.

The app starts the backend as a background service so training outlives it; once its
jobs are done and no one has asked anything for a while, that service should not linger.
Busy means: answering a request, or having a job that trains (or waits to).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from .http.server import Handler


class Activity:
    """The last moment the backend was busy. `clock`: monotonic seconds (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self._in_flight = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._in_flight += 1
        try:
            return await handler(request)
        finally:
            self._in_flight -= 1
            self._last = self._clock()

    def idle_seconds(self, jobs_active: bool) -> float:
        """Seconds since the backend was last busy (0 while it is)."""
        now = self._clock()
        if jobs_active or self._in_flight:
            self._last = now
        return now - self._last
