"""Reading request bodies within bounds: what one request can cost in time and memory.

- Time: aiohttp has no timeout between the chunks of a body, so a client that declares a
  2 GB body and sends nothing would hold a handler forever. Every read here waits at most
  the app's read timeout for the next bytes, then answers 408 (and the connection closes).
- Memory: a JSON body is read whole, so it is capped (`MAX_JSON_BODY`, refused from its
  declared length before a byte is read). A multipart form is streamed: files go to disk,
  and the small fields kept in memory are capped in number and in total size, so a form of
  a million tiny fields costs no more than one of four.
- Disk: a form's file (`receive_form_file`, for both /v1/files and upload parts) is capped
  by its endpoint, refused from the declared length when that already says too much,
  counted against the disk budget as it arrives, and removed on any failure, so no partial
  file stays.
- Names: a form part's filename must be UTF-8, whether sent raw or as RFC 5987 `filename*=`
  (checked as each part is met, before any of its bytes are written).

The body a JSON request sent is kept on the request once read, so the idempotency check
and the handler read it once between them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from aiohttp import BodyPartReader, MultipartReader, hdrs, web

from ..errors import ApiError, bad_request
from ..storage.budget import DiskBudget, Meter
from ..storage.private import open_private

T = TypeVar("T")
READ_TIMEOUT = web.AppKey("read_timeout", float)  # seconds allowed between two chunks of a body
MAX_JSON_BODY = 8 * 1024 * 1024  # job bodies are small; uploads stream and are not bound by this
MAX_FORM_PARTS = 32  # the Files API sends 2 to 4 (purpose, file, expires_after[...])
MAX_FORM_FIELD_BYTES = 4096  # one field's value
MAX_FORM_FIELDS_BYTES = 64 * 1024  # all non-file fields of one form together
FORM_ALLOWANCE = 1024 * 1024  # what a form may add to its file: the other fields and the part headers
FILE_CHUNK_BYTES = 1024 * 1024
# aiohttp 3.14 wants typed keys on requests; older ones (pyproject allows 3.9) take strings
BODY_KEY: Any = web.RequestKey("body", bytes) if hasattr(web, "RequestKey") else "tunedeck.body"
FILENAME_STAR = re.compile(r"(?:^|;)\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)
FIELD_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*"?([^";]*)', re.IGNORECASE)


async def within_read_timeout(request: web.Request, awaitable: Awaitable[T]) -> T:
    """Await one read of the body; 408 when the client sends nothing for the read timeout."""
    seconds = request.app[READ_TIMEOUT]
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise ApiError(
            408, f"The request body stopped arriving: nothing was received for {seconds:g} seconds."
        ) from None


# -- JSON -----------------------------------------------------------------------------------------


async def read_body(request: web.Request) -> bytes:
    """The whole body of a JSON request, at most `MAX_JSON_BODY` bytes."""
    kept = request.get(BODY_KEY)
    if kept is not None:
        return kept
    declared = request.content_length
    if declared is not None and declared > MAX_JSON_BODY:
        raise _json_too_large()
    chunks: list[bytes] = []
    size = 0
    while chunk := await within_read_timeout(request, request.content.readany()):
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise _json_too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    request[BODY_KEY] = body
    return body


def _json_too_large() -> ApiError:
    return ApiError(413, f"The request body is too large: JSON requests may be at most {MAX_JSON_BODY // 2**20} MB.")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object in the body; an empty body counts as `{}` (the SDK's bodiless POSTs)."""
    raw = await read_body(request)
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
    if b"\\u" in raw.lower() and not _is_unicode(body):  # only escapes can smuggle a lone surrogate in
        raise ApiError(400, "The JSON body of your request holds a lone surrogate escape (\\ud800-\\udfff), "
                       "which is not valid Unicode text.")  # fmt: skip
    return body


def _is_unicode(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- multipart forms ------------------------------------------------------------------------------


class FormReader:
    """The parts of one multipart request, read within the limits above."""

    def __init__(self, request: web.Request, reader: MultipartReader) -> None:
        self.request = request
        self._reader = reader
        self._parts = 0
        self._field_bytes = 0

    @classmethod
    async def open(cls, request: web.Request) -> FormReader:
        return cls(request, await request.multipart())

    async def next_part(self) -> BodyPartReader | None:
        """The next part (the previous one must have been read or drained), or None at the end."""
        part = await within_read_timeout(self.request, self._reader.next())
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):
            raise bad_request("Nested multipart bodies are not supported.")
        _check_disposition(part)
        self._parts += 1
        if self._parts > MAX_FORM_PARTS:
            raise ApiError(413, f"The form has too many parts: at most {MAX_FORM_PARTS} are accepted.")
        return part

    async def chunk(self, part: BodyPartReader, size: int) -> bytes:
        return await within_read_timeout(self.request, part.read_chunk(size))

    async def field(self, part: BodyPartReader) -> str:
        """A small text field's value (UTF-8)."""
        data = b""
        while chunk := await self.chunk(part, MAX_FORM_FIELD_BYTES):
            data += chunk
            self._field_bytes += len(chunk)
            if len(data) > MAX_FORM_FIELD_BYTES:
                raise bad_request(f"The form field '{part.name}' is too long.", param=part.name)
            if self._field_bytes > MAX_FORM_FIELDS_BYTES:
                raise ApiError(
                    413, f"The form's fields are too large: together they may be at most {MAX_FORM_FIELDS_BYTES} bytes."
                )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request(f"The form field '{part.name}' is not valid UTF-8 text.", param=part.name) from None

    async def drain(self, part: BodyPartReader) -> None:
        """Read and drop a part that is not used (each chunk within the read timeout)."""
        while await self.chunk(part, 2**16):
            pass

    async def save(
        self, part: BodyPartReader, target: Path, *, max_bytes: int, too_large: Callable[[], ApiError], meter: Meter
    ) -> int:
        """Write a file part into `target`, a new file, and return its size. The caller
        removes `target` when this fails: it may hold the bytes written so far."""
        loop = asyncio.get_running_loop()
        size = 0
        with open_private(target, exclusive=True) as out:
            while chunk := await self.chunk(part, FILE_CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large()
                meter.add(len(chunk))
                await loop.run_in_executor(None, out.write, chunk)  # disk writes off the event loop
        return size


@dataclass(frozen=True)
class FormFile:
    """A form's file part, received into `path`, and the form's text fields."""

    path: Path
    size: int
    filename: str | None  # as the part named it, unchecked as a path
    fields: dict[str, str]


async def receive_form_file(
    request: web.Request,
    budget: DiskBudget,
    target: Path,
    *,
    field: str,
    max_bytes: int,
    too_large: Callable[[], ApiError],
    keep_fields: bool,
    refuse_second_file: bool,
) -> FormFile:
    """Stream the multipart part named `field` into `target` (a new file), at most
    `max_bytes` and within the disk budget; `too_large` is the endpoint's answer past that.
    `keep_fields`: the other named parts are text fields, kept (within the caps above);
    otherwise they are read and dropped, as unnamed parts always are.
    `refuse_second_file`: a second `field` part is a 400; otherwise it is read and dropped.
    Nothing of the file stays on disk when anything goes wrong, cancellation included."""
    declared = request.content_length or 0
    if declared > max_bytes + FORM_ALLOWANCE:
        raise too_large()  # refused before a byte is read
    meter = await budget.meter(max(declared - FORM_ALLOWANCE, 0))
    fields: dict[str, str] = {}
    size: int | None = None  # of the file part, once received
    filename: str | None = None
    try:
        form = await FormReader.open(request)
        while (part := await form.next_part()) is not None:
            if part.name == field and size is None:
                filename = part.filename
                size = await form.save(part, target, max_bytes=max_bytes, too_large=too_large, meter=meter)
            elif part.name == field and refuse_second_file:
                raise bad_request(f"Send one '{field}' per upload.", param=field)
            elif part.name and part.name != field and keep_fields:
                fields[part.name] = await form.field(part)
            else:
                await form.drain(part)
    except ApiError:
        target.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed body: aiohttp raises several kinds
        target.unlink(missing_ok=True)
        raise bad_request(f"Could not read the multipart body: {exc}", param=field) from None
    except BaseException:  # cancelled: nothing of the file stays
        target.unlink(missing_ok=True)
        raise
    if size is None:
        raise bad_request(f"Missing required parameter: '{field}'.", param=field)
    return FormFile(target, size, filename, fields)


def _check_disposition(part: BodyPartReader) -> None:
    """400 naming the field when a part's filename is not UTF-8, checked before aiohttp reads
    the header: it turns raw bytes that are not UTF-8 into lone surrogates, and drops a
    `filename*=` it cannot decode (with a warning), so the part would get another name."""
    disposition = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
    try:
        disposition.encode("utf-8")
        extended = FILENAME_STAR.search(disposition)
        valid = extended is None or _decodes(extended.group(1).strip().strip('"'))
    except UnicodeEncodeError:
        valid = False
    if not valid:
        found = FIELD_NAME.search(disposition)
        field = _printable(found.group(1)) if found else "?"
        raise bad_request(f"The filename of the form field '{field}' is not valid UTF-8.", param=field)


def _printable(text: str) -> str:
    """`text` with the bytes that were not UTF-8 shown as U+FFFD (the answer is UTF-8 JSON)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:100]


def _decodes(value: str) -> bool:
    """Whether an RFC 5987 value (`charset'language'percent-encoded`) decodes in its charset."""
    charset, quote, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not quote or not quote2:
        return False
    try:
        unquote_to_bytes(encoded).decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return False
    return True
