"""`/v1/files`: multipart upload streamed to disk (within the disk budget), list, retrieve,
content, delete."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import objects
from ..errors import ApiError, bad_request, not_found
from ..storage.blobs import Blobs
from ..storage.budget import DiskBudget
from ..storage.ids import new_file_id
from ..storage.store import Store
from .bodies import FormFile, receive_form_file
from .paging import list_body, parse_after, parse_limit
from .server import json_response

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILE_BYTES = 512 * 1024 * 1024  # the Files API's limit
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000
MAX_FILENAME = 255
FILES_PAGE_DEFAULT = FILES_PAGE_MAX = 10_000
UPLOAD_PATH = "/v1/files"  # takes a multipart body, not JSON


def file_routes(store: Store, blobs: Blobs, clock: Callable[[], float], budget: DiskBudget) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post(UPLOAD_PATH)
    async def upload(request: web.Request) -> web.Response:
        received = await _read_upload(request, blobs, budget)
        try:
            filename = Path(received.filename or "upload").name[:MAX_FILENAME] or "upload"
            purpose = _purpose(received.fields.get("purpose"))
            created = int(clock())
            expires_at = _expires_at(received.fields, created)
        except BaseException:  # the upload is not kept: its file goes too
            received.path.unlink(missing_ok=True)
            raise
        file_id = new_file_id()
        blobs.keep(received.path, file_id)
        file = objects.file_object(file_id, received.size, created, filename, purpose, expires_at)
        store.add_file(file)
        return json_response(file)

    @routes.get("/v1/files")
    async def list_files(request: web.Request) -> web.Response:
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request(f"Invalid 'order': expected 'asc' or 'desc', got {order[:20]!r}.", param="order")
        limit = parse_limit(query, FILES_PAGE_DEFAULT, FILES_PAGE_MAX)
        page = store.list_files(query.get("purpose") or None, order == "desc", parse_after(query), limit)
        return json_response(list_body(page, with_bounds=True))

    @routes.get("/v1/files/{file_id}")
    async def retrieve(request: web.Request) -> web.Response:
        return json_response(_require_file(store, request.match_info["file_id"]))

    @routes.get("/v1/files/{file_id}/content")
    async def content(request: web.Request) -> web.StreamResponse:
        file = _require_file(store, request.match_info["file_id"])
        path = blobs.file_path(file["id"])
        if not path.is_file():
            raise not_found("File content", file["id"], param="id")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    @routes.delete("/v1/files/{file_id}")
    async def delete(request: web.Request) -> web.Response:
        file = _require_file(store, request.match_info["file_id"])
        store.delete_file(file["id"])
        blobs.remove_file(file["id"])
        return json_response({"id": file["id"], "object": "file", "deleted": True})

    return routes


def _require_file(store: Store, file_id: str) -> dict[str, Any]:
    file = store.get_file(file_id)
    if file is None:
        raise not_found("File object", file_id, param="id")
    return file


async def _read_upload(request: web.Request, blobs: Blobs, budget: DiskBudget) -> FormFile:
    """Small form fields in memory (bounded, bodies.py); the `file` part streamed to an
    incoming file on disk, which the caller removes if the upload is not kept."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request("Expected a multipart/form-data body with the fields 'purpose' and 'file'.", param="file")
    return await receive_form_file(
        request,
        budget,
        blobs.new_incoming(),
        field="file",
        max_bytes=MAX_FILE_BYTES,  # read on each call: tests lower it
        too_large=_too_large,
        keep_fields=True,  # purpose, expires_after[...]
        refuse_second_file=True,
    )


def _too_large() -> ApiError:
    return ApiError(413, f"The file is larger than the {MAX_FILE_BYTES // 2**20} MB limit.", param="file")


def _purpose(value: str | None) -> str:
    if not value:
        raise bad_request("Missing required parameter: 'purpose'.", param="purpose")
    if value not in UPLOAD_PURPOSES:
        expected = ", ".join(UPLOAD_PURPOSES)
        raise bad_request(f"Invalid value for 'purpose': {value[:40]!r}; expected one of {expected}.", param="purpose")
    return value


def _expires_at(fields: dict[str, str], created: int) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor not in (None, "created_at"):
        raise bad_request("Invalid 'expires_after.anchor': expected 'created_at'.", param="expires_after.anchor")
    try:
        value = int(seconds or "")
    except ValueError:
        value = -1
    if not MIN_EXPIRY <= value <= MAX_EXPIRY:
        raise bad_request(
            f"Invalid 'expires_after.seconds': expected an integer from {MIN_EXPIRY} to {MAX_EXPIRY}.",
            param="expires_after.seconds",
        )
    return created + value
