"""Uploading a training file once: reuse, progress, cancel, and resume after a dropped connection.

`upload_for_training` hashes the file first (SHA-256 names its content; MD5 goes with the
Uploads API's completion so the server checks what it assembled). The cache then says
whether this profile already uploaded that content for that purpose: when the server still
has the file, it is reused and nothing is sent. Otherwise a small file goes in one request,
streamed from disk; a large one through the Uploads API in parts, read from disk one part at
a time (memory stays bounded by one part). The parts the server accepted are written to the
cache after each one, so a dropped connection or a restart of the app costs at most the part
in flight: the next call for the same content continues where it stopped, within the
upload's hour.

Progress is reported through a callback, on the event loop, as `UploadProgress` snapshots.
Time is a parameter (`clock` for rates, `wall_clock` for the upload's hour), so tests drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ..api import ApiError, upload_name
from ..cache import UploadedFile, UploadSession
from ..describe import byte_size

if TYPE_CHECKING:  # pragma: no cover
    from ..api import Api
    from ..cache import Cache

__all__ = [
    "MAX_PART_BYTES",
    "MULTIPART_THRESHOLD",
    "FileChanged",
    "UploadCancelled",
    "UploadInterrupted",
    "UploadProgress",
    "UploadResult",
    "upload_for_training",
]

MULTIPART_THRESHOLD = 64 * 2**20
"""Files larger than this go through the Uploads API in parts."""
MAX_PART_BYTES = 64 * 2**20
"""The API's limit on one part."""
HASH_CHUNK_BYTES = 8 * 2**20
EXPIRY_MARGIN_S = 60.0
"""A saved upload this close to its hour's end is started again rather than resumed: the
remaining parts and the completion must all land before the server forgets it."""
RATE_WINDOW_S = 5.0
"""The rate is measured over this recent stretch, so it follows a connection that slows down."""
UPLOAD_LIFETIME_S = 3600
"""An upload's hour, when the server's answer does not say."""
CANCEL_WAIT_S = 10.0
"""How long telling the server about a cancel may take; it is a courtesy (the upload expires anyway)."""
INTERRUPTED_KINDS = ("connection", "server", "rate_limit")
"""Failures that leave a saved upload worth resuming; anything else is an answer."""

Phase = str
"""One of "hashing", "checking", "uploading", "resuming", "reused", "done"."""


@dataclass(frozen=True, slots=True)
class UploadProgress:
    phase: Phase
    name: str
    """The file's name (not its path), for the progress line."""
    sent: int
    """Bytes done in this phase: hashed while hashing, accepted or on the wire while uploading."""
    total: int
    rate: float
    """Bytes per second over the last few seconds; 0.0 until two reports are apart in time."""
    eta: float | None
    """Seconds left at that rate; None when unknown."""
    resumed_from: int = 0
    """Bytes the server already had from an earlier try (the "resumed at 128 MB" text)."""
    detail: str = ""

    @property
    def fraction(self) -> float:
        return self.sent / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class UploadResult:
    file: dict[str, Any]
    """The File object the job will train on."""
    reused: bool
    resumed: bool
    note: str
    """A sentence for the user when something besides a plain upload happened (reused,
    resumed, started again); "" otherwise."""


class UploadCancelled(Exception):
    """The caller's cancel event was set: nothing more is sent and no upload is left pending."""


class FileChanged(Exception):
    """The file's content changed between hashing it and sending it; the message names it."""


class UploadInterrupted(ApiError):
    """An upload stopped by a failure of the connection or the server. The message says how
    far it got; for a file sent in parts, the next call for it resumes there, within the hour.
    An `ApiError` of the failure's kind, so a caller that reconnects on `connection` errors
    (the service reviving its local backend) tries again, and that try resumes."""


ProgressCallback = Callable[[UploadProgress], None]
T = TypeVar("T")


async def upload_for_training(
    api: Api,
    cache: Cache,
    profile: str,
    path: Path,
    purpose: str = "fine-tune",
    *,
    progress: ProgressCallback | None = None,
    cancel: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    part_size: int = MAX_PART_BYTES,
) -> UploadResult:
    """Make `path`'s content available as a File of `purpose` on `profile`, sending as
    little as possible. Raises `UploadCancelled`, `UploadInterrupted` (resumable),
    `FileChanged`, `ApiError` (an answer, e.g. the server refused the file) and `OSError`
    (the file cannot be read)."""
    if not 0 < part_size <= MAX_PART_BYTES:
        raise ValueError(f"part_size must be from 1 to {MAX_PART_BYTES} bytes, got {part_size}")
    upload = _Upload(api, cache, profile, Path(path), purpose, progress, cancel or asyncio.Event(), clock, wall_clock)
    return await upload.run(multipart_threshold, part_size)


# -- what is reported ---------------------------------------------------------------------------


class _Reporter:
    """Turns byte counts into `UploadProgress` snapshots with a rate over a recent window."""

    def __init__(self, callback: ProgressCallback | None, name: str, clock: Callable[[], float]) -> None:
        self._callback = callback
        self._name = name
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._phase = ""
        self.total = 0
        self.resumed_from = 0

    def report(self, phase: Phase, sent: int, detail: str = "") -> None:
        if self._callback is None:
            return
        now = self._clock()
        if phase != self._phase or (self._samples and sent < self._samples[-1][1]):
            self._samples.clear()  # a new phase, or a request sent again from its start
        self._phase = phase
        self._samples.append((now, sent))
        while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()  # the oldest sample kept is the last one at least a window old
        first_time, first_sent = self._samples[0]
        elapsed = now - first_time
        rate = (sent - first_sent) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - sent) / rate if rate > 0 else None
        if phase in ("reused", "done"):
            eta = 0.0
        self._callback(UploadProgress(phase, self._name, sent, self.total, rate, eta, self.resumed_from, detail))


# -- the file's identity ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    size: int
    mtime_ns: int
    sha256: str
    md5: str


def _stat(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _hash_chunk(handle: BinaryIO, *digests: Any) -> int:
    chunk = handle.read(HASH_CHUNK_BYTES)
    for digest in digests:
        digest.update(chunk)  # hashlib lets go of the GIL for large buffers
    return len(chunk)


async def _hash_file(
    path: Path, digests: tuple[Any, ...], each_chunk: Callable[[int], None] = lambda done: None
) -> int:
    """Feed the file to `digests` in a thread, a chunk at a time; `each_chunk` hears the bytes
    done so far between chunks, on the loop (where it may raise to stop). Returns the bytes read."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        done = 0
        while read := await asyncio.to_thread(_hash_chunk, handle, *digests):
            done += read
            each_chunk(done)
        return done
    finally:
        await asyncio.to_thread(handle.close)


def _read_part(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def _reason(exc: ApiError) -> str:
    """The error's message, ready to go inside a sentence (the SDK's may end in an empty cause)."""
    return exc.message.strip().rstrip(":").rstrip(".").strip() or exc.kind


def _local_time(seconds: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(seconds))


def _part_count(size: int, part_size: int) -> int:
    return max(1, math.ceil(size / part_size))


# -- one call -----------------------------------------------------------------------------------


class _UploadGone(Exception):
    """The server no longer takes parts for this upload (expired, cancelled, unknown)."""

    def __init__(self, upload_id: str, error: ApiError) -> None:
        super().__init__(upload_id)
        self.upload_id = upload_id
        self.error = error


class _Upload:
    def __init__(
        self,
        api: Api,
        cache: Cache,
        profile: str,
        path: Path,
        purpose: str,
        progress: ProgressCallback | None,
        cancel: asyncio.Event,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.api = api
        self.cache = cache
        self.profile = profile
        self.path = path
        self.purpose = purpose
        self.cancel = cancel
        self.wall_clock = wall_clock
        self.reporter = _Reporter(progress, path.name, clock)
        self.notes: list[str] = []

    async def run(self, multipart_threshold: int, part_size: int) -> UploadResult:
        fingerprint = await self._fingerprint()
        self.reporter.report("checking", 0, "looking for the same file uploaded before")
        reused = await self._reusable(fingerprint)
        if reused is not None:
            return reused
        if fingerprint.size <= multipart_threshold:
            file, resumed = await self._upload_whole(fingerprint), False
        else:
            file, resumed = await self._upload_in_parts(fingerprint, part_size)
        created = file.get("created_at")
        known = UploadedFile(
            fingerprint.sha256,
            self.purpose,
            fingerprint.size,
            str(file["id"]),
            str(file.get("filename") or upload_name(self.path)),
            created if isinstance(created, int) else int(self.wall_clock()),
        )
        await self.cache.remember_file(self.profile, known)
        # A cancel that came as the last request finished still stops the launch; the file is
        # remembered above, so the next launch reuses it instead of sending it again.
        self._check_cancel()
        self.reporter.report("done", fingerprint.size, f"uploaded as {known.file_id}")
        return UploadResult(file, reused=False, resumed=resumed, note="; ".join(self.notes))

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise UploadCancelled(f"the upload of {self.path.name} was cancelled")

    async def _unless_cancelled(self, request: Awaitable[T]) -> T:
        """Await `request`, abandoning it (its connection closes) as soon as cancel is set.
        A request that finished is returned even when the cancel came with it: the caller
        keeps what the server did, then stops at its next `_check_cancel`."""
        task = asyncio.ensure_future(request)
        stop = asyncio.ensure_future(self.cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise UploadCancelled(f"the upload of {self.path.name} was cancelled")
        return task.result()

    # -- hashing ---------------------------------------------------------------------------------

    async def _fingerprint(self) -> _Fingerprint:
        self._check_cancel()
        size, mtime_ns = await asyncio.to_thread(_stat, self.path)
        self.reporter.total = size
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)

        def each_chunk(done: int) -> None:
            self._check_cancel()
            self.reporter.report("hashing", min(done, size))

        self.reporter.report("hashing", 0)
        done = await _hash_file(self.path, (sha, md5), each_chunk)
        if done != size or await asyncio.to_thread(_stat, self.path) != (size, mtime_ns):
            raise self._changed("while it was being read")
        return _Fingerprint(size, mtime_ns, sha.hexdigest(), md5.hexdigest())

    def _changed(self, when: str) -> FileChanged:
        return FileChanged(
            f"{self.path} changed {when}, so what was read of it is not one version of the file; "
            "nothing from it was kept. Launch again once whatever is writing it has finished."
        )

    async def _still_the_same(self, fingerprint: _Fingerprint) -> bool:
        """A cheap check that the file was not rewritten since it was hashed (size and time)."""
        try:
            return await asyncio.to_thread(_stat, self.path) == (fingerprint.size, fingerprint.mtime_ns)
        except OSError:
            return False

    async def _content_is(self, sha256: str) -> bool:
        """The thorough check, after a completion was refused: an edit in place that kept the
        size and the time shows only in the content (the server's MD5 check saw it)."""
        digest = hashlib.sha256()
        try:
            await _hash_file(self.path, (digest,))
        except OSError:
            return False
        return digest.hexdigest() == sha256

    # -- reuse -----------------------------------------------------------------------------------

    async def _reusable(self, fingerprint: _Fingerprint) -> UploadResult | None:
        known = await self.cache.known_file(self.profile, fingerprint.sha256, self.purpose)
        if known is None:
            return None
        try:
            file: dict[str, Any] | None = await self._unless_cancelled(self.api.retrieve_file(known.file_id))
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
            file = None
        self._check_cancel()
        if file is not None and file.get("bytes") == fingerprint.size and file.get("status") != "error":
            day = _local_time(known.created_at, "%Y-%m-%d")
            note = f"reused {known.file_id}: this file (same content) was uploaded to this profile on {day}"
            self.reporter.report("reused", fingerprint.size, note)
            return UploadResult(file, reused=True, resumed=False, note=note)
        await self.cache.forget_file(self.profile, fingerprint.sha256, self.purpose)
        self.notes.append(
            f"{known.file_id}, the earlier upload of this file, is gone from the server: uploaded it again"
        )
        return None

    # -- one request -----------------------------------------------------------------------------

    async def _upload_whole(self, fingerprint: _Fingerprint) -> dict[str, Any]:
        total = fingerprint.size
        sent = 0

        def on_bytes(position: int) -> None:
            nonlocal sent
            sent = min(position, total)
            self.reporter.report("uploading", sent)

        self._check_cancel()
        self.reporter.report("uploading", 0)
        try:
            file = await self._unless_cancelled(self.api.upload_file(self.path, self.purpose, on_bytes))
        except ApiError as exc:
            if not await self._still_the_same(fingerprint):
                raise self._changed("while it was being uploaded") from None
            if exc.kind not in INTERRUPTED_KINDS:
                raise
            raise UploadInterrupted(
                exc.kind,
                f"the upload of {self.path.name} stopped after {byte_size(sent)} of {byte_size(total)}: "
                f"{_reason(exc)}. Launching again sends it again.",
                exc.status,
                exc.code,
            ) from None
        if file.get("bytes") != total or not await self._still_the_same(fingerprint):
            with contextlib.suppress(ApiError):
                await _bounded(self.api.delete_file(str(file["id"])))  # not the content that was hashed
            raise self._changed("while it was being uploaded")
        return file

    # -- the Uploads API -------------------------------------------------------------------------

    async def _upload_in_parts(self, fingerprint: _Fingerprint, part_size: int) -> tuple[dict[str, Any], bool]:
        session = await self._resumable_session(fingerprint)
        resumed = session is not None and bool(session.part_ids)
        started_over = False
        while True:
            if session is None:
                session = await self._new_session(fingerprint, part_size)
            try:
                return await self._send_parts(fingerprint, session), resumed
            except _UploadGone as gone:
                await self._forget_session(session, tell_server=False)
                if started_over:
                    raise gone.error from None
                self.notes.append(
                    f"the server no longer takes parts for upload {gone.upload_id} ({_reason(gone.error)}): "
                    "started it again"
                )
                started_over, resumed, session = True, False, None
            except (UploadCancelled, FileChanged):
                await self._forget_session(session, tell_server=True)
                raise

    async def _resumable_session(self, fingerprint: _Fingerprint) -> UploadSession | None:
        """The saved upload of this content, when it can still be finished. Saved uploads that
        cannot be (near or past their hour, or of an earlier version of this path) are cleared."""
        now = self.wall_clock()
        saved = await self.cache.upload_session(self.profile, fingerprint.sha256, self.purpose)
        for other in await self.cache.upload_sessions(self.profile):
            too_late = other.expires_at - EXPIRY_MARGIN_S <= now
            if too_late or (other.path == str(self.path) and other.sha256 != fingerprint.sha256):
                await self._forget_session(other, tell_server=other.expires_at > now)
        if saved is None:
            return None
        if saved.expires_at - EXPIRY_MARGIN_S <= now:
            ended = _local_time(saved.expires_at, "%H:%M")
            self.notes.append(f"the earlier upload of this file ran out of time at {ended}: started it again")
            return None
        if (
            saved.bytes != fingerprint.size
            or not 0 < saved.part_size <= MAX_PART_BYTES
            or len(saved.part_ids) > _part_count(saved.bytes, saved.part_size)
        ):
            await self._forget_session(saved, tell_server=True)
            return None
        return saved

    async def _new_session(self, fingerprint: _Fingerprint, part_size: int) -> UploadSession:
        self._check_cancel()
        try:
            upload = await self._unless_cancelled(
                self.api.create_upload(fingerprint.size, upload_name(self.path), self.purpose)
            )
        except ApiError as exc:
            if exc.kind not in INTERRUPTED_KINDS:
                raise
            raise UploadInterrupted(
                exc.kind,
                f"the upload of {self.path.name} could not start: {_reason(exc)}. Launching again tries again.",
                exc.status,
                exc.code,
            ) from None
        created, expires = upload.get("created_at"), upload.get("expires_at")
        known_times = isinstance(created, int) and isinstance(expires, int) and expires > created
        lifetime = expires - created if known_times else UPLOAD_LIFETIME_S
        # The deadline on this machine's clock: the server's clock may be set differently,
        # but its hour lasts an hour here too.
        session = UploadSession(
            fingerprint.sha256,
            self.purpose,
            str(self.path),
            fingerprint.size,
            str(upload["id"]),
            part_size,
            (),
            self.wall_clock() + lifetime,
        )
        await self.cache.save_upload_session(self.profile, session)
        return session

    async def _send_parts(self, fingerprint: _Fingerprint, session: UploadSession) -> dict[str, Any]:
        total, part_size = fingerprint.size, session.part_size
        count = _part_count(total, part_size)
        part_ids = list(session.part_ids)
        reporter = self.reporter
        reporter.resumed_from = min(len(part_ids) * part_size, total)
        if part_ids:
            note = f"resumed the upload at part {len(part_ids) + 1} of {count}"
            if len(part_ids) == count:
                note = f"resumed the upload: all {count} parts had been sent, so it was completed"
            self.notes.append(note)
            reporter.report("resuming", reporter.resumed_from, f"{byte_size(reporter.resumed_from)} already sent")
        for index in range(len(part_ids), count):
            self._check_cancel()
            offset = index * part_size
            length = min(part_size, total - offset)
            data = await asyncio.to_thread(_read_part, self.path, offset, length)
            if len(data) != length:
                raise self._changed("while it was being uploaded")
            detail = f"part {index + 1} of {count}"
            reporter.report("uploading", offset, detail)

            def on_bytes(position: int, offset: int = offset, length: int = length, detail: str = detail) -> None:
                reporter.report("uploading", offset + min(position, length), detail)

            part = await self._on_upload(session, self.api.add_upload_part(session.upload_id, data, on_bytes))
            del data  # memory holds one part at a time
            part_ids.append(str(part["id"]))
            session = replace(session, part_ids=tuple(part_ids))
            await self.cache.save_upload_session(self.profile, session)
        self._check_cancel()
        if not await self._still_the_same(fingerprint):
            raise self._changed("while it was being uploaded")
        reporter.report("uploading", total, "completing the upload")
        completing = self.api.complete_upload(session.upload_id, part_ids, fingerprint.md5)
        upload = await self._on_upload(session, completing, completing_for=fingerprint.sha256)
        file = upload.get("file")
        if not isinstance(file, dict) or not file.get("id"):
            raise ApiError("server", f"completing upload {session.upload_id} answered without a file")
        await self.cache.drop_upload_session(self.profile, fingerprint.sha256, self.purpose)
        return file

    async def _on_upload(
        self, session: UploadSession, request: Awaitable[dict[str, Any]], *, completing_for: str | None = None
    ) -> dict[str, Any]:
        """A request on the upload, its failure turned into what the caller acts on: an
        interruption (the session stays saved), a gone upload (start over), a changed file."""
        try:
            return await self._unless_cancelled(request)
        except ApiError as exc:
            if exc.kind in INTERRUPTED_KINDS:
                raise self._interrupted(session, exc) from None
            if exc.kind not in ("not_found", "bad_request"):
                raise
            if completing_for is not None and not await self._content_is(completing_for):
                raise self._changed("while it was being uploaded") from None
            raise _UploadGone(session.upload_id, exc) from None

    def _interrupted(self, session: UploadSession, exc: ApiError) -> UploadInterrupted:
        count = _part_count(session.bytes, session.part_size)
        done = len(session.part_ids)
        sent = min(done * session.part_size, session.bytes)
        until = _local_time(session.expires_at - EXPIRY_MARGIN_S, "%H:%M")
        return UploadInterrupted(
            exc.kind,
            f"the upload of {self.path.name} stopped after {done} of {count} parts "
            f"({byte_size(sent)} of {byte_size(session.bytes)}): {_reason(exc)}. "
            f"Launching again before {until} resumes it from there.",
            exc.status,
            exc.code,
        )

    async def _forget_session(self, session: UploadSession, *, tell_server: bool) -> None:
        """Drop a saved upload; `tell_server` cancels it there too, as a courtesy (it expires anyway)."""
        await self.cache.drop_upload_session(self.profile, session.sha256, session.purpose)
        if tell_server:
            with contextlib.suppress(ApiError):
                await _bounded(self.api.cancel_upload(session.upload_id))


async def _bounded(request: Awaitable[T]) -> T | None:
    """A courtesy call (a cancel, a clean-up), bounded so a dead connection cannot hold the user."""
    try:
        return await asyncio.wait_for(request, CANCEL_WAIT_S)
    except TimeoutError:
        return None
