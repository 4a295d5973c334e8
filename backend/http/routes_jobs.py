"""`/v1/fine_tuning/jobs` (with events and checkpoints) and `/v1/models`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .. import objects
from ..aliases import ModelAliases
from ..errors import ApiError
from ..jobs.engine import JobEngine
from ..jobs.jobspec import ORGANIZATION
from ..storage.store import Store
from .bodies import read_json
from .paging import list_body, parse_after, parse_limit
from .server import json_response

JOBS_PAGE_DEFAULT, EVENTS_PAGE_DEFAULT, CHECKPOINTS_PAGE_DEFAULT = 20, 20, 10
PAGE_MAX = 1000  # larger `limit`s are served this many at a time (`has_more` stays right)
BUILTIN_OWNER = "tunedeck"
FINE_TUNED_OWNER = f"org-{ORGANIZATION}"


def job_routes(engine: JobEngine, store: Store, aliases: ModelAliases | None = None) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    aliases = aliases or ModelAliases()

    @routes.post("/v1/fine_tuning/jobs")
    async def create(request: web.Request) -> web.Response:
        body = await read_json(request)
        named = body.get("model") if isinstance(body, dict) else None
        target = aliases.target(named) if isinstance(named, str) else None
        if target is not None:
            return json_response(engine.create_job({**body, "model": target}, alias=named))
        return json_response(engine.create_job(body))

    @routes.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        query = request.query
        limit = parse_limit(query, JOBS_PAGE_DEFAULT, PAGE_MAX)
        page = store.list_jobs(parse_after(query), limit, keep=_metadata_filter(query))
        return json_response(list_body(page))

    @routes.get("/v1/fine_tuning/jobs/{job_id}")
    async def retrieve(request: web.Request) -> web.Response:
        return json_response(engine.get_job(request.match_info["job_id"]))

    @routes.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel(request: web.Request) -> web.Response:
        # No body is expected; the SDK sends `Content-Type: application/json` with nothing.
        return json_response(engine.cancel_job(request.match_info["job_id"]))

    @routes.post("/v1/fine_tuning/jobs/{job_id}/pause")
    async def pause(request: web.Request) -> web.Response:
        return json_response(await engine.pause_job(request.match_info["job_id"]))

    @routes.post("/v1/fine_tuning/jobs/{job_id}/resume")
    async def resume(request: web.Request) -> web.Response:
        return json_response(engine.resume_job(request.match_info["job_id"]))

    @routes.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def events(request: web.Request) -> web.Response:
        job = engine.get_job(request.match_info["job_id"])
        limit = parse_limit(request.query, EVENTS_PAGE_DEFAULT, PAGE_MAX)
        return json_response(list_body(store.list_events(job["id"], parse_after(request.query), limit)))

    @routes.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    async def checkpoints(request: web.Request) -> web.Response:
        job = engine.get_job(request.match_info["job_id"])
        limit = parse_limit(request.query, CHECKPOINTS_PAGE_DEFAULT, PAGE_MAX)
        page = store.list_checkpoints(job["id"], parse_after(request.query), limit)
        return json_response(list_body(page, with_bounds=True))

    @routes.get("/v1/models")
    async def list_models(request: web.Request) -> web.Response:
        created = objects.BUILTIN_MODEL_CREATED
        models = [
            objects.model_object(name, created, BUILTIN_OWNER, {**engine.model_details(name), "fine_tunable": True})
            for name in engine.base_models()
        ]
        models += [_alias_object(alias, target) for alias, target in aliases]
        models += [objects.model_object(m["id"], m["created"], FINE_TUNED_OWNER) for m in store.final_models()]
        return json_response({"object": "list", "data": models})

    @routes.get("/v1/models/{model_id}")
    async def retrieve_model(request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if aliases.target(model_id) is not None:
            return json_response(_alias_object(model_id, aliases.resolve(model_id)))
        if model_id in engine.base_models():
            return json_response(objects.model_object(model_id, objects.BUILTIN_MODEL_CREATED, BUILTIN_OWNER))
        found = store.get_model(model_id)
        if found is None:
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return json_response(objects.model_object(found["id"], found["created"], FINE_TUNED_OWNER))

    return routes


def _metadata_filter(query: Mapping[str, str]) -> Callable[[dict[str, Any]], bool] | None:
    """`metadata[k]=v` pairs must all match; `metadata=null` selects jobs without metadata."""
    if query.get("metadata") == "null":
        return lambda job: not job.get("metadata")
    wanted = {
        key[len("metadata[") : -1]: value
        for key, value in query.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    if not wanted:
        return None
    return lambda job: all((job.get("metadata") or {}).get(k) == v for k, v in wanted.items())


def _alias_object(alias: str, target: str) -> dict[str, Any]:
    """An alias as `/v1/models` lists it: what it stands for under `tunedeck`."""
    return objects.model_object(alias, objects.BUILTIN_MODEL_CREATED, BUILTIN_OWNER, {"alias_of": target, "fine_tunable": True})
