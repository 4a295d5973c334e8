"""`Idempotency-Key`: a POST sent again with the same key gets the first answer, and its
work (a job, a file, a permission) is done once.

A client that lost an answer (a dropped connection, a timeout) cannot know whether its
job was created; retrying with the same key is safe. The key names one request: the same
method, path and body. Sent again within `KEEP_SECONDS` it is answered with the first
response, status and body (`Idempotent-Replayed: true`); sent with anything else it is a
409, since the client is confused about what it asked. A duplicate that arrives while
the first is still being handled waits for it.

Kept: successful answers only. An error did no work, so a retry may as well try again
(the training file may have been uploaded since). Answers live in the store, so a retry
after a restart of the backend is recognised, and expire by the backend's clock.

Multipart uploads are too large to hold and hash before handling, and their boundary
changes between retries, so they are compared by path and length.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from typing import Final

from aiohttp import web

from ..errors import ApiError, bad_request
from ..storage.store import KeptAnswer, Store
from .bodies import read_body
from .server import Handler

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
KEEP_SECONDS: Final = 24 * 3600
MAX_KEY_LENGTH: Final = 255


class Idempotency:
    def __init__(self, store: Store, clock: Callable[[], float], multipart_paths: Iterable[str] = ()) -> None:
        self._store = store
        self._clock = clock
        self._multipart_paths = frozenset(multipart_paths)
        self._in_flight: dict[str, tuple[str, asyncio.Event]] = {}  # key -> (fingerprint, set when answered)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return await handler(request)
        _check_key(key)
        fingerprint = await self._fingerprint(request)
        while True:
            kept = self._store.kept_answer(key, self._clock() - KEEP_SECONDS)
            if kept is not None:
                _require_same(kept.fingerprint, fingerprint, key)
                return _replay(kept)
            running = self._in_flight.get(key)
            if running is None:
                break
            _require_same(running[0], fingerprint, key)
            await running[1].wait()  # then look again: kept if it succeeded, ours to do if it failed
        answered = asyncio.Event()
        self._in_flight[key] = (fingerprint, answered)
        try:
            response = await handler(request)
            self._keep(key, fingerprint, response)
            return response
        finally:
            del self._in_flight[key]
            answered.set()

    async def _fingerprint(self, request: web.Request) -> str:
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in self._multipart_paths:
            what = f"multipart, {request.content_length} bytes".encode()
        else:
            what = hashlib.sha256(await read_body(request)).hexdigest().encode()
        return hashlib.sha256(b"\n".join([request.method.encode(), request.raw_path.encode(), what])).hexdigest()

    def _keep(self, key: str, fingerprint: str, response: web.StreamResponse) -> None:
        # A streamed answer (chat completions with `stream: true`) has no body to keep.
        if not 200 <= response.status < 300 or not isinstance(response, web.Response) or response.prepared:
            return
        body = response.body
        if isinstance(body, bytes):
            now = self._clock()
            self._store.keep_answer(key, KeptAnswer(fingerprint, response.status, body), now, now - KEEP_SECONDS)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise bad_request(
            f"Invalid '{HEADER}' header: expected 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "(a UUID is a good key)."
        )


def _require_same(first: str, fingerprint: str, key: str) -> None:
    if first != fingerprint:
        raise ApiError(
            409,
            f"The {HEADER} {key[:MAX_KEY_LENGTH]!r} was already used for a different request (another method, "
            "path or body) in the last 24 hours. Use a new key for a new request.",
            code="idempotency_key_reused",
        )


def _replay(kept: KeptAnswer) -> web.Response:
    response = web.Response(status=kept.status, body=kept.body, content_type="application/json", charset="utf-8")
    response.headers[REPLAYED_HEADER] = "true"
    return response
