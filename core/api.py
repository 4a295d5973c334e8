"""The one place that talks to the `openai` SDK.

Everything here returns the API's JSON as plain dicts (extra fields kept), and turns SDK
exceptions into `ApiError`s with a message a user can act on. `openai` is imported only
when a client is built, never at start-up (it costs ~0.4 s to import).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .config import Profile
from .paging import JOBS_MAX_PAGES, CursorWalk

if TYPE_CHECKING:  # pragma: no cover
    import openai

EVENTS_PAGE_SIZE = 100
CHECKPOINTS_PAGE_SIZE = 100
CHECKPOINTS_MAX_PAGES = 100  # 10,000 checkpoints at 100 a page: OpenAI keeps a job's last few

Progress = Callable[[int], None]
"""Told the bytes of a body handed to the connection so far (it starts again at 0 when the
SDK sends the request again)."""


class ChatAnswer(NamedTuple):
    """One chat completion's answer (its first choice) and the tokens it was billed for."""

    text: str
    """The assistant's text ("" when it sent none, e.g. only a refusal or a tool call)."""
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None = None
    """"length" when max tokens cut it (a reasoning model may be cut before any text)."""


REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
"""Models that take no `temperature` but the default (the API refuses 0 with a 400)."""


def takes_temperature(model: str) -> bool:
    """False for reasoning models (o-series, gpt-5), fine-tuned ones (`ft:o4-mini:...`) included."""
    name = model[3:] if model.startswith("ft:") else model
    return not name.startswith(REASONING_PREFIXES)


def _chat_body(
    model: str,
    messages: Sequence[dict[str, Any]],
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The request's fields. `max_completion_tokens` is the name every current model takes
    (`max_tokens` is refused by reasoning models); the local backend takes both."""
    body: dict[str, Any] = {"model": model, "messages": list(messages)}
    if temperature is not None and takes_temperature(model):
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_completion_tokens"] = max_tokens
    if seed is not None:
        body["seed"] = seed
    for key, value in (extra or {}).items():
        if value is not None and (key != "reasoning_effort" or not takes_temperature(model)):
            body[key] = value  # reasoning_effort only where a model reasons (others refuse it)
    return body


class ApiError(Exception):
    """A failed API call. `kind` is one of: connection, auth, permission, not_found,
    bad_request, rate_limit, server, training_not_available, config."""

    def __init__(
        self, kind: str, message: str, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        """Seconds the server asked to wait before trying again (`Retry-After`), when it said."""


@dataclass(frozen=True, slots=True)
class EventsPage:
    data: list[dict[str, Any]]
    has_more: bool


def build_client(profile: Profile, base_url: str | None = None, api_key: str | None = None) -> openai.AsyncOpenAI:
    """An async SDK client for `profile`. `base_url`/`api_key` override it (the local backend)."""
    import openai

    key = api_key or profile.api_key()
    if profile.backend == "azure":
        if not key:
            raise ApiError("config", f"profile {profile.name!r}: set {profile.key_env} to the Azure key")
        return openai.AsyncAzureOpenAI(
            azure_endpoint=profile.endpoint, api_version=profile.api_version, api_key=key, max_retries=2
        )
    if not key:
        raise ApiError("config", f"profile {profile.name!r}: set {profile.key_env} to an API key")
    return openai.AsyncOpenAI(api_key=key, base_url=base_url or profile.base_url, max_retries=2)


def _dump(obj: Any) -> dict[str, Any]:
    """SDK object to the JSON the server sent, extra fields included."""
    return obj.model_dump(mode="json", exclude_unset=False)


@contextlib.contextmanager
def _translate_errors():
    import openai

    try:
        yield
    except openai.APIConnectionError as exc:
        raise ApiError("connection", f"cannot reach the API: {exc.__cause__ or exc}") from None
    except openai.APIStatusError as exc:
        raise _status_error(exc) from None


def _status_error(exc: Any) -> ApiError:
    body = exc.body if isinstance(exc.body, dict) else {}
    code = body.get("code")
    message = body.get("message") or str(exc)
    status = exc.status_code
    if code == "training_not_available":
        return ApiError("training_not_available", message, status, code)
    kind = {400: "bad_request", 401: "auth", 403: "permission", 404: "not_found", 429: "rate_limit"}.get(
        status, "server" if status >= 500 else "bad_request"
    )
    return ApiError(kind, f"HTTP {status}: {message}", status, code, retry_after(getattr(exc, "response", None)))


def retry_after(response: Any) -> float | None:
    """The wait a 429 or 503 asks for: `retry-after-ms`, or `Retry-After` in seconds or as an
    HTTP date; None when the server gave none (or nonsense)."""
    import email.utils
    import time

    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def upload_name(path: Path) -> str:
    """The name a file is uploaded under: its own, with characters that cannot travel in a
    multipart header (controls, undecodable bytes) replaced, as servers refuse those."""
    return "".join(char if char.isprintable() else "_" for char in path.name) or "upload.jsonl"


class _ReportingFile(io.FileIO):
    """A file opened for reading that reports its position after each read. httpx seeks it to
    0 before each send (the SDK's retries included), so the position is the bytes sent."""

    def __init__(self, path: Path, progress: Progress | None) -> None:
        super().__init__(path, "rb")
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        if self._progress is not None:
            self._progress(self.tell())
        return chunk


class _ReportingBytes(io.BytesIO):
    """A part's bytes, reporting the position after each read as `_ReportingFile` does."""

    def __init__(self, data: bytes, progress: Progress | None) -> None:
        super().__init__(data)
        self._progress = progress

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self._progress is not None:
            self._progress(self.tell())
        return chunk


class Api:
    """Thin async wrapper over one SDK client."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self._client = client
        self.requests = 0  # calls made through this client (what polling costs, shown to users)
        self._warned: set[str] = set()
        self._retrying: dict[int, openai.AsyncOpenAI] = {}  # copies with other SDK retries (one connection pool)

    def first_warning(self, about: str) -> bool:
        """True the first time this connection warns `about` something (e.g. one job's events):
        the poller asks every 2 s, and the same broken endpoint is news only once."""
        if about in self._warned:
            return False
        self._warned.add(about)
        return True

    async def close(self) -> None:
        await self._client.close()

    async def list_jobs(self, limit: int = 20, after: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        self.requests += 1
        with _translate_errors():
            kwargs: dict[str, Any] = {"limit": limit}
            if after:
                kwargs["after"] = after
            page = await self._client.fine_tuning.jobs.list(**kwargs)
        return [_dump(j) for j in page.data], bool(page.has_more)

    async def iter_jobs(self, page_size: int = 100, *, walk: CursorWalk | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every job, newest first, each once. The walk stops an endless pagination and says
        why in `walk.warning` (pass one in to read it)."""
        walk = walk or CursorWalk("the job list", JOBS_MAX_PAGES)
        after = None
        while True:
            jobs, has_more = await self.list_jobs(limit=page_size, after=after)
            for job in walk.unseen(jobs):
                yield job
            after = walk.after(jobs, has_more)
            if after is None:
                return

    async def retrieve_job(self, job_id: str) -> dict[str, Any]:
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.fine_tuning.jobs.retrieve(job_id))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.fine_tuning.jobs.cancel(job_id))

    async def pause_job(self, job_id: str) -> dict[str, Any]:
        """Pause a running job (the provider checkpoints it first); its state as answered."""
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.fine_tuning.jobs.pause(job_id))

    async def resume_job(self, job_id: str) -> dict[str, Any]:
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.fine_tuning.jobs.resume(job_id))

    async def checkpoints_page(
        self, job_id: str, after: str | None = None, limit: int = CHECKPOINTS_PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a job's checkpoints, newest first; `after` walks toward older ones."""
        self.requests += 1
        with _translate_errors():
            kwargs: dict[str, Any] = {"limit": limit}
            if after:
                kwargs["after"] = after
            page = await self._client.fine_tuning.jobs.checkpoints.list(job_id, **kwargs)
        return [_dump(c) for c in page.data], bool(page.has_more)

    async def list_checkpoints(
        self, job_id: str, page_size: int = CHECKPOINTS_PAGE_SIZE, *, walk: CursorWalk | None = None
    ) -> list[dict[str, Any]]:
        """Every checkpoint of a job, each once, in the API's order (newest first). The walk
        stops an endless pagination and says why in `walk.warning` (pass one in to read it)."""
        walk = walk or CursorWalk(f"checkpoints of {job_id}", CHECKPOINTS_MAX_PAGES)
        found: list[dict[str, Any]] = []
        after = None
        while True:
            page, has_more = await self.checkpoints_page(job_id, after=after, limit=page_size)
            found.extend(walk.unseen(page))
            after = walk.after(page, has_more)
            if after is None:
                return found

    async def events_page(self, job_id: str, after: str | None = None, limit: int = EVENTS_PAGE_SIZE) -> EventsPage:
        """One page of events, newest first; `after` walks toward older events."""
        self.requests += 1
        with _translate_errors():
            kwargs: dict[str, Any] = {"limit": limit}
            if after:
                kwargs["after"] = after
            page = await self._client.fine_tuning.jobs.list_events(job_id, **kwargs)
        return EventsPage([_dump(e) for e in page.data], bool(page.has_more))

    async def upload_training_file(self, path: Path) -> dict[str, Any]:
        return await self.upload_file(path, "fine-tune")

    async def upload_file(
        self, path: Path, purpose: str = "fine-tune", progress: Progress | None = None
    ) -> dict[str, Any]:
        """Upload `path` in one request (`POST /files`), streamed from disk: the SDK hands the
        open file to httpx, which reads it in 64 KiB chunks as the connection takes them, so
        memory stays flat and `progress` hears each chunk as it goes out."""
        self.requests += 1
        reader = await asyncio.to_thread(_ReportingFile, path, progress)
        try:
            with _translate_errors():
                return _dump(await self._client.files.create(file=(upload_name(path), reader), purpose=purpose))
        finally:
            reader.close()

    async def retrieve_file(self, file_id: str) -> dict[str, Any]:
        """The File object; an `ApiError` of kind `not_found` once it was deleted."""
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.files.retrieve(file_id))

    async def delete_file(self, file_id: str) -> dict[str, Any]:
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.files.delete(file_id))

    async def create_upload(
        self, bytes: int, filename: str, purpose: str, mime_type: str = "text/jsonl"
    ) -> dict[str, Any]:
        """Start an Uploads-API upload of `bytes` bytes; it takes parts for an hour (`expires_at`)."""
        self.requests += 1
        with _translate_errors():
            upload = await self._client.uploads.create(
                bytes=bytes, filename=filename, purpose=purpose, mime_type=mime_type
            )
        return _dump(upload)

    async def add_upload_part(self, upload_id: str, data: bytes, progress: Progress | None = None) -> dict[str, Any]:
        """Send one part (at most 64 MB). The SDK's retries may leave a part on the server
        that nobody heard of: harmless, as only the parts listed at completion count."""
        self.requests += 1
        with _translate_errors():
            part = await self._client.uploads.parts.create(upload_id, data=("part", _ReportingBytes(data, progress)))
        return _dump(part)

    async def complete_upload(self, upload_id: str, part_ids: Sequence[str], md5: str | None = None) -> dict[str, Any]:
        """Assemble the parts, in this order, into a File (the answer's `file`). With `md5`,
        the server checks the assembled bytes against it."""
        self.requests += 1
        kwargs: dict[str, Any] = {"part_ids": list(part_ids)}
        if md5 is not None:
            kwargs["md5"] = md5
        with _translate_errors():
            return _dump(await self._client.uploads.complete(upload_id, **kwargs))

    async def cancel_upload(self, upload_id: str) -> dict[str, Any]:
        self.requests += 1
        with _translate_errors():
            return _dump(await self._client.uploads.cancel(upload_id))

    async def create_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        # No SDK retries: a retried create can start a second (billed) job on a server that
        # ignores `Idempotency-Key`. `job_create.py` reconciles by metadata, then retries once.
        self.requests += 1
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        with _translate_errors():
            client = self._client.with_options(max_retries=0)
            return _dump(await client.fine_tuning.jobs.create(**body, extra_headers=headers))

    async def list_model_ids(self) -> list[str]:
        return sorted(m["id"] for m in await self.list_models())

    async def list_models(self) -> list[dict[str, Any]]:
        """Every model the provider lists, as its JSON (`shutdown_date` and extras kept)."""
        self.requests += 1
        with _translate_errors():
            page = await self._client.models.list()
        return [_dump(m) for m in page.data]

    async def compute(self) -> dict[str, Any]:
        """A tunedeck backend's devices and the job holding each (`GET /tunedeck/compute`)."""
        self.requests += 1
        with _translate_errors():
            return await self._client.get("/tunedeck/compute", cast_to=object)  # type: ignore[no-any-return]

    async def run_grader(self, grader: dict[str, Any], model_sample: str, item: dict[str, Any]) -> dict[str, Any]:
        """`graders/run`: grade one answer for one dataset row (the grader editor's test run)."""
        self.requests += 1
        with _translate_errors():
            graders = self._client.fine_tuning.alpha.graders
            return _dump(await graders.run(grader=grader, model_sample=model_sample, item=item))  # type: ignore[arg-type]

    async def chat(
        self,
        model: str,
        messages: Sequence[dict[str, Any]],
        *,
        temperature: float | None,
        max_tokens: int | None,
        seed: int | None = None,
        retries: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChatAnswer:
        """One chat completion: the first choice's text and the usage. `None` leaves a setting
        to the model's default (a reasoning model is always sent none: it takes no other).
        `retries`: the SDK's own retries for this call (None: the client's); the evaluation
        runner passes 0 and paces its retries itself."""
        self.requests += 1
        client = self._client
        if retries is not None:
            client = self._retrying.get(retries) or self._retrying.setdefault(
                retries, self._client.with_options(max_retries=retries)
            )
        with _translate_errors():
            completion = await client.chat.completions.create(
                **_chat_body(model, messages, temperature, max_tokens, seed, extra)
            )
        text, finish_reason = "", None
        if completion.choices:
            text = completion.choices[0].message.content or ""
            finish_reason = completion.choices[0].finish_reason
        usage = completion.usage
        return ChatAnswer(
            text,
            usage.prompt_tokens if usage is not None else None,
            usage.completion_tokens if usage is not None else None,
            finish_reason,
        )

    async def chat_stream(
        self, model: str, messages: Sequence[dict[str, Any]], *, temperature: float | None, max_tokens: int | None
    ) -> AsyncIterator[str]:
        """The answer's text as it arrives, one delta at a time (the first choice's)."""
        self.requests += 1
        with _translate_errors():
            stream = await self._client.chat.completions.create(
                **_chat_body(model, messages, temperature, max_tokens, None), stream=True
            )
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta is not None and choice.delta.content:
                            yield choice.delta.content

    async def download_file(self, file_id: str, target: Path) -> int:
        """Write a file's content (`GET /files/{id}/content`) to `target`, streamed: memory
        stays flat at any size. Written beside it first and renamed, so `target` is whole or
        absent. Returns the bytes written."""
        self.requests += 1
        partial = target.with_name(f".{target.name}.partial")
        written = 0
        try:
            with _translate_errors():
                async with self._client.files.with_streaming_response.content(file_id) as response:
                    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        async for chunk in response.iter_bytes():
                            out.write(chunk)  # a page-cache write: microseconds
                            written += len(chunk)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written
