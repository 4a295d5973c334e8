"""Uploading a training file once (`core/launch/uploads.py`), against the real local backend:
progress, reuse of the same content (across a restart too), the Uploads API in parts with a
dropped connection and a resume (across a restart too), the upload's hour, cancel, and a file
that changes. Thresholds are small (1 KiB, 256-byte parts) so files of a few KB take parts.
Time is the test's: the backend runs on the fake clock, the upload's hour on `wall_clock`."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import openai
import pytest
from conftest import CLOCK_START

from tunedeck.backend.http.faults import rule_from_dict
from tunedeck.core.api import Api
from tunedeck.core.bootstrap import open_service
from tunedeck.core.cache import SCHEMA_VERSION, Cache, UploadedFile, UploadSession
from tunedeck.core.launch.uploads import (
    RATE_WINDOW_S,
    FileChanged,
    UploadCancelled,
    UploadInterrupted,
    UploadProgress,
    _Reporter,
    upload_for_training,
)

THRESHOLD = 1024
BIG_LINES = 23  # 2393 bytes: 10 parts, the last one short
PART = 256
PARTS_PATH = "/v1/uploads/*/parts"
NOW = 1_800_000_000.0  # this machine's time, for the upload's hour (wall_clock)


def chat_lines(n: int, seed: str = "a") -> bytes:
    rows = []
    for i in range(n):
        label = ("billing", "shipping")[i % 2]
        messages = [{"role": "user", "content": f"{seed} ticket {i}"}, {"role": "assistant", "content": label}]
        rows.append(json.dumps({"messages": messages}) + "\n")
    return "".join(rows).encode()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def big(tmp_path) -> Path:
    """A file of several parts: 10 parts of 256 bytes, the last one short."""
    data = chat_lines(BIG_LINES)
    assert 9 * PART < len(data) < 10 * PART, len(data)
    return write(tmp_path / "big.jsonl", data)


@pytest.fixture
def small(tmp_path) -> Path:
    data = chat_lines(8)
    assert len(data) <= THRESHOLD
    return write(tmp_path / "small.jsonl", data)


async def connected(backend):
    service = await open_service(local_backend=backend)
    await service.connect()
    assert service.is_connected, service.connection.detail
    return service


@pytest.fixture
async def service(backend):
    service = await connected(backend)
    yield service
    await service.close()


class RecordingApi(Api):
    """The service's client without the SDK's retries (a dropped part fails at once, with no
    back-off to wait out), recording the uploads it creates and the parts it sends."""

    def __init__(self, service) -> None:
        super().__init__(service._api._client.with_options(max_retries=0))
        self.uploads: list[str] = []
        self.parts_sent = 0

    async def create_upload(self, *args, **kwargs):
        upload = await super().create_upload(*args, **kwargs)
        self.uploads.append(upload["id"])
        return upload

    async def add_upload_part(self, *args, **kwargs):
        part = await super().add_upload_part(*args, **kwargs)
        self.parts_sent += 1
        return part


def set_faults(backend, *rules: dict) -> None:
    backend.faults.set_rules([rule_from_dict(rule) for rule in rules])


def drop_part(number: int) -> dict:
    """Drop the connection of the `number`th part request (counting from the rule's setting)."""
    return {"kind": "drop", "method": "POST", "path": PARTS_PATH, "every": number, "times": 1}


async def upload(api, service, path: Path, **kwargs):
    kwargs.setdefault("multipart_threshold", THRESHOLD)
    kwargs.setdefault("part_size", PART)
    kwargs.setdefault("wall_clock", lambda: NOW)
    return await upload_for_training(api, service.cache, service.profile.name, path, **kwargs)


async def server_files(client) -> list:
    return [file async for file in client.files.list()]


async def content(client, file_id: str) -> bytes:
    return (await client.files.content(file_id)).read()


def uploading(reports: list[UploadProgress]) -> list[UploadProgress]:
    return [report for report in reports if report.phase == "uploading"]


def part_numbers(reports: list[UploadProgress]) -> set[int]:
    """The parts an upload sent, read from its progress lines ("part 3 of 10")."""
    return {int(r.detail.split()[1]) for r in uploading(reports) if r.detail.startswith("part ")}


# -- one request ---------------------------------------------------------------------------------


async def test_a_small_file_streams_with_progress_that_rises_to_its_size(service, client, small):
    reports: list[UploadProgress] = []
    result = await upload(service._api, service, small, progress=reports.append)
    size = small.stat().st_size
    assert (result.reused, result.resumed, result.note) == (False, False, "")
    assert result.file["bytes"] == size and await content(client, result.file["id"]) == small.read_bytes()
    phases = [r.phase for r in reports]
    assert phases[0] == "hashing" and phases[-1] == "done" and "checking" in phases
    for phase in ("hashing", "uploading"):
        sent = [r.sent for r in reports if r.phase == phase]
        assert sent == sorted(sent) and sent[-1] == size, (phase, sent)
    assert uploading(reports)[0].sent == 0  # the bar starts empty...
    assert all(r.total == size and r.name == "small.jsonl" for r in reports)
    assert reports[-1].sent == size and reports[-1].eta == 0.0  # ...and ends full


async def test_the_api_streams_a_file_from_disk_reporting_each_chunk(service, client, tmp_path):
    path = write(tmp_path / "three-chunks.jsonl", chat_lines(1500))
    assert len(path.read_bytes()) > 2 * 64 * 1024  # httpx reads 64 KiB at a time
    positions: list[int] = []
    before = service._api.requests
    file = await service._api.upload_file(path, "fine-tune", positions.append)
    assert service._api.requests == before + 1
    assert len(set(positions)) >= 3 and positions == sorted(positions)  # several reads, not one
    assert positions[-1] == path.stat().st_size
    assert await content(client, file["id"]) == path.read_bytes()


async def test_a_dropped_request_is_sent_again_by_the_sdk_from_the_open_file(service, backend, client, small):
    set_faults(backend, {"kind": "drop", "method": "POST", "path": "/v1/files", "times": 1})
    result = await upload(service._api, service, small)  # the service's client: SDK retries on
    assert backend.faults.fired() == [1]
    assert [f.id for f in await server_files(client)] == [result.file["id"]]
    assert await content(client, result.file["id"]) == small.read_bytes()  # read again from its start


async def test_a_single_upload_cut_off_says_so_and_remembers_nothing(service, backend, client, small):
    api = RecordingApi(service)
    set_faults(backend, {"kind": "drop", "method": "POST", "path": "/v1/files", "times": 1})
    with pytest.raises(UploadInterrupted) as info:
        await upload(api, service, small)
    assert info.value.kind == "connection"
    assert "small.jsonl" in str(info.value) and "Launching again sends it again" in str(info.value)
    assert await service.cache.known_file(service.profile.name, *content_key(small)) is None
    set_faults(backend)
    result = await upload(api, service, small)
    assert not result.reused and [f.id for f in await server_files(client)] == [result.file["id"]]


# -- reuse ---------------------------------------------------------------------------------------


async def test_the_same_content_is_reused_not_sent_again(service, client, small, tmp_path):
    first = await upload(service._api, service, small)
    copy = write(tmp_path / "copy-of-small.jsonl", small.read_bytes())  # same content, another name
    reports: list[UploadProgress] = []
    before = service._api.requests
    second = await upload(service._api, service, copy, progress=reports.append)
    assert second.reused and second.file["id"] == first.file["id"]
    assert service._api.requests == before + 1  # one look that the file is still there
    day = time.strftime("%Y-%m-%d", time.localtime(first.file["created_at"]))
    assert second.note == (f"reused {first.file['id']}: this file (same content) was uploaded to this profile on {day}")
    assert reports[-1].phase == "reused" and reports[-1].detail == second.note
    assert not uploading(reports)
    assert len(await server_files(client)) == 1


async def test_reuse_survives_a_restart_of_the_app(backend, client, big):
    service = await connected(backend)
    try:
        first = await upload(service._api, service, big)
    finally:
        await service.close()
    service = await connected(backend)  # a new process: new cache connection, new client
    try:
        second = await upload(service._api, service, big)
    finally:
        await service.close()
    assert second.reused and second.file["id"] == first.file["id"]
    assert len(await server_files(client)) == 1


async def test_another_purpose_or_profile_is_not_the_same_upload(service, client, small):
    first = await upload(service._api, service, small)
    other = await upload(service._api, service, small, purpose="batch")
    assert not other.reused and other.file["id"] != first.file["id"]
    other_profile = await upload_for_training(service._api, service.cache, "another-profile", small)
    assert not other_profile.reused
    assert len(await server_files(client)) == 3


async def test_a_file_deleted_on_the_server_is_uploaded_again(service, client, small):
    first = await upload(service._api, service, small)
    await client.files.delete(first.file["id"])
    second = await upload(service._api, service, small)
    assert not second.reused and second.file["id"] != first.file["id"]
    assert first.file["id"] in second.note and "gone from the server" in second.note
    assert [f.id for f in await server_files(client)] == [second.file["id"]]
    third = await upload(service._api, service, small)
    assert third.reused and third.file["id"] == second.file["id"]  # the new one is remembered


# -- the Uploads API -----------------------------------------------------------------------------


async def test_a_large_file_goes_in_parts_and_arrives_byte_for_byte(service, client, big):
    api = RecordingApi(service)
    reports: list[UploadProgress] = []
    result = await upload(api, service, big, progress=reports.append)
    assert (result.reused, result.resumed, api.parts_sent, len(api.uploads)) == (False, False, 10, 1)
    assert await content(client, result.file["id"]) == big.read_bytes()
    assert result.file["filename"] == "big.jsonl"
    sent = [r.sent for r in uploading(reports)]
    assert sent == sorted(sent) and sent[-1] == big.stat().st_size
    assert part_numbers(reports) == set(range(1, 11))
    assert await service.cache.upload_session(service.profile.name, *content_key(big)) is None  # done: dropped


def content_key(path: Path) -> tuple[str, str]:
    """The cache's key for a file's content: (sha256, purpose)."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), "fine-tune"


async def test_a_dropped_connection_stops_the_upload_and_the_next_call_resumes_it(service, backend, client, big):
    api = RecordingApi(service)
    set_faults(backend, drop_part(4))
    with pytest.raises(UploadInterrupted) as info:
        await upload(api, service, big)
    message = str(info.value)
    assert info.value.kind == "connection"
    assert "big.jsonl" in message and "after 3 of 10 parts" in message and "768 B" in message
    assert "resumes it from there" in message and time.strftime("%H:%M", time.localtime(NOW + 3600 - 60)) in message
    saved = await service.cache.upload_session(service.profile.name, *content_key(big))
    assert saved is not None and len(saved.part_ids) == 3 and saved.upload_id == api.uploads[0]

    set_faults(backend)
    api.parts_sent = 0
    reports: list[UploadProgress] = []
    result = await upload(api, service, big, progress=reports.append)
    assert result.resumed and result.note == "resumed the upload at part 4 of 10"
    assert api.parts_sent == 7 and part_numbers(reports) == set(range(4, 11))  # fewer parts the second time
    assert len(api.uploads) == 1  # the same upload, continued
    resuming = next(r for r in reports if r.phase == "resuming")
    assert resuming.sent == resuming.resumed_from == 3 * PART
    assert all(r.resumed_from == 3 * PART for r in uploading(reports))
    files = await server_files(client)
    assert [f.id for f in files] == [result.file["id"]]
    assert await content(client, result.file["id"]) == big.read_bytes()
    assert await service.cache.upload_session(service.profile.name, *content_key(big)) is None


async def test_a_part_heard_twice_after_a_lost_answer_is_harmless(service, backend, client, big):
    # The server keeps part 2, the client never hears of it, and the SDK sends it again: only
    # the part ids listed at completion count, so the file is still exactly the local bytes.
    set_faults(backend, {**drop_part(2), "after_handling": True})
    result = await upload(service._api, service, big)
    assert backend.faults.fired() == [1]
    assert await content(client, result.file["id"]) == big.read_bytes()


async def test_an_upload_resumes_after_a_restart_of_the_app(backend, client, big):
    service = await connected(backend)
    try:
        api = RecordingApi(service)
        set_faults(backend, drop_part(6))
        with pytest.raises(UploadInterrupted):
            await upload(api, service, big)
    finally:
        await service.close()  # the app quits: the cache and the client close
    set_faults(backend)

    service = await connected(backend)
    try:
        api = RecordingApi(service)
        result = await upload(api, service, big)
        assert result.resumed and result.note == "resumed the upload at part 6 of 10"
        assert api.parts_sent == 5 and api.uploads == []  # no new upload was created
    finally:
        await service.close()
    assert await content(client, result.file["id"]) == big.read_bytes()
    assert len(await server_files(client)) == 1


async def test_a_session_past_its_hour_is_started_over(service, backend, client, big):
    api = RecordingApi(service)
    set_faults(backend, drop_part(3))
    with pytest.raises(UploadInterrupted):
        await upload(api, service, big)
    set_faults(backend)
    saved = await service.cache.upload_session(service.profile.name, *content_key(big))

    later = saved.expires_at - 30  # inside the last minute: too late to send the rest
    result = await upload(api, service, big, wall_clock=lambda: later)
    assert not result.resumed and "ran out of time" in result.note
    assert len(api.uploads) == 2 and api.parts_sent == 2 + 10
    assert await content(client, result.file["id"]) == big.read_bytes()


async def test_an_upload_the_server_expired_is_started_over_once_with_a_note(service, backend, clock, client, big):
    api = RecordingApi(service)
    set_faults(backend, drop_part(3))
    with pytest.raises(UploadInterrupted):
        await upload(api, service, big)
    set_faults(backend)
    clock.now = CLOCK_START + 3600  # the server's hour is over; this machine's clock says otherwise

    result = await upload(api, service, big)
    assert not result.resumed and len(api.uploads) == 2
    assert f"no longer takes parts for upload {api.uploads[0]}" in result.note and "expired" in result.note
    assert await content(client, result.file["id"]) == big.read_bytes()


async def test_cancel_between_parts_cancels_the_upload_on_the_server_and_forgets_it(service, client, big):
    api = RecordingApi(service)
    cancel = asyncio.Event()

    def progress(report: UploadProgress) -> None:
        if report.detail == "part 3 of 10":
            cancel.set()

    with pytest.raises(UploadCancelled, match="big.jsonl"):
        await upload(api, service, big, progress=progress, cancel=cancel)
    assert api.parts_sent == 2  # the third part never went
    assert await service.cache.upload_session(service.profile.name, *content_key(big)) is None
    assert await service.cache.known_file(service.profile.name, *content_key(big)) is None
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        await client.uploads.cancel(api.uploads[0])
    assert await server_files(client) == []


async def test_cancel_while_hashing_sends_nothing(service, client, big):
    cancel = asyncio.Event()
    cancel.set()
    before = service._api.requests
    with pytest.raises(UploadCancelled):
        await upload(service._api, service, big, cancel=cancel)
    assert service._api.requests == before


async def test_a_changed_file_is_not_resumed_and_its_old_upload_is_cancelled(service, backend, client, big):
    api = RecordingApi(service)
    set_faults(backend, drop_part(4))
    with pytest.raises(UploadInterrupted):
        await upload(api, service, big)
    set_faults(backend)
    old_key = content_key(big)
    write(big, chat_lines(BIG_LINES, seed="b"))  # same size, different content
    assert big.stat().st_size == len(chat_lines(BIG_LINES)) and content_key(big) != old_key

    result = await upload(api, service, big)
    assert not result.resumed and len(api.uploads) == 2 and api.parts_sent == 3 + 10
    assert await content(client, result.file["id"]) == big.read_bytes()
    assert await service.cache.upload_sessions(service.profile.name) == []  # the old one went too
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        await client.uploads.cancel(api.uploads[0])


# -- a file that changes while it is read ---------------------------------------------------------


async def test_a_file_growing_during_a_single_upload_is_refused_by_name(service, client, small):
    def progress(report: UploadProgress) -> None:
        if report.phase == "uploading" and report.sent == 0:
            with open(small, "ab") as handle:
                handle.write(b'{"messages": []}\n')

    with pytest.raises(FileChanged) as info:
        await upload(service._api, service, small, progress=progress)
    assert str(small) in str(info.value) and "changed while it was being uploaded" in str(info.value)
    assert await server_files(client) == []  # what was sent is not kept
    assert await service.cache.known_file(service.profile.name, *content_key(small)) is None


async def test_a_file_cut_short_between_parts_is_refused_by_name(service, client, big):
    api = RecordingApi(service)

    def progress(report: UploadProgress) -> None:
        if report.detail == "part 2 of 10" and report.sent == PART:
            os.truncate(big, 3 * PART + 10)

    with pytest.raises(FileChanged, match=str(big)):
        await upload(api, service, big, progress=progress)
    assert await service.cache.upload_sessions(service.profile.name) == []
    assert await server_files(client) == []


async def test_an_edit_in_place_that_keeps_size_and_time_is_caught_at_completion(service, client, big):
    # Size and time say nothing; the MD5 sent with the completion does, and the file is hashed
    # again to tell a changed file from an upload the server lost.
    api = RecordingApi(service)
    stat = big.stat()

    def progress(report: UploadProgress) -> None:
        if report.detail == "part 5 of 10" and report.sent == 4 * PART:
            with open(big, "r+b") as handle:
                handle.seek(6 * PART + 5)  # in part 7, not sent yet
                handle.write(b"X")
            os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    with pytest.raises(FileChanged, match=str(big)):
        await upload(api, service, big, progress=progress)
    assert await service.cache.upload_sessions(service.profile.name) == []
    assert await server_files(client) == []


# -- the rate --------------------------------------------------------------------------------------


def test_the_rate_follows_the_last_few_seconds_and_gives_the_time_left():
    now = [0.0]
    reports: list[UploadProgress] = []
    reporter = _Reporter(reports.append, "f.jsonl", lambda: now[0])
    reporter.total = 10_000
    for second in range(5):  # fast: 1000 bytes a second
        now[0] = float(second)
        reporter.report("uploading", second * 1000)
    assert reports[0].rate == 0.0 and reports[0].eta is None  # one sample says nothing yet
    assert reports[-1].rate == pytest.approx(1000.0)
    assert reports[-1].eta == pytest.approx(6.0)
    sent = 4000
    for second in range(5, 5 + 2 * int(RATE_WINDOW_S)):  # then slow: 100 bytes a second
        now[0] = float(second)
        sent += 100
        reporter.report("uploading", sent)
    assert reports[-1].rate == pytest.approx(100.0)  # the fast stretch has left the window
    assert reports[-1].eta == pytest.approx((10_000 - sent) / 100.0)
    now[0] += 1
    reporter.report("uploading", 0)  # sent again from the start (an SDK retry): a new measure
    assert reports[-1].rate == 0.0 and reports[-1].eta is None


# -- the cache ---------------------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (profile TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (profile, id));
CREATE INDEX jobs_by_created ON jobs (profile, created_at DESC);
CREATE TABLE events (profile TEXT NOT NULL, job_id TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (profile, job_id, id));
CREATE INDEX events_by_seq ON events (profile, job_id, seq);
CREATE INDEX events_by_type ON events (profile, type, job_id, seq);
PRAGMA user_version = 1;
"""


async def test_a_version_1_cache_gains_the_upload_tables_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "cache.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(V1_SCHEMA)
    job = {"id": "ftjob-old", "created_at": 5, "status": "succeeded"}
    old.execute("INSERT INTO jobs VALUES ('local', 'ftjob-old', 5, 'succeeded', ?)", (json.dumps(job),))
    old.commit()
    old.close()

    cache = await Cache.open(path)
    try:
        assert cache.recovery_note is None  # migrated, not taken for damage
        assert [j["id"] for j in await cache.jobs("local")] == ["ftjob-old"]
        assert await cache.known_file("local", "ab" * 32, "fine-tune") is None
        known = UploadedFile("ab" * 32, "fine-tune", 10, "file-1", "t.jsonl", 7)
        await cache.remember_file("local", known)
        session = UploadSession("ab" * 32, "fine-tune", "/d/t.jsonl", 10, "upload_1", 4, ("part_a",), NOW)
        await cache.save_upload_session("local", session)
    finally:
        await cache.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    cache = await Cache.open(path)
    try:
        assert await cache.known_file("local", "ab" * 32, "fine-tune") == known
        assert await cache.upload_session("local", "ab" * 32, "fine-tune") == session
    finally:
        await cache.close()


async def test_upload_rows_are_per_profile_and_can_be_forgotten(tmp_path):
    cache = await Cache.open(tmp_path / "c.sqlite3")
    try:
        session = UploadSession("cd" * 32, "fine-tune", "/d/t.jsonl", 10, "upload_1", 4, (), NOW)
        await cache.save_upload_session("p1", session)
        more = dataclasses.replace(session, part_ids=("part_a", "part_b"))
        await cache.save_upload_session("p1", more)  # after each part: replaces the row
        assert await cache.upload_session("p1", "cd" * 32, "fine-tune") == more
        assert await cache.upload_session("p2", "cd" * 32, "fine-tune") is None
        assert await cache.upload_sessions("p1") == [more]
        await cache.drop_upload_session("p1", "cd" * 32, "fine-tune")
        assert await cache.upload_sessions("p1") == []

        known = UploadedFile("cd" * 32, "fine-tune", 10, "file-1", "t.jsonl", 7)
        await cache.remember_file("p1", known)
        assert await cache.known_file("p2", "cd" * 32, "fine-tune") is None
        assert await cache.known_file("p1", "cd" * 32, "batch") is None
        await cache.forget_file("p1", "cd" * 32, "fine-tune")
        assert await cache.known_file("p1", "cd" * 32, "fine-tune") is None
    finally:
        await cache.close()
