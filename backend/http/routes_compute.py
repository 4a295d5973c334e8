"""`GET /v1/tunedeck/compute`: the devices training runs are placed on, which job holds
each, and which jobs wait for one (tunedeck's own endpoint: OpenAI has no such thing, so it
lives under `/v1/tunedeck/`). The app's compute view and `tunedeck compute` read it."""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from .server import json_response


def compute_routes(compute: Callable[[], dict[str, Any]]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/v1/tunedeck/compute")
    async def get_compute(request: web.Request) -> web.Response:
        return json_response(compute())

    return routes
