"""Conformance: the unmodified `openai` SDK, sync `OpenAI` and async `AsyncOpenAI`, through
every endpoint of the local backend (files, uploads, jobs with events, checkpoints, cancel,
pause and resume, models), paging every list to exhaustion with small limits, and every
error case of OpenAI's fine-tuning API that applies to a local backend, with OpenAI's status, `type`,
`param` and `code`.

One backend per test in thread mode with manual time: jobs move only when a test calls
`run_until`/`advance` (or their `_async` forms), so nothing sleeps.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import openai
import pytest
from conftest import CLOCK_START

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.http import routes_files, routes_uploads

START = CLOCK_START  # the fake clock's time (conftest.py)
ONE_EPOCH = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 4}}}
PREFERENCE = {"input": {"messages": [{"role": "user", "content": "Greet me"}]},
              "preferred_output": [{"role": "assistant", "content": "Hello!"}],
              "non_preferred_output": [{"role": "assistant", "content": "hi"}]}  # fmt: skip


def chat_rows(n: int) -> list[dict[str, Any]]:
    labels = {"billing": "invoice", "shipping": "parcel", "account": "password"}
    rows = []
    for i in range(n):
        label = list(labels)[i % 3]
        rows.append({"messages": [{"role": "user", "content": f"ticket {i}: my {labels[label]} is wrong"},
                                  {"role": "assistant", "content": label}]})  # fmt: skip
    return rows


def jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


# This file drives the backend with the blocking SDK: the threaded fixtures, under the usual names.
@pytest.fixture
def backend(threaded_backend):
    return threaded_backend


@pytest.fixture
def client(sync_client):
    return sync_client


@pytest.fixture
def aclient(threaded_aclient):
    return threaded_aclient


def upload(client: openai.OpenAI, rows: list[Any], name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, jsonl(rows)), purpose="fine-tune").id


# -- every endpoint, sync -------------------------------------------------------------------------


def test_sync_files_every_call_and_every_page(client):
    ids = [upload(client, chat_rows(10), f"f{i}.jsonl") for i in range(5)]
    batch = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch").id
    assert [f.id for f in client.files.list(limit=2)] == [batch, *ids[::-1]]  # newest first, all pages
    assert [f.id for f in client.files.list(purpose="fine-tune", order="asc", limit=2)] == ids
    page = client.files.list(purpose="fine-tune", order="asc", limit=2, after=ids[1])
    assert [f.id for f in page.data] == ids[2:4] and page.has_more and (page.first_id, page.last_id) == tuple(ids[2:4])
    assert client.files.list(purpose="fine-tune", after=ids[0]).data == []
    assert client.files.retrieve(ids[0]).filename == "f0.jsonl"
    assert client.files.content(ids[0]).read() == jsonl(chat_rows(10))
    assert client.files.delete(ids[0]).deleted
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=1)] == ids[:0:-1]


def test_sync_uploads_every_call(client, tmp_path):
    data = jsonl(chat_rows(12))
    created = client.uploads.create(bytes=len(data), filename="u.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    tail = client.uploads.parts.create(created.id, data=data[200:])
    head = client.uploads.parts.create(created.id, data=data[:200])
    done = client.uploads.complete(created.id, part_ids=[head.id, tail.id], md5=hashlib.md5(data).hexdigest())
    assert done.status == "completed" and client.files.content(done.file.id).read() == data
    cancelled = client.uploads.create(bytes=1, filename="x.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert client.uploads.cancel(cancelled.id).status == "cancelled"
    path = tmp_path / "chunked.jsonl"
    path.write_bytes(data)
    chunked = client.uploads.upload_file_chunked(file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=97)
    assert client.files.content(chunked.file.id).read() == data


def test_sync_jobs_every_call_and_every_page(client, backend):
    training = upload(client, chat_rows(12))
    jobs = [client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, method=ONE_EPOCH,
                                           metadata={"n": str(i)}, suffix="conf") for i in range(5)]  # fmt: skip
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2)] == [j.id for j in reversed(jobs)]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"n": "2"}).data] == [jobs[2].id]
    first = jobs[0]
    assert client.fine_tuning.jobs.retrieve(first.id).status == "validating_files"
    backend.advance(first.id, 2)
    assert client.fine_tuning.jobs.pause(first.id).status == "paused"
    assert client.fine_tuning.jobs.resume(first.id).status == "queued"
    assert client.fine_tuning.jobs.cancel(jobs[1].id).status == "cancelled"
    backend.run_until_settled()
    done = client.fine_tuning.jobs.retrieve(first.id)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith(f"ft:{BUILTIN_BASE_MODEL}:local:conf:")
    everything = client.fine_tuning.jobs.list_events(first.id, limit=1000)
    assert not everything.has_more
    assert [e.id for e in client.fine_tuning.jobs.list_events(first.id, limit=5)] == [e.id for e in everything.data]
    checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(first.id, limit=1)]
    assert checkpoints == [9, 6, 3, 2]  # the 3 epochs, newest first, then the pause checkpoint
    results = [f.id for f in client.files.list(purpose="fine-tune-results", limit=1)]
    assert done.result_files[0] in results and len(results) == 4  # one CSV per succeeded job
    assert client.files.content(done.result_files[0]).text.startswith("step,train_loss,train_accuracy,")
    models = [m.id for m in client.models.list()]
    assert BUILTIN_BASE_MODEL in models and done.fine_tuned_model in models
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "org-local"
    assert client.models.delete(done.fine_tuned_model).deleted
    assert done.fine_tuned_model not in [m.id for m in client.models.list()]


# -- every endpoint, async ------------------------------------------------------------------------


async def test_async_every_endpoint_and_every_page(aclient, backend, tmp_path):
    ids = [(await aclient.files.create(file=(f"{i}.jsonl", jsonl(chat_rows(10))), purpose="fine-tune")).id
           for i in range(3)]  # fmt: skip
    assert [f.id async for f in aclient.files.list(order="asc", limit=1)] == ids
    assert (await aclient.files.retrieve(ids[1])).id == ids[1]
    assert (await aclient.files.content(ids[1])).read() == jsonl(chat_rows(10))
    assert (await aclient.files.delete(ids[2])).deleted

    data = jsonl(chat_rows(11))
    path = tmp_path / "a.jsonl"
    path.write_bytes(data)
    chunked = await aclient.uploads.upload_file_chunked(file=path, mime_type="text/jsonl", purpose="fine-tune",
                                                        part_size=128)  # fmt: skip
    pending = await aclient.uploads.create(bytes=3, filename="c.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    part = await aclient.uploads.parts.create(pending.id, data=b"abc")
    assert (await aclient.uploads.complete(pending.id, part_ids=[part.id])).file.bytes == 3
    abandoned = await aclient.uploads.create(bytes=1, filename="d.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert (await aclient.uploads.cancel(abandoned.id)).status == "cancelled"

    jobs = [await aclient.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=chunked.file.id,
                                                  method=ONE_EPOCH) for _ in range(3)]  # fmt: skip
    assert [j.id async for j in aclient.fine_tuning.jobs.list(limit=1)] == [j.id for j in reversed(jobs)]
    await backend.advance_async(jobs[0].id, 1)
    assert (await aclient.fine_tuning.jobs.pause(jobs[0].id)).status == "paused"
    assert (await aclient.fine_tuning.jobs.resume(jobs[0].id)).status == "queued"
    assert (await aclient.fine_tuning.jobs.cancel(jobs[2].id)).status == "cancelled"
    await backend.run_until_settled_async()
    done = await aclient.fine_tuning.jobs.retrieve(jobs[0].id)
    assert done.status == "succeeded"
    events = [e.id async for e in aclient.fine_tuning.jobs.list_events(done.id, limit=3)]
    assert events == [e.id for e in (await aclient.fine_tuning.jobs.list_events(done.id, limit=1000)).data]
    assert [c.step_number async for c in aclient.fine_tuning.jobs.checkpoints.list(done.id, limit=1)] == [9, 6, 3, 1]
    assert done.fine_tuned_model in [m.id async for m in aclient.models.list()]
    assert (await aclient.models.retrieve(BUILTIN_BASE_MODEL)).id == BUILTIN_BASE_MODEL
    assert (await aclient.models.delete(f"{done.fine_tuned_model}:ckpt-step-3")).deleted
    with pytest.raises(openai.PermissionDeniedError):
        await aclient.models.delete(BUILTIN_BASE_MODEL)


# -- bad job requests are 400s naming the field ----------------------------------------------------


def hyper(method: str, **values: Any) -> dict[str, Any]:
    return {"method": {"type": method, method: {"hyperparameters": values}}}


SUP = "method.supervised.hyperparameters"


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"suffix": "s" * 65}, "suffix", None),
        ({"seed": -1}, "seed", None),
        ({"seed": 2_147_483_648}, "seed", None),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", None),
        ({"metadata": {"k" * 65: "v"}}, "metadata", None),
        ({"metadata": {"k": "v" * 513}}, "metadata", None),
        (hyper("supervised", n_epochs=0), f"{SUP}.n_epochs", None),
        (hyper("supervised", n_epochs=51), f"{SUP}.n_epochs", None),
        (hyper("supervised", batch_size=0), f"{SUP}.batch_size", None),
        (hyper("supervised", batch_size=257), f"{SUP}.batch_size", None),
        (hyper("supervised", learning_rate_multiplier=0), f"{SUP}.learning_rate_multiplier", None),
        (hyper("supervised", learning_rate_multiplier=-0.5), f"{SUP}.learning_rate_multiplier", None),
        ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs", None),
        (hyper("dpo", beta=0), "method.dpo.hyperparameters.beta", None),
        (hyper("dpo", beta=2.5), "method.dpo.hyperparameters.beta", None),
        ({"training_file": "file-unknown"}, "training_file", None),
        ({"validation_file": "file-unknown"}, "validation_file", None),
        ({"model": "gpt-4o-mini-2024-07-18"}, "model", "model_not_available"),
        ({"model": openai.omit}, "model", "missing_required_parameter"),
        ({"integrations": [{"type": "slack", "slack": {}}]}, "integrations[0]", None),
        ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}] * 6}, "integrations", None),
    ],
)
async def test_bad_job_requests(aclient, overrides, param, code):
    training = (await aclient.files.create(file=("t.jsonl", jsonl(chat_rows(10))), purpose="fine-tune")).id
    body = {"model": BUILTIN_BASE_MODEL, "training_file": training, **overrides}
    with pytest.raises(openai.BadRequestError) as info:
        await aclient.fine_tuning.jobs.create(**body)
    error = info.value
    assert (error.status_code, error.type, error.param, error.code) == (400, "invalid_request_error", param, code)
    assert (await aclient.fine_tuning.jobs.list()).data == []


def test_file_ids_follow_the_real_wording(client):
    deleted = upload(client, chat_rows(10))
    client.files.delete(deleted)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=deleted)
    assert info.value.body == {"message": f"invalid training_file: {deleted}", "type": "invalid_request_error",
                               "param": "training_file", "code": None}  # fmt: skip
    batch = client.files.create(file=("b.jsonl", jsonl(chat_rows(10))), purpose="batch").id
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=batch)
    assert wrong_purpose.value.param == "training_file"


def test_limits_at_the_edge_are_accepted_and_unknown_fields_tolerated(client):
    training = upload(client, chat_rows(10))
    job = client.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL,
        training_file=training,
        suffix="s" * 64,
        seed=2_147_483_647,
        metadata={f"{i:064d}": "v" * 512 for i in range(16)},
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 50, "batch_size": 256, "learning_rate_multiplier": 1e-9, "future_knob": 1}}},  # fmt: skip
        integrations=[{"type": "wandb", "wandb": {"project": "tickets", "tags": ["local"]}}],
        extra_body={"a_field_from_the_future": {"x": 1}},
        extra_query={"unknown": "1"},
        extra_headers={"X-Unknown-Header": "1"},
    )
    assert job.seed == 2_147_483_647 and job.hyperparameters.n_epochs == 50 and len(job.metadata) == 16
    dpo = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, **hyper("dpo", beta=2))
    assert dpo.method.dpo.hyperparameters.beta == 2


# -- bad training data fails the job -------------------------------------------------------------------


def failed(client, backend, rows: list[Any], **kwargs: Any):
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=upload(client, rows), **kwargs)
    backend.run_until_settled()
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "failed" and done.finished_at is None and done.fine_tuned_model is None
    return done.error


def test_too_few_examples(client, backend):
    error = failed(client, backend, chat_rows(9))
    assert (error.code, error.param) == ("invalid_n_examples", "training_file")
    assert error.message == "Training file has 9 example(s), but must have at least 10 examples"


def test_a_bad_line_names_the_example(client, backend):
    rows: list[Any] = chat_rows(12)
    rows[6] = {"messages": [{"role": "user", "content": "hi"}, {"content": "no role"}]}
    error = failed(client, backend, rows)
    assert (error.code, error.param) == ("invalid_training_file", "training_file")
    assert "Example 7 (line 7), message 2: 'role' is missing" in error.message


def test_a_bad_validation_file(client, backend):
    validation = upload(client, ["not json"], "valid.jsonl")
    error = failed(client, backend, chat_rows(12), validation_file=validation)
    assert (error.code, error.param) == ("invalid_validation_file", "validation_file")


def test_format_and_method_must_match(client, backend):
    error = failed(client, backend, [PREFERENCE] * 12)
    assert (error.code, error.param) == ("invalid_training_file", "training_file")
    assert "preference (DPO) format, but the job's method is supervised" in error.message
    error = failed(client, backend, chat_rows(12), **hyper("dpo", beta=0.1))
    assert error.code == "invalid_training_file" and "method is dpo" in error.message


# -- files and uploads limits --------------------------------------------------------------------------


def test_file_and_upload_limits(client, clock, monkeypatch):
    for seconds in (3599, 2_592_001):
        with pytest.raises(openai.BadRequestError) as info:
            client.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune",
                                expires_after={"anchor": "created_at", "seconds": seconds})  # fmt: skip
        assert info.value.param == "expires_after.seconds"
    monkeypatch.setattr(routes_files, "MAX_FILE_BYTES", 10)
    with pytest.raises(openai.APIStatusError) as too_big:
        client.files.create(file=("t.jsonl", b"x" * 11), purpose="fine-tune")
    assert too_big.value.param == "file"

    with pytest.raises(openai.BadRequestError) as huge:
        client.uploads.create(bytes=8 * 2**30 + 1, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    assert huge.value.param == "bytes"
    monkeypatch.setattr(routes_uploads, "MAX_PART_BYTES", 8)
    pending = client.uploads.create(bytes=12, filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as big_part:
        client.uploads.parts.create(pending.id, data=b"x" * 9)
    assert big_part.value.param == "data"
    part = client.uploads.parts.create(pending.id, data=b"x" * 8)
    with pytest.raises(openai.BadRequestError) as short:
        client.uploads.complete(pending.id, part_ids=[part.id])
    assert short.value.param == "part_ids"
    clock.now += 3600
    with pytest.raises(openai.BadRequestError, match="expired"):
        client.uploads.parts.create(pending.id, data=b"x" * 4)


# -- wrong states, unknown ids, and the 403 switch ---------------------------------------------------


def test_wrong_states_and_unknown_ids(client, backend):
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=upload(client, chat_rows(10)))
    with pytest.raises(openai.BadRequestError, match="only a running job can be paused"):
        client.fine_tuning.jobs.pause(job.id)
    with pytest.raises(openai.BadRequestError, match="only a paused job can be resumed"):
        client.fine_tuning.jobs.resume(job.id)
    client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(job.id)
    for call in (
        lambda: client.fine_tuning.jobs.retrieve("ftjob-nope"),
        lambda: client.fine_tuning.jobs.cancel("ftjob-nope"),
        lambda: client.fine_tuning.jobs.pause("ftjob-nope"),
        lambda: client.fine_tuning.jobs.resume("ftjob-nope"),
        lambda: client.fine_tuning.jobs.list_events("ftjob-nope"),
        lambda: client.fine_tuning.jobs.checkpoints.list("ftjob-nope"),
        lambda: client.files.retrieve("file-nope"),
        lambda: client.files.delete("file-nope"),
        lambda: client.files.content("file-nope"),
        lambda: client.models.retrieve("ft:nope:local::AbCd1234"),
        lambda: client.models.delete("ft:nope:local::AbCd1234"),
        lambda: client.uploads.cancel("upload_nope"),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert info.value.type == "invalid_request_error" and info.value.request_id.startswith("req_")


def test_training_not_available_is_a_permission_error(tmp_path):
    backend = LocalBackend(tmp_path / "blocked", auto_advance=False, training_not_available=True)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    try:
        training = upload(client, chat_rows(10))  # uploads still work
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training)
        error = info.value
        assert (error.status_code, error.type, error.param, error.code) == (
            403, "invalid_request_error", None, "training_not_available")  # fmt: skip
        assert error.body["message"].startswith("OpenAI is winding down the fine-tuning platform")
    finally:
        client.close()
        backend.stop()
