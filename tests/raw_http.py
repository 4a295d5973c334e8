"""Raw HTTP/1.1 for the backend's guard and limits tests: requests no well-behaved client
sends (a forged Host, a stalled body, a million form fields), read back byte for byte.

Everything is asyncio, so it shares the test's loop with a backend started there."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BOUNDARY = "tdk-test-boundary"
GIVE_UP_S = 20.0  # only a broken server makes a test wait this long


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        return self.json()["error"]


def address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def head(method: str, path: str, base_url: str, headers: dict[str, str] | None = None) -> bytes:
    """A request line and headers; `Host` is the server's unless `headers` names another."""
    host, port = address(base_url)
    fields = {"Host": f"{host}:{port}", **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def connect(base_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address(base_url))


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await asyncio.wait_for(reader.readline(), GIVE_UP_S)
    assert status_line, "the server closed the connection without answering"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await asyncio.wait_for(reader.readline(), GIVE_UP_S)) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), GIVE_UP_S)
    return Answer(status, headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (whatever it still sends is dropped)."""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), GIVE_UP_S)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        if not chunk:
            return True


async def request(
    base_url: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Answer:
    """One whole request on a fresh connection; `Content-Length` is added for a body."""
    headers = dict(headers or {})
    if body or method == "POST":
        headers.setdefault("Content-Length", str(len(body)))
    reader, writer = await connect(base_url)
    try:
        writer.write(head(method, path, base_url, headers) + body)
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()


def auth(backend: Any, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {backend.api_key}", **more}


def path_of(base_url: str, tail: str) -> str:
    return urlsplit(base_url).path + tail


# -- multipart forms ------------------------------------------------------------------------------


def form_part(disposition: bytes, content: bytes) -> bytes:
    return (
        b"--"
        + BOUNDARY.encode()
        + b"\r\nContent-Disposition: form-data; "
        + disposition
        + b"\r\n\r\n"
        + content
        + b"\r\n"
    )


def form_end() -> bytes:
    return b"--" + BOUNDARY.encode() + b"--\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + form_end()


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


async def many_fields(count: int, per_chunk: int = 1000) -> AsyncIterator[bytes]:
    """`count` small distinct form fields, made as they are sent (the test must not hold them)."""
    for start in range(0, count, per_chunk):
        parts: Iterable[bytes] = (
            form_part(f'name="field{i}"'.encode(), f"value{i}".encode())
            for i in range(start, min(start + per_chunk, count))
        )
        yield b"".join(parts)
    yield form_end()


def many_fields_length(count: int) -> int:
    return sum(len(form_part(f'name="field{i}"'.encode(), f"value{i}".encode())) for i in range(count)) + len(
        form_end()
    )
