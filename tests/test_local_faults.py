"""Fault injection and the training_not_available switch, seen through the real SDK:
retries recover, errors surface as the right exception classes, nothing hangs, and the
decisions repeat under a seed. Delays stay at or under 0.05 s."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend, load_or_create_api_key
from tunedeck.backend.http.faults import (
    TRAINING_NOT_AVAILABLE_MESSAGE,
    FaultConfigError,
    FaultPlan,
    load_fault_plan,
    plan_from_dict,
)

TRAIN = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}) + "\n"
    for i in range(12)
).encode()


def sdk(backend, retries: int = 0, **options) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=retries, **options)


def rules(backend, *raw: dict, seed: int = 0) -> None:
    backend.faults.set_rules([plan_from_dict({"rules": [r]}).rules[0] for r in raw], seed)


async def test_retries_recover_from_a_429_and_a_500(backend):
    rules(
        backend,
        {"method": "GET", "path": "/v1/files", "kind": "rate_limit", "retry_after": 0.01, "times": 1},
        {"method": "GET", "path": "/v1/files", "kind": "server_error", "retry_after": 0.01, "times": 1},
    )
    client = sdk(backend, retries=2)
    started = time.perf_counter()
    page = await client.files.list()
    assert page.data == [] and backend.faults.fired() == [1, 1]
    assert time.perf_counter() - started < 2  # honoured retry-after, not the SDK's 0.5 s backoff
    await client.close()


def test_the_sync_client_recovers_too(tmp_path):
    backend = LocalBackend(tmp_path / "b", auto_advance=False)
    backend.faults.set_rules(plan_from_dict({"rules": [
        {"path": "/v1/models", "kind": "rate_limit", "retry_after": 0.01, "times": 2}]}).rules)  # fmt: skip
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=2)
    try:
        assert [m.id for m in client.models.list()][0] == BUILTIN_BASE_MODEL
        assert backend.faults.fired() == [2]
    finally:
        client.close()
        backend.stop()


@pytest.mark.parametrize(
    ("rule", "error", "status"),
    [
        ({"kind": "rate_limit", "retry_after": 0.01}, openai.RateLimitError, 429),
        ({"kind": "server_error"}, openai.InternalServerError, 500),
        ({"kind": "unavailable"}, openai.InternalServerError, 503),
    ],
)
async def test_without_retries_each_status_raises_its_exception(backend, rule, error, status):
    rules(backend, {"path": "/v1/fine_tuning/jobs", **rule})
    client = sdk(backend)
    with pytest.raises(error) as info:
        await client.fine_tuning.jobs.list()
    assert info.value.status_code == status and info.value.request_id.startswith("req_")
    if status == 429:
        assert info.value.code == "rate_limit_exceeded" and info.value.response.headers["retry-after"] == "0.01"
    else:
        assert info.value.type == "server_error"
    await client.close()


@pytest.mark.parametrize("kind", ["drop", "truncate"])
async def test_a_dropped_or_truncated_answer_is_a_connection_error_not_a_hang(backend, kind):
    client = sdk(backend, timeout=10)
    file = await client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")
    rules(backend, {"method": "GET", "path": "/v1/files*", "kind": kind})
    for call in (client.files.list(), client.files.retrieve(file.id), client.files.content(file.id)):
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(call, timeout=5)
    await client.close()


async def test_a_lost_answer_to_create_makes_a_retry_duplicate_the_job(backend):
    """The SDK retries POSTs with no idempotency key."""
    client = sdk(backend, retries=1)
    file = await client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")
    rules(backend, {"method": "POST", "path": "/v1/fine_tuning/jobs", "kind": "drop", "after_handling": True,
                    "times": 1})  # fmt: skip
    job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
    listed = [j.id async for j in client.fine_tuning.jobs.list()]
    assert len(listed) == 2 and listed[0] == job.id
    await client.close()


async def test_should_retry_false_stops_the_sdk_retrying(backend):
    rules(backend, {"path": "/v1/models", "kind": "unavailable", "should_retry": False})
    client = sdk(backend, retries=2)
    with pytest.raises(openai.InternalServerError):
        await client.models.list()
    assert backend.faults.fired() == [1]
    await client.close()


async def test_slow_answers_arrive_late_or_time_out(backend):
    rules(backend, {"path": "/v1/models", "kind": "slow", "delay": 0.05})
    client = sdk(backend)
    started = time.perf_counter()
    await client.models.list()
    assert time.perf_counter() - started >= 0.05
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.01).models.list()
    await client.close()


async def test_every_nth_request_fails_and_globs_pick_routes(backend):
    rules(backend, {"method": "GET", "path": "/v1/fine_tuning/jobs/*/events", "kind": "server_error", "every": 3})
    client = sdk(backend)
    file = await client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")
    job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
    outcomes = []
    for _ in range(6):
        try:
            await client.fine_tuning.jobs.list_events(job.id)
            outcomes.append("ok")
        except openai.InternalServerError:
            outcomes.append("500")
    assert outcomes == ["ok", "ok", "500", "ok", "ok", "500"]
    assert (await client.fine_tuning.jobs.retrieve(job.id)).id == job.id  # other routes untouched
    await client.close()


def test_probabilities_repeat_under_a_seed():
    raw = {"rules": [{"kind": "server_error", "probability": 0.3}, {"kind": "slow", "probability": 0.5}]}

    def decisions(seed: int) -> list[str | None]:
        plan = plan_from_dict({**raw, "seed": seed})
        return [(rule.kind if (rule := plan.pick("GET", f"/v1/files/{i}")) else None) for i in range(200)]

    first = decisions(7)
    assert first == decisions(7) and first != decisions(8)
    assert 40 < first.count("server_error") < 80  # about 30 % of 200


async def test_training_not_available_refuses_jobs_but_not_uploads(tmp_path):
    backend = LocalBackend(tmp_path / "b", auto_advance=False, training_not_available=True)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=2)
    try:
        file = await client.files.create(file=("t.jsonl", TRAIN), purpose="fine-tune")
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
        assert info.value.status_code == 403 and info.value.body == {
            "message": TRAINING_NOT_AVAILABLE_MESSAGE,
            "type": "invalid_request_error",
            "param": None,
            "code": "training_not_available",
        }
        assert (await client.fine_tuning.jobs.list()).data == []  # listing still works
        backend.faults.training_not_available = False  # a demo can flip it back
        assert (await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)).id
    finally:
        await client.close()
        await backend.stop_async()


def test_plans_load_from_json_and_toml(tmp_path):
    toml = tmp_path / "faults.toml"
    toml.write_text('seed = 3\ntraining_not_available = true\n[[rules]]\nmethod = "POST"\n'
                    'path = "/v1/uploads*"\nkind = "rate_limit"\nretry_after = 2\nevery = 4\n')  # fmt: skip
    plan = load_fault_plan(toml)
    assert (plan.seed, plan.training_not_available) == (3, True)
    assert (plan.rules[0].every, plan.rules[0].kind, plan.rules[0].retry_after) == (4, "rate_limit", 2)
    as_json = tmp_path / "faults.json"
    as_json.write_text(json.dumps({"rules": [{"kind": "drop", "probability": 0.1}]}))
    assert load_fault_plan(as_json).rules[0].probability == 0.1
    assert isinstance(load_fault_plan(None), FaultPlan) and load_fault_plan(None).rules == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"rules": [{"kind": "explode"}]}, "'kind' must be one of"),
        ({"rules": [{"kind": "drop", "probability": 2}]}, "'probability'"),
        ({"rules": [{"kind": "drop", "probability": 0.5, "every": 2}]}, "not both"),
        ({"rules": [{"kind": "slow", "delay": -1}]}, "'delay'"),
        ({"rules": [{"kind": "drop", "colour": "red"}]}, "unknown keys colour"),
        ({"rules": "drop"}, "'rules' must be a list"),
        ({"ruels": []}, "unknown fault plan keys"),
    ],
)
def test_bad_plans_are_refused_with_a_reason(raw, words):
    with pytest.raises(FaultConfigError, match=words):
        plan_from_dict(raw)


def test_serve_takes_the_switch_and_a_fault_file(tmp_path):
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps({"rules": [{"method": "GET", "path": "/v1/models", "kind": "unavailable"}]}))
    code = ("import sys; from tunedeck.backend import serve; "
            "serve(sys.argv[1], port=0, training_not_available=True, faults=sys.argv[2])")  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "served"), str(plan)],
                               stdout=subprocess.PIPE, text=True, env=dict(os.environ))  # fmt: skip
    try:
        found = re.search(r"http://127\.0\.0\.1:\d+/v1", process.stdout.readline())
        assert found
        assert "training_not_available" in process.stdout.readline()
        assert "1 rule(s)" in process.stdout.readline()
        key = {"Authorization": f"Bearer {load_or_create_api_key(tmp_path / 'served')}"}
        create = urllib.request.Request(
            f"{found.group(0)}/fine_tuning/jobs", data=b"{}", headers={**key, "Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(create, timeout=10)
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as unavailable:
            urllib.request.urlopen(urllib.request.Request(f"{found.group(0)}/models", headers=key), timeout=10)
        assert unavailable.value.code == 503
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()
