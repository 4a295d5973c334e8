"""A small OpenAI-shaped HTTP API for tests, served in a thread of its own, so code that runs
its own event loop (the CLI, the SDK's sync client) can talk to it too."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Self

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ThreadedApi:
    """Serves `routes` ((method, path) -> handler) on a free loopback port; `base_url` ends in /v1."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self._routes = routes
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.base_url = ""

    def _serve(self) -> None:
        app = web.Application()
        for (method, path), handler in self._routes.items():
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
