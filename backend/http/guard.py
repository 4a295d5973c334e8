"""Who may talk to the backend: the outermost middleware, before any route does work.

The backend trains on the user's data with the user's disk and GPU, so it answers only
requests that prove they come from its user, and never does a web page's bidding:

1. `Host` must name this machine's loopback (`localhost`, `*.localhost`, `127.0.0.1`,
   `[::1]`), an allowed host, or the non-loopback address it was bound to. A page on a
   domain whose DNS answer was switched to 127.0.0.1 (DNS rebinding) still sends its own
   domain as the Host, and is refused here (403).
2. A request carrying `Origin` comes from a web page: refused (403) unless the origin is
   allowed; allowed origins get CORS answers, preflights included, and no one else does.
3. `Authorization: Bearer <key>`, the per-install key (`storage/api_key.py`), compared in
   constant time; otherwise OpenAI's 401 envelope, so SDKs raise `AuthenticationError`.
4. A POST to a JSON endpoint must say `Content-Type: application/json`, even with no body
   (the openai SDK sends it on bodiless POSTs such as `jobs.cancel`): a cross-site form or
   `fetch` "simple request" can only send text/plain, urlencoded or multipart, so it cannot
   cancel a job (415). Multipart endpoints check their own content type.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Final

from aiohttp import web

from ..errors import ApiError
from .server import Handler, error_response

MISSING_KEY_MESSAGE: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY). The local backend's key is in the file `api-key` of its data "
    "directory; `tunedeck serve --print-key` prints it."
)
WRONG_KEY_TAIL: Final = (
    "You can find the local backend's API key with `tunedeck serve --print-key` (it is kept in the file "
    "`api-key` of its data directory)."
)
CORS_METHODS: Final = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS: Final = "Authorization, Content-Type, Idempotency-Key, OpenAI-Organization, OpenAI-Project"
CORS_MAX_AGE: Final = "600"
SHOWN_CHARS: Final = 100  # of a refused Host or Origin, in the message


class RequestGuard:
    """`allowed_hosts`: extra names the Host header may carry (any port). `any_ip_host`:
    accept any IP address as the Host (the backend is bound to all interfaces; an IP
    literal cannot be rebound, only names can). `multipart_paths`: route paths (as
    declared) that take multipart bodies instead of JSON."""

    def __init__(
        self,
        api_key: str,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        any_ip_host: bool = False,
        multipart_paths: Iterable[str] = (),
    ) -> None:
        if not api_key:
            raise ValueError("the local backend needs an API key")
        self._key = api_key.encode("utf-8")
        self._hosts = frozenset(host_name(host) for host in allowed_hosts)
        self._origins = frozenset(_origin(origin) for origin in allowed_origins)
        self._any_ip_host = any_ip_host
        self._multipart_paths = frozenset(multipart_paths)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return error_response(refusal)
        if request.method == "OPTIONS" and "Origin" in request.headers:
            return _preflight(request)  # the origin is allowed (checked above); preflights carry no key
        return await handler(request)

    async def add_cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`on_response_prepare`: let an allowed origin's page read the answer."""
        origin = request.headers.get("Origin")
        if origin is not None and _origin(origin) in self._origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "x-request-id"
            response.headers.add("Vary", "Origin")

    def _refusal(self, request: web.Request) -> ApiError | None:
        host = request.headers.get("Host")
        if host is None or not self.host_allowed(host):
            shown = "(none)" if host is None else repr(host[:SHOWN_CHARS])
            return ApiError(
                403,
                f"The Host header {shown} does not name this server. The local backend answers requests to "
                "localhost, 127.0.0.1 or [::1] (and the hosts it was told to allow), so that a web page cannot "
                "reach it through DNS rebinding.",
                code="host_not_allowed",
            )
        origin = request.headers.get("Origin")
        if origin is not None and _origin(origin) not in self._origins:
            return ApiError(
                403,
                f"Requests from web pages are refused: the origin {origin[:SHOWN_CHARS]!r} is not allowed to use "
                "the local backend.",
                code="origin_not_allowed",
            )
        if request.method == "OPTIONS" and origin is not None:
            return None
        key_refusal = self._key_refusal(request.headers.get("Authorization"))
        if key_refusal is not None:
            return key_refusal
        return self._content_type_refusal(request)

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        if name in self._hosts or is_loopback(name):
            return True
        return self._any_ip_host and _is_ip_address(name)

    def _key_refusal(self, authorization: str | None) -> ApiError | None:
        scheme, _, given = (authorization or "").strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return ApiError(401, MISSING_KEY_MESSAGE)
        # surrogateescape: header bytes that are not UTF-8 compare as the bytes they were
        if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._key):
            return None
        return ApiError(401, f"Incorrect API key provided: {mask_key(given)}. {WRONG_KEY_TAIL}", code="invalid_api_key")

    def _content_type_refusal(self, request: web.Request) -> ApiError | None:
        if request.method != "POST" or request.match_info.http_exception is not None:
            return None  # not a POST, or a missing route: the router answers 404/405
        resource = request.match_info.route.resource
        if resource is not None and resource.canonical in self._multipart_paths:
            return None
        if request.content_type == "application/json":
            return None
        sent = request.headers.get("Content-Type")
        shown = f"'{sent[:SHOWN_CHARS]}'" if sent else "no Content-Type"
        return ApiError(
            415,
            f"Unsupported content type: this endpoint takes JSON, so the request must be sent with "
            f"'Content-Type: application/json' (even when it has no body), but it came with {shown}.",
        )


def mask_key(key: str) -> str:
    """A key shown the way OpenAI shows a wrong one: its first 3 and last 4 characters."""
    key = key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(key) <= 7:
        return "*" * len(key)
    return key[:3] + "*" * min(len(key) - 7, 40) + key[-4:]


def host_name(host: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, lowercase."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def is_loopback(name: str) -> bool:
    """Whether a host name (see `host_name`; a bind address is one too) stays on this machine."""
    name = host_name(name)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _preflight(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
    response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response
