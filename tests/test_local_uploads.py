"""The Uploads API of the local backend, through the real `openai` SDK: parts, ordered
completion with MD5, cancel, the one-hour expiry (on a fake clock), and the limits."""

from __future__ import annotations

import hashlib
import json

import aiohttp
import openai
import pytest
from conftest import CLOCK_START

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.http import routes_uploads

START = CLOCK_START  # the fake clock's time (conftest.py)


def chat_lines(n: int) -> bytes:
    rows = []
    for i in range(n):
        label = ("billing", "shipping")[i % 2]
        messages = [{"role": "user", "content": f"ticket {i} about {label}"}, {"role": "assistant", "content": label}]
        rows.append(json.dumps({"messages": messages}) + "\n")
    return "".join(rows).encode()


async def new_upload(client, data: bytes, **overrides):
    params = {"bytes": len(data), "filename": "train.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    return await client.uploads.create(**{**params, **overrides})


async def test_parts_complete_in_the_order_given_not_the_order_sent(client, backend):
    data = chat_lines(12)
    pieces = [data[:100], data[100:250], data[250:]]
    upload = await new_upload(client, data)
    assert upload.status == "pending" and upload.object == "upload" and upload.id.startswith("upload_")
    assert (upload.created_at, upload.expires_at, upload.file) == (START, START + 3600, None)
    # Sent last piece first: only `part_ids` decides the order.
    sent = {index: await client.uploads.parts.create(upload.id, data=pieces[index]) for index in (2, 0, 1)}
    assert sent[0].object == "upload.part" and sent[0].upload_id == upload.id and sent[0].id.startswith("part_")
    done = await client.uploads.complete(
        upload.id, part_ids=[sent[i].id for i in range(3)], md5=hashlib.md5(data).hexdigest()
    )
    assert done.status == "completed" and done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (len(data), "train.jsonl", "fine-tune")
    assert (await client.files.content(done.file.id)).read() == data
    assert done.file.id in [f.id async for f in client.files.list(purpose="fine-tune")]

    job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=done.file.id)
    assert (await backend.run_until_async(job.id, "succeeded"))["status"] == "succeeded"


async def test_the_sdk_chunked_helper_uploads_a_file(client, tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(chat_lines(40))
    done = await client.uploads.upload_file_chunked(
        file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=333
    )
    assert done.status == "completed" and done.filename == "big.jsonl"
    assert (await client.files.content(done.file.id)).read() == path.read_bytes()


def test_the_sync_chunked_helper_uploads_bytes(tmp_path):
    backend = LocalBackend(tmp_path / "b", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    try:
        data = chat_lines(15)
        done = client.uploads.upload_file_chunked(
            file=data, filename="t.jsonl", bytes=len(data), mime_type="text/jsonl", purpose="fine-tune", part_size=64
        )
        assert done.status == "completed" and client.files.content(done.file.id).read() == data
    finally:
        client.close()
        backend.stop()


async def test_completion_checks_the_byte_count_and_md5_then_can_be_retried(client):
    data = chat_lines(3)
    upload = await new_upload(client, data)
    first = await client.uploads.parts.create(upload.id, data=data[:50])
    with pytest.raises(openai.BadRequestError) as short:
        await client.uploads.complete(upload.id, part_ids=[first.id])
    assert short.value.param == "part_ids" and f"bytes={len(data)}" in short.value.message
    second = await client.uploads.parts.create(upload.id, data=data[50:])
    with pytest.raises(openai.BadRequestError) as wrong_md5:
        await client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert wrong_md5.value.param == "md5"
    for bad_ids in ([first.id, first.id, second.id], [first.id, "part_nope"], [first.id, "../upload.json"]):
        with pytest.raises(openai.BadRequestError) as info:
            await client.uploads.complete(upload.id, part_ids=bad_ids)
        assert info.value.param == "part_ids"
    done = await client.uploads.complete(upload.id, part_ids=[first.id, second.id])
    assert done.status == "completed"
    with pytest.raises(openai.BadRequestError) as again:
        await client.uploads.complete(upload.id, part_ids=[first.id, second.id])
    assert "already completed" in again.value.message


async def test_a_cancelled_upload_takes_nothing_more(client):
    upload = await new_upload(client, b"0123456789")
    part = await client.uploads.parts.create(upload.id, data=b"01234")
    cancelled = await client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled" and cancelled.id == upload.id
    for call in (
        client.uploads.parts.create(upload.id, data=b"56789"),
        client.uploads.complete(upload.id, part_ids=[part.id]),
        client.uploads.cancel(upload.id),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            await call
        assert "already cancelled" in info.value.message


async def test_an_upload_expires_an_hour_after_creation(client, clock):
    upload = await new_upload(client, b"0123456789")
    part = await client.uploads.parts.create(upload.id, data=b"0123456789")
    clock.now += 3600
    for call in (
        client.uploads.parts.create(upload.id, data=b"x"),
        client.uploads.complete(upload.id, part_ids=[part.id]),
        client.uploads.cancel(upload.id),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            await call
        assert "expired" in info.value.message and info.value.type == "invalid_request_error"


async def test_unknown_uploads_are_404s(client):
    for call in (
        client.uploads.parts.create("upload_nope", data=b"x"),
        client.uploads.complete("upload_nope", part_ids=[]),
        client.uploads.cancel("upload_nope"),
        client.uploads.cancel("..%2F..%2Fbackend.sqlite3"),
    ):
        with pytest.raises(openai.NotFoundError):
            await call


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"bytes": 8 * 2**30 + 1}, "bytes"),
        ({"bytes": -1}, "bytes"),
        ({"bytes": "ten"}, "bytes"),
        ({"purpose": "nonsense"}, "purpose"),
        ({"filename": ""}, "filename"),
        ({"mime_type": ""}, "mime_type"),
        ({"expires_after": {"anchor": "created_at", "seconds": 3599}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "created_at", "seconds": 2_592_001}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "last_active_at", "seconds": 3600}}, "expires_after.anchor"),
    ],
)
async def test_bad_create_requests_name_the_param(client, overrides, param):
    with pytest.raises(openai.BadRequestError) as info:
        await new_upload(client, b"x", **overrides)
    assert info.value.param == param and info.value.status_code == 400


async def test_expires_after_carries_over_to_the_file_and_unknown_fields_are_ignored(client):
    data = b"hello"
    upload = await new_upload(
        client, data, expires_after={"anchor": "created_at", "seconds": 7200}, extra_body={"future_field": True}
    )
    part = await client.uploads.parts.create(upload.id, data=data)
    done = await client.uploads.complete(upload.id, part_ids=[part.id], extra_body={"another": 1})
    assert done.file.expires_at == done.file.created_at + 7200


async def test_a_part_over_the_size_limit_is_refused(client, monkeypatch):
    monkeypatch.setattr(routes_uploads, "MAX_PART_BYTES", 16)
    upload = await new_upload(client, b"x" * 40)
    with pytest.raises(openai.BadRequestError) as info:
        await client.uploads.parts.create(upload.id, data=b"x" * 17)
    assert info.value.param == "data"
    assert (await client.uploads.parts.create(upload.id, data=b"x" * 16)).object == "upload.part"


async def test_a_part_needs_the_data_field(backend, client):
    upload = await new_upload(client, b"x")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {backend.api_key}"}) as http:
        form = aiohttp.FormData()
        form.add_field("other", b"x", filename="x")
        async with http.post(f"{backend.base_url}/uploads/{upload.id}/parts", data=form) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "data"
        async with http.post(f"{backend.base_url}/uploads/{upload.id}/parts", data=b"raw") as response:
            assert response.status == 400


async def test_an_upload_in_progress_survives_a_restart(tmp_path, clock):
    first = LocalBackend(tmp_path / "b", auto_advance=False, clock=clock)
    client = openai.AsyncOpenAI(base_url=await first.start_async(), api_key=first.api_key, max_retries=0)
    upload = await new_upload(client, b"abcdef")
    part = await client.uploads.parts.create(upload.id, data=b"abcdef")
    await client.close()
    await first.stop_async()

    second = LocalBackend(tmp_path / "b", auto_advance=False, clock=clock)
    client = openai.AsyncOpenAI(base_url=await second.start_async(), api_key=second.api_key, max_retries=0)
    try:
        done = await client.uploads.complete(upload.id, part_ids=[part.id])
        assert (await client.files.content(done.file.id)).read() == b"abcdef"
    finally:
        await client.close()
        await second.stop_async()
