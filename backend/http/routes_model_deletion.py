"""`DELETE /v1/models/{model}`: delete a fine-tuned model or checkpoint (listing and
retrieving models live in routes_jobs.py). Base models cannot be deleted."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ..errors import ApiError
from ..storage.blobs import Blobs
from ..storage.store import Store
from ..trainers.base import remove_weights
from .server import json_response


def model_deletion_routes(store: Store, blobs: Blobs, base_models: Callable[[], list[str]]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.delete("/v1/models/{model_id}")
    async def delete_model(request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        if model_id in base_models():
            raise ApiError(403, f"The base model '{model_id}' cannot be deleted; only fine-tuned models can.",
                           param="model")  # fmt: skip
        found = store.get_model(model_id)
        if found is None:
            raise ApiError(404, f"The model '{model_id[:100]}' does not exist", param="model", code="model_not_found")
        store.delete_model(model_id)
        # The weights go too; the path comes from the store, never from the request.
        remove_weights(blobs.data_dir / found["weights"])
        return json_response({"id": model_id, "object": "model", "deleted": True})

    return routes
