"""What one request may cost the local backend: time (read timeouts on bodies and headers),
memory (forms of many fields, JSON size), disk (one file's limit, the storage budget, the
free-disk reserve), and what an upload leaves behind when it fails (nothing).

Timeouts are configured short (`read_timeout=0.5`) and each test awaits the outcome: an
answer, or the server closing the connection."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tracemalloc
from pathlib import Path

import openai
import pytest
from raw_http import (
    FORM_TYPE,
    auth,
    closed_by_server,
    connect,
    form,
    form_part,
    head,
    many_fields,
    many_fields_length,
    path_of,
    read_answer,
    request,
)

from tunedeck.backend import LocalBackend
from tunedeck.backend.http import routes_files
from tunedeck.backend.http.bodies import MAX_FORM_FIELDS_BYTES, MAX_FORM_PARTS, MAX_JSON_BODY

TIMEOUT = 0.5
TWO_GB = str(2 * 2**30)
LINE = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'


@contextlib.asynccontextmanager
async def started(tmp_path: Path, **options):
    backend = LocalBackend(tmp_path / "limited", auto_advance=False, **options)
    await backend.start_async()
    try:
        yield backend
    finally:
        await backend.stop_async()


def leftovers(backend: LocalBackend) -> list[str]:
    """Bytes of uploads that did not complete: files being received, parts being written."""
    incoming = [p.name for p in (backend.data_dir / "files" / ".incoming").iterdir()]
    parts = [p.name for p in (backend.data_dir / "uploads").glob("*/parts/*")]
    return incoming + parts


def kept_files(backend: LocalBackend) -> list[str]:
    return [p.name for p in (backend.data_dir / "files").iterdir() if p.is_file()]


def upload_headers(backend, length: int | str) -> dict[str, str]:
    return auth(backend, **{"Content-Type": FORM_TYPE, "Content-Length": str(length)})


# -- time -----------------------------------------------------------------------------------------


async def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(tmp_path):
    async with started(tmp_path, read_timeout=TIMEOUT) as backend:
        reader, writer = await connect(backend.base_url)
        headers = auth(backend, **{"Content-Type": "application/json", "Content-Length": "1000"})
        writer.write(head("POST", path_of(backend.base_url, "/fine_tuning/jobs"), backend.base_url, headers))
        writer.write(b'{"model": ')  # and then nothing
        answer = await read_answer(reader)
        assert answer.status == 408 and "0.5 seconds" in answer.error["message"]
        assert await closed_by_server(reader)
        writer.close()


@pytest.mark.parametrize(
    ("method", "tail", "content_type", "status"),
    [
        ("POST", "/files", FORM_TYPE, 413),  # past one file's limit: refused before reading
        ("POST", "/fine_tuning/jobs", "application/json", 413),  # past the JSON limit
        ("GET", "/models", None, 200),  # answered; the body it declared is never read
    ],
)
async def test_a_2gb_body_that_never_comes_is_answered_and_the_connection_closed(
    tmp_path, method, tail, content_type, status
):
    async with started(tmp_path, read_timeout=TIMEOUT) as backend:
        reader, writer = await connect(backend.base_url)
        headers = auth(backend, **{"Content-Length": TWO_GB})
        if content_type:
            headers["Content-Type"] = content_type
        writer.write(head(method, path_of(backend.base_url, tail), backend.base_url, headers))
        assert (await read_answer(reader)).status == status
        assert await closed_by_server(reader)  # after the read timeout, not after 2 GB
        writer.close()
        assert leftovers(backend) == []


async def test_headers_sent_a_byte_at_a_time_are_cut_off(tmp_path):
    async with started(tmp_path, read_timeout=TIMEOUT) as backend:
        reader, writer = await connect(backend.base_url)
        writer.write(b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        assert await closed_by_server(reader)
        writer.close()


async def test_an_upload_that_stalls_mid_file_leaves_nothing_behind(tmp_path):
    async with started(tmp_path, read_timeout=TIMEOUT) as backend:
        reader, writer = await connect(backend.base_url)
        start = form_part(b'name="purpose"', b"fine-tune") + form_part(b'name="file"; filename="t.jsonl"', b"")[:-2]
        writer.write(
            head("POST", path_of(backend.base_url, "/files"), backend.base_url, upload_headers(backend, 100_000))
        )
        writer.write(start + LINE * 50)  # part of the file, then nothing
        answer = await read_answer(reader)
        assert answer.status == 408
        assert leftovers(backend) == [] and kept_files(backend) == []
        writer.close()


# -- memory ---------------------------------------------------------------------------------------


async def test_a_form_of_many_small_fields_is_refused_without_holding_them(backend):
    """100,000 distinct fields (about 8 MB): refused after the first few dozen, and the
    server's memory never grows towards the size of the body."""
    count = 100_000
    length = many_fields_length(count)
    reader, writer = await connect(backend.base_url)
    tracemalloc.start()
    try:
        writer.write(
            head("POST", path_of(backend.base_url, "/files"), backend.base_url, upload_headers(backend, length))
        )
        answered = asyncio.create_task(read_answer(reader))
        async for chunk in many_fields(count):
            if answered.done():
                break  # refused: no need to send the rest
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        answer = await answered
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        writer.close()
    assert answer.status == 413 and f"at most {MAX_FORM_PARTS}" in answer.error["message"]
    # About 1.5 MB of passing buffers here; holding the fields took about 18 MB (and minutes under tracemalloc).
    assert peak < 4 * 2**20 < length, f"{peak} bytes allocated at the peak for a {length}-byte form"


async def test_form_fields_are_capped_in_total_size(backend):
    fields = [form_part(f'name="f{i}"'.encode(), b"x" * 4000) for i in range(MAX_FORM_FIELDS_BYTES // 4000 + 1)]
    body = form(*fields, form_part(b'name="file"; filename="t.jsonl"', LINE))
    answer = await request(
        backend.base_url, "POST", path_of(backend.base_url, "/files"), upload_headers(backend, len(body)), body
    )
    assert answer.status == 413 and "fields are too large" in answer.error["message"]
    assert leftovers(backend) == []


async def test_a_json_body_past_the_limit_is_refused_before_it_is_read(backend):
    headers = auth(backend, **{"Content-Type": "application/json", "Content-Length": str(MAX_JSON_BODY + 1)})
    answer = await request(backend.base_url, "POST", path_of(backend.base_url, "/fine_tuning/jobs"), headers)
    assert answer.status == 413 and "8 MB" in answer.error["message"]


# -- file names -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::aiohttp.multipart.BadContentDispositionParam")  # aiohttp notices it too
@pytest.mark.parametrize(
    "disposition",
    [
        b'filename="\xff\xfetrain.jsonl"',  # raw bytes that are not UTF-8
        b"filename*=utf-8''%FF%FEtrain.jsonl",  # RFC 5987, percent-encoded
        b"filename=\"train.jsonl\"; filename*=UTF-8''caf%E9.jsonl",  # latin-1 bytes claimed as UTF-8
        b"filename*=no-such-charset''train.jsonl",
    ],
)
async def test_a_filename_that_is_not_utf8_is_refused_and_nothing_is_kept(backend, client, disposition):
    body = form(form_part(b'name="purpose"', b"fine-tune"), form_part(b'name="file"; ' + disposition, LINE * 20))
    answer = await request(
        backend.base_url, "POST", path_of(backend.base_url, "/files"), upload_headers(backend, len(body)), body
    )
    assert answer.status == 400 and answer.error["param"] == "file"
    assert "'file'" in answer.error["message"] and "UTF-8" in answer.error["message"]
    assert leftovers(backend) == [] and kept_files(backend) == []
    assert (await client.files.list()).data == []

    upload = await client.uploads.create(bytes=10, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    body = form(form_part(b'name="data"; ' + disposition, b"0123456789"))
    parts_path = path_of(backend.base_url, f"/uploads/{upload.id}/parts")
    answer = await request(backend.base_url, "POST", parts_path, upload_headers(backend, len(body)), body)
    assert answer.status == 400 and answer.error["param"] == "data" and "UTF-8" in answer.error["message"]
    assert leftovers(backend) == []


async def test_a_utf8_filename_star_names_the_file(backend):
    body = form(form_part(b'name="purpose"', b"fine-tune"),
                form_part(b"name=\"file\"; filename=\"x\"; filename*=UTF-8''caf%C3%A9.jsonl", LINE))  # fmt: skip
    answer = await request(
        backend.base_url, "POST", path_of(backend.base_url, "/files"), upload_headers(backend, len(body)), body
    )
    assert answer.status == 200 and answer.json()["filename"] == "café.jsonl"


# -- disk -----------------------------------------------------------------------------------------


async def test_a_file_past_the_single_file_limit_gets_413_and_leaves_nothing(backend, client, monkeypatch):
    monkeypatch.setattr(routes_files, "MAX_FILE_BYTES", 1000)
    with pytest.raises(openai.APIStatusError) as too_big:
        await client.files.create(file=("t.jsonl", LINE * 20), purpose="fine-tune")  # streamed past the limit
    assert too_big.value.status_code == 413 and too_big.value.param == "file"
    declared = await request(
        backend.base_url, "POST", path_of(backend.base_url, "/files"), upload_headers(backend, 600 * 2**20)
    )
    assert declared.status == 413  # refused from its Content-Length, before a byte of it was read
    assert leftovers(backend) == [] and kept_files(backend) == []


async def test_uploads_past_the_storage_budget_get_507_saying_how_much_is_used(tmp_path):
    async with started(tmp_path, storage_limit_bytes=4000) as backend:
        sdk = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
        first = await sdk.files.create(file=("a.jsonl", LINE * 25), purpose="fine-tune")  # 2,175 bytes
        with pytest.raises(openai.InternalServerError) as full:
            await sdk.files.create(file=("b.jsonl", LINE * 25), purpose="fine-tune")
        assert full.value.status_code == 507 and full.value.code == "insufficient_storage"
        message = full.value.body["message"]
        assert "2.1 KiB of its 3.9 KiB storage limit" in message, message
        assert full.value.response.headers["x-should-retry"] == "false"
        assert leftovers(backend) == [] and kept_files(backend) == [first.id]

        with pytest.raises(openai.InternalServerError) as declared:  # refused at creation, not at the last part
            await sdk.uploads.create(bytes=5000, filename="c.jsonl", mime_type="text/jsonl", purpose="fine-tune")
        assert declared.value.status_code == 507
        upload = await sdk.uploads.create(bytes=1000, filename="c.jsonl", mime_type="text/jsonl", purpose="fine-tune")
        assert (await sdk.uploads.parts.create(upload.id, data=b"x" * 1000)).object == "upload.part"
        with pytest.raises(openai.InternalServerError):  # parts count as they arrive
            await sdk.uploads.parts.create(upload.id, data=b"x" * 1000)
        assert leftovers(backend) != []  # the first part stays, for the upload to complete
        await sdk.close()


async def test_uploads_that_would_eat_the_free_disk_reserve_get_507(tmp_path):
    reserve = shutil.disk_usage(tmp_path).free + 2**40  # more than the disk will ever have free
    async with started(tmp_path, min_free_disk_bytes=reserve) as backend:
        sdk = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
        with pytest.raises(openai.InternalServerError) as full:
            await sdk.files.create(file=("a.jsonl", LINE), purpose="fine-tune")
        assert full.value.status_code == 507 and "free" in full.value.body["message"]
        with pytest.raises(openai.InternalServerError):
            await sdk.uploads.create(bytes=10, filename="c.jsonl", mime_type="text/jsonl", purpose="fine-tune")
        assert leftovers(backend) == [] and kept_files(backend) == []
        await sdk.close()
