"""`Idempotency-Key` on the local backend, through the unmodified `openai` SDK: a retried
POST gets the first answer and the work is done once, across a lost answer and a restart,
for 24 hours of the backend's clock; a reused key with another request is a 409; a
duplicate that arrives while the first is being handled waits for it."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.http.faults import plan_from_dict
from tunedeck.backend.http.idempotency import KEEP_SECONDS, Idempotency
from tunedeck.backend.http.server import build_app, json_response
from tunedeck.backend.storage.store import Store

TRAIN = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}) + "\n"
    for i in range(12)
).encode()


def key_header(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def training_file(client) -> str:
    return (await client.files.create(file=("train.jsonl", TRAIN), purpose="fine-tune")).id


async def test_the_same_key_twice_creates_one_job(client):
    file_id, key = await training_file(client), str(uuid.uuid4())
    first = await client.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
    )
    again = await client.fine_tuning.jobs.with_raw_response.create(
        model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.id
    assert [job.id async for job in client.fine_tuning.jobs.list()] == [first.id]
    # Without a key, the same body is a new job (keys are opt-in, as with OpenAI).
    other = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file_id)
    assert other.id != first.id


async def test_a_key_reused_for_another_request_is_a_409(backend, client):
    file_id, key = await training_file(client), str(uuid.uuid4())
    job = await client.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
    )
    retrying = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=2)
    with pytest.raises(openai.ConflictError) as other_body:
        await retrying.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file_id, suffix="other", extra_headers=key_header(key)
        )
    assert other_body.value.code == "idempotency_key_reused" and key in other_body.value.body["message"]
    assert other_body.value.response.headers["x-should-retry"] == "false"  # the SDK would retry a 409
    with pytest.raises(openai.ConflictError):
        await retrying.fine_tuning.jobs.cancel(job.id, extra_headers=key_header(key))  # another path
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status != "cancelled"
    await retrying.close()


async def test_a_lost_answer_retried_with_its_key_does_not_train_twice(backend):
    """The job is created, then the answer is lost (a 500 after the work); the SDK retries."""
    backend.faults.set_rules(plan_from_dict({"rules": [
        {"method": "POST", "path": "/v1/fine_tuning/jobs", "kind": "server_error", "after_handling": True,
         "retry_after": 0, "times": 1}]}).rules)  # fmt: skip
    sdk = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=1)
    file_id = await training_file(sdk)
    job = await sdk.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(str(uuid.uuid4()))
    )
    assert backend.faults.fired() == [1]
    assert [j.id async for j in sdk.fine_tuning.jobs.list()] == [job.id]
    await sdk.close()


async def test_kept_answers_survive_a_restart_and_expire_after_a_day(tmp_path, clock):
    key = str(uuid.uuid4())
    first = LocalBackend(tmp_path / "b", auto_advance=False, clock=clock)
    sdk = openai.AsyncOpenAI(base_url=await first.start_async(), api_key=first.api_key, max_retries=0)
    file_id = await training_file(sdk)
    job = await sdk.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
    )
    await sdk.close()
    await first.stop_async()

    second = LocalBackend(tmp_path / "b", auto_advance=False, clock=clock)
    sdk = openai.AsyncOpenAI(base_url=await second.start_async(), api_key=second.api_key, max_retries=0)
    try:
        clock.now += KEEP_SECONDS - 1
        again = await sdk.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
        )
        assert again.id == job.id
        clock.now += 2  # a day and a second after the first
        later = await sdk.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
        )
        assert later.id != job.id
        assert len([j async for j in sdk.fine_tuning.jobs.list()]) == 2
    finally:
        await sdk.close()
        await second.stop_async()


async def test_uploads_honour_the_key_too(client):
    key = str(uuid.uuid4())
    first = await client.files.create(file=("a.jsonl", TRAIN), purpose="fine-tune", extra_headers=key_header(key))
    again = await client.files.create(file=("a.jsonl", TRAIN), purpose="fine-tune", extra_headers=key_header(key))
    assert again.id == first.id and [f.id async for f in client.files.list()] == [first.id]
    with pytest.raises(openai.ConflictError):
        await client.files.create(file=("a.jsonl", TRAIN * 2), purpose="fine-tune", extra_headers=key_header(key))


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_a_malformed_key_is_refused(backend, client, key):
    file_id = await training_file(client)
    with pytest.raises(openai.BadRequestError, match="Idempotency-Key"):
        await client.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file_id, extra_headers=key_header(key)
        )


class SpyStore(Store):
    """The real store, telling the test each time a request looks for a kept answer."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.looked = asyncio.Queue()

    def kept_answer(self, key, since):
        found = super().kept_answer(key, since)
        self.looked.put_nowait(found)
        return found


async def test_a_duplicate_waits_for_the_first_and_gets_its_answer(tmp_path):
    store = SpyStore(tmp_path / "kept.sqlite3")
    entered, release, done = asyncio.Event(), asyncio.Event(), []
    routes = web.RouteTableDef()

    @routes.post("/v1/work")
    async def work(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        done.append(await request.read())
        return json_response({"id": f"work-{len(done)}"})

    app = build_app(routes, inner_middlewares=[Idempotency(store, lambda: 1000.0).middleware])
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        post = {"data": b'{"n": 1}', "headers": {**key_header("k1"), "Content-Type": "application/json"}}
        first = asyncio.create_task(http.post(server.make_url("/v1/work"), **post))
        await entered.wait()
        assert await store.looked.get() is None  # the first found nothing kept
        second = asyncio.create_task(http.post(server.make_url("/v1/work"), **post))
        assert await store.looked.get() is None  # the second looked too, found the first running: it waits
        release.set()
        answers = [await first, await second]
        assert await store.looked.get() is not None  # woken, the second found the first's answer
        bodies = [await answer.json() for answer in answers]
        assert bodies == [{"id": "work-1"}, {"id": "work-1"}] and len(done) == 1
        assert answers[1].headers["Idempotent-Replayed"] == "true"
    store.close()
