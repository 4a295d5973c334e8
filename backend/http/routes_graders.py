"""`POST /v1/fine_tuning/alpha/graders/run` and `/validate` (graders are in graders.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import bad_request
from ..graders import grader as graders
from .bodies import read_json
from .server import json_response


def grader_routes(endpoint: Callable[[], tuple[str, str] | None] = lambda: None) -> web.RouteTableDef:
    """`endpoint`: this backend's API, which model graders ask their model through."""
    routes = web.RouteTableDef()

    @routes.post("/v1/fine_tuning/alpha/graders/run")
    async def run(request: web.Request) -> web.Response:
        body = await read_json(request)
        # A formula that does not parse is graded as `formula_parse_error`, not refused.
        grader = graders.compile_grader(_required(body, "grader"), strict_formula=False, ask=graders.asker_for(endpoint()))
        sample = _required(body, "model_sample")
        if not isinstance(sample, str):
            raise bad_request("Invalid 'model_sample': expected a string.", param="model_sample")
        item = body.get("item")
        item = {} if item is None else item
        # Off the loop: some similarity metrics take a while on long texts, and a model grader
        # asks this very server.
        result = await asyncio.get_running_loop().run_in_executor(None, graders.run, grader, sample, item)
        return json_response(result)

    @routes.post("/v1/fine_tuning/alpha/graders/validate")
    async def validate(request: web.Request) -> web.Response:
        body = await read_json(request)
        return json_response({"grader": graders.validate_grader(_required(body, "grader"))})

    return routes


def _required(body: dict[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise bad_request(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
    return body[key]
