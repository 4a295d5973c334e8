"""`/v1/fine_tuning/checkpoints/{checkpoint}/permissions`: share a fine-tuned model or one
of its checkpoints with other projects (OpenAI's checkpoint permissions API).

`{checkpoint}` is a full model name, colons included (`ft:…:AbCd1234:ckpt-step-40`, or the
job's final model); the SDK sends it unescaped. There are no real projects locally, so any
well-formed `proj_…` id is accepted. A project holds at most one permission per checkpoint:
granting it again answers the existing permission. Deleting the model
(`DELETE /v1/models/{model}`) removes its permissions (store.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import ApiError, bad_request
from ..storage.ids import random_text
from ..storage.store import Store
from .bodies import read_json
from .paging import Page, list_body, parse_after, parse_limit
from .server import json_response

PERMISSIONS_PAGE_DEFAULT = 10
PAGE_MAX = 1000  # larger `limit`s are served this many at a time (`has_more` stays right)
ORDERS = ("ascending", "descending")
PROJECT_ID = re.compile(r"proj_[A-Za-z0-9_-]{1,64}")
PATH = "/v1/fine_tuning/checkpoints/{checkpoint}/permissions"


def new_permission_id() -> str:
    return "cp_" + random_text(24)


def permission_routes(store: Store, clock: Callable[[], float]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def checkpoint_of(request: web.Request) -> str:
        name = request.match_info["checkpoint"]
        if store.get_model(name) is None:
            raise ApiError(
                404,
                f"The fine-tuned model checkpoint '{name[:100]}' does not exist; use a fine-tuned model's or "
                "checkpoint's full name (`fine_tuned_model_checkpoint` of a job's checkpoints).",
                param="fine_tuned_model_checkpoint",
                code="model_not_found",
            )
        return name

    @routes.post(PATH)
    async def create(request: web.Request) -> web.Response:
        checkpoint = checkpoint_of(request)
        project_ids = _project_ids(await read_json(request))
        now = int(clock())
        granted: list[dict[str, Any]] = []
        with store.transaction():
            for project_id in project_ids:
                permission = store.permission_for(checkpoint, project_id)
                if permission is None:
                    permission = _permission(new_permission_id(), now, project_id)
                    store.add_permission(checkpoint, permission)
                granted.append(permission)
        return json_response(list_body(Page(granted, has_more=False), with_bounds=True))

    @routes.get(PATH)
    async def list_permissions(request: web.Request) -> web.Response:
        checkpoint = checkpoint_of(request)
        query = request.query
        limit = parse_limit(query, PERMISSIONS_PAGE_DEFAULT, PAGE_MAX)
        order = query.get("order") or "descending"
        if order not in ORDERS:
            raise bad_request(
                f"Invalid 'order': expected 'ascending' or 'descending', got {order[:20]!r}.", param="order"
            )
        project_id = query.get("project_id") or None
        page = store.list_permissions(checkpoint, project_id, order == "descending", parse_after(query), limit)
        return json_response(list_body(page, with_bounds=True))

    @routes.delete(PATH + "/{permission_id}")
    async def delete(request: web.Request) -> web.Response:
        checkpoint = checkpoint_of(request)
        permission_id = request.match_info["permission_id"]
        if not store.delete_permission(checkpoint, permission_id):
            raise ApiError(
                404,
                f"No such permission: {permission_id[:100]} (on checkpoint '{checkpoint[:100]}')",
                param="permission_id",
            )
        return json_response({"id": permission_id, "object": "checkpoint.permission", "deleted": True})

    return routes


def _project_ids(body: dict[str, Any]) -> list[str]:
    """`project_ids`: a non-empty list of `proj_…` strings; repeats count once, first order kept."""
    if "project_ids" not in body:
        raise bad_request("Missing required parameter: 'project_ids'.", param="project_ids",
                          code="missing_required_parameter")  # fmt: skip
    values = body["project_ids"]
    if not isinstance(values, list) or not values:
        raise bad_request("Invalid 'project_ids': expected a non-empty array of project ids.", param="project_ids")
    for index, value in enumerate(values):
        if not isinstance(value, str) or PROJECT_ID.fullmatch(value) is None:
            shown = value[:70] if isinstance(value, str) else type(value).__name__
            raise bad_request(
                f"Invalid 'project_ids[{index}]': expected a project id such as 'proj_abc123', got {shown!r}.",
                param="project_ids",
            )
    return list(dict.fromkeys(values))


def _permission(permission_id: str, created_at: int, project_id: str) -> dict[str, Any]:
    return {"id": permission_id, "object": "checkpoint.permission", "created_at": created_at, "project_id": project_id}
