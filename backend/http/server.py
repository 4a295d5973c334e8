"""The aiohttp application: middleware, JSON helpers, and route registration.

Every response carries an `x-request-id`; every failure, including unknown URLs and
crashes, is answered with the API's error envelope so SDK clients raise the usual
`openai.*Error`s instead of choking on HTML. Request bodies are read through `bodies.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ..errors import ApiError
from ..storage.ids import new_request_id
from .bodies import MAX_JSON_BODY, READ_TIMEOUT

log = logging.getLogger("tunedeck.local")
DEFAULT_READ_TIMEOUT = 30.0
# The SDK retries 409 and every 5xx; these answer the same until the user acts (a new
# Idempotency-Key, free disk), so a retry only wastes the user's time.
NOT_WORTH_RETRYING = frozenset({409, 507})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    *route_tables: web.RouteTableDef,
    outer_middlewares: Sequence[Any] = (),
    inner_middlewares: Sequence[Any] = (),
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> web.Application:
    """`outer_middlewares` run before the error envelope (the guard, then fault injection,
    wrap everything); `inner_middlewares` run inside it, so their errors are enveloped too.
    `read_timeout`: seconds a handler waits for the next chunk of a body (bodies.py)."""
    app = web.Application(
        middlewares=[*outer_middlewares, answer_errors, *inner_middlewares], client_max_size=MAX_JSON_BODY
    )
    app[READ_TIMEOUT] = read_timeout
    app.on_response_prepare.append(_add_request_id)
    for table in route_tables:
        app.add_routes(table)
    return app


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["x-request-id"] = new_request_id()


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:  # router misses, oversized bodies
        return error_response(_from_http_exception(request, exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            ApiError(500, "The server had an error while processing your request.", type="server_error")
        )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status in (404, 405):
        return ApiError(exc.status, f"Invalid URL ({request.method} {request.path})")
    if exc.status == 413:
        return ApiError(413, "The request body is too large.")
    return ApiError(exc.status, exc.reason or "Bad request")


def error_response(error: ApiError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    if error.status in NOT_WORTH_RETRYING:
        response.headers["x-should-retry"] = "false"
    return response


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, allow_nan=False)
