"""`/v1/uploads`: create, add parts (multipart field `data`, streamed to disk), complete
with ordered part ids and an optional MD5, cancel. There is no GET, as in the real API.

Checks follow the API's limits: at most 8 GB per upload and 64 MB
per part; on completion the listed parts must add up to exactly the `bytes` declared at
creation, and the MD5, when given, must match the assembled bytes. The disk budget
(storage/budget.py) is checked at creation against the declared size, and as parts arrive.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import objects
from ..errors import ApiError, bad_request
from ..storage.blobs import Blobs
from ..storage.budget import DiskBudget
from ..storage.ids import new_file_id
from ..storage.store import Store
from ..storage.uploads import MAX_PART_BYTES, MAX_UPLOAD_BYTES, UploadRecord, UploadRegistry, assemble
from .bodies import read_json, receive_form_file
from .routes_files import MAX_EXPIRY, MAX_FILENAME, MIN_EXPIRY, UPLOAD_PURPOSES
from .server import json_response

MAX_MIME_TYPE = 255
MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
PARTS_PATH = "/v1/uploads/{upload_id}/parts"  # takes a multipart body, not JSON


def upload_routes(registry: UploadRegistry, store: Store, blobs: Blobs, budget: DiskBudget) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/v1/uploads")
    async def create(request: web.Request) -> web.Response:
        body = await read_json(request)
        size = _declared_bytes(body.get("bytes"))
        await budget.meter(size)  # refuse now an upload that cannot fit, rather than at its last part
        upload = registry.create(
            size=size,
            filename=_filename(body.get("filename")),
            purpose=_purpose(body.get("purpose")),
            mime_type=_mime_type(body.get("mime_type")),
            file_expires_after=_expires_after(body.get("expires_after")),
        )
        return json_response(upload)

    @routes.post(PARTS_PATH)
    async def add_part(request: web.Request) -> web.Response:
        upload_id = request.match_info["upload_id"]
        registry.pending(upload_id, "given parts")  # refuse before reading a byte
        received = await _receive_part(request, registry.incoming_part_path(upload_id), budget)
        return json_response(registry.accept_part(upload_id, received))

    @routes.post("/v1/uploads/{upload_id}/complete")
    async def complete(request: web.Request) -> web.Response:
        body = await read_json(request)
        record = registry.pending(request.match_info["upload_id"], "completed")
        part_ids, md5 = _part_ids(body.get("part_ids")), _md5(body.get("md5"))
        parts = registry.ordered_parts(record, part_ids)
        total = sum(path.stat().st_size for path in parts)
        _require_declared_size(record, total)
        budget.require_free(total)  # the parts are copied into the file, then deleted
        registry.begin_completion(record)
        try:
            file = await _assemble_file(record, parts, md5, blobs, registry.now())
        finally:
            registry.end_completion(record)
        store.add_file(file)
        return json_response(registry.completed(record, file))

    @routes.post("/v1/uploads/{upload_id}/cancel")
    async def cancel(request: web.Request) -> web.Response:
        return json_response(registry.cancel(request.match_info["upload_id"]))

    return routes


# -- completing -----------------------------------------------------------------------------------


def _require_declared_size(record: UploadRecord, total: int) -> None:
    declared = record.upload["bytes"]
    if total != declared:
        raise bad_request(
            f"The parts listed in 'part_ids' add up to {total} bytes, but upload {record.id} was created "
            f"with bytes={declared}. The total must match exactly.",
            param="part_ids",
        )


async def _assemble_file(
    record: UploadRecord, parts: list[Path], md5: str | None, blobs: Blobs, now: int
) -> dict[str, Any]:
    """Concatenate the parts into a new file (off the loop), check the MD5, and describe it."""
    incoming = blobs.new_incoming()
    try:
        size, digest = await asyncio.get_running_loop().run_in_executor(None, assemble, parts, incoming)
        if md5 is not None and digest != md5:
            raise bad_request(
                f"The md5 checksum {md5} does not match the uploaded bytes (their md5 is {digest}).", param="md5"
            )
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    file_id = new_file_id()
    blobs.keep(incoming, file_id)
    expires = record.file_expires_after
    upload = record.upload
    return objects.file_object(
        file_id, size, now, upload["filename"], upload["purpose"], now + expires if expires is not None else None
    )


# -- receiving a part -----------------------------------------------------------------------------


async def _receive_part(request: web.Request, target: Path, budget: DiskBudget) -> Path:
    """Stream the multipart field `data` into `target`; other fields are read and dropped.
    Nothing of the part stays on disk when anything goes wrong (bodies.py)."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request("Expected a multipart/form-data body with the field 'data'.", param="data")
    received = await receive_form_file(
        request,
        budget,
        target,
        field="data",
        max_bytes=MAX_PART_BYTES,  # read on each call: tests lower it
        too_large=_part_too_large,
        keep_fields=False,
        refuse_second_file=False,  # a part's form carries only `data`; the first one counts
    )
    return received.path


def _part_too_large() -> ApiError:
    return bad_request(f"A part may be at most {MAX_PART_BYTES // 2**20} MB.", param="data")


# -- request fields -------------------------------------------------------------------------------


def _declared_bytes(value: Any) -> int:
    if value is None:
        raise bad_request("Missing required parameter: 'bytes'.", param="bytes", code="missing_required_parameter")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request("Invalid 'bytes': expected a non-negative integer.", param="bytes")
    if value > MAX_UPLOAD_BYTES:
        raise bad_request(
            f"Invalid 'bytes': an upload may be at most {MAX_UPLOAD_BYTES // 2**30} GB, got {value}.", param="bytes"
        )
    return value


def _filename(value: Any) -> str:
    if value is None:
        raise bad_request(
            "Missing required parameter: 'filename'.", param="filename", code="missing_required_parameter"
        )
    name = Path(value).name[:MAX_FILENAME] if isinstance(value, str) else ""
    if not name:
        raise bad_request("Invalid 'filename': expected a file name.", param="filename")
    return name


def _purpose(value: Any) -> str:
    if value is None:
        raise bad_request("Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter")
    if value not in UPLOAD_PURPOSES:
        expected = ", ".join(UPLOAD_PURPOSES)
        shown = repr(value)[:40]
        raise bad_request(f"Invalid value for 'purpose': {shown}; expected one of {expected}.", param="purpose")
    return value


def _mime_type(value: Any) -> str:
    if value is None:
        raise bad_request(
            "Missing required parameter: 'mime_type'.", param="mime_type", code="missing_required_parameter"
        )
    if not isinstance(value, str) or not value or len(value) > MAX_MIME_TYPE:
        raise bad_request("Invalid 'mime_type': expected a MIME type such as 'text/jsonl'.", param="mime_type")
    return value


def _expires_after(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("Invalid 'expires_after': expected an object.", param="expires_after")
    if value.get("anchor") != "created_at":
        raise bad_request("Invalid 'expires_after.anchor': expected 'created_at'.", param="expires_after.anchor")
    seconds = value.get("seconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not MIN_EXPIRY <= seconds <= MAX_EXPIRY:
        raise bad_request(
            f"Invalid 'expires_after.seconds': expected an integer from {MIN_EXPIRY} to {MAX_EXPIRY}.",
            param="expires_after.seconds",
        )
    return seconds


def _part_ids(value: Any) -> list[str]:
    if value is None:
        raise bad_request(
            "Missing required parameter: 'part_ids'.", param="part_ids", code="missing_required_parameter"
        )
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request("Invalid 'part_ids': expected a list of part ids.", param="part_ids")
    return value


def _md5(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not MD5_HEX.fullmatch(value):
        raise bad_request("Invalid 'md5': expected 32 hexadecimal digits.", param="md5")
    return value.lower()
