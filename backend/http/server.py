"""The aiohttp application: middleware, JSON helpers, and route registration.

Every response carries an `x-request-id`; every failure, including unknown URLs and
crashes, is answered with the API's error envelope so SDK clients raise the usual
`openai.*Error`s instead of choking on HTML.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web

from ..errors import ApiError
from ..storage.ids import new_request_id

log = logging.getLogger("tunedeck.local")
MAX_JSON_BODY = 8 * 1024 * 1024  # job bodies are small; uploads stream and are not bound by this

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(*route_tables: web.RouteTableDef, outer_middlewares: Sequence[Any] = ()) -> web.Application:
    """`outer_middlewares` run before the error envelope (fault injection wraps everything)."""
    app = web.Application(middlewares=[*outer_middlewares, answer_errors], client_max_size=MAX_JSON_BODY)
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
    return json_response(error.body(), status=error.status)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, allow_nan=False)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body; an empty body counts as `{}` (the SDK's bodiless POSTs)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object.",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "The JSON body of your request must be an object.")
    return body
