"""Every body the local backend sends, checked against the `openai` SDK's own types: each one
validates (required keys there, enum values the API's) and holds no key the type does not
know, at any depth, but the documented `tunedeck` extension. Files, uploads, jobs, events,
checkpoints, permissions, models, chat completions (whole and streamed), graders and
responses, read raw off the wire."""

from __future__ import annotations

import inspect
import json
import types
import typing
from typing import Any, Union

import openai
import pytest
from conftest import generate_dataset
from openai.types import FileObject, Model, Upload
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse
from openai.types.fine_tuning.checkpoints import PermissionCreateResponse, PermissionRetrieveResponse
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from openai.types.responses import Response
from openai.types.uploads import UploadPart
from pydantic import BaseModel

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend

EXTENSIONS = {"tunedeck"}
"""Keys of our own, documented as extensions (SDKs keep them as extras)."""
SERVER_EXTRAS = {"FineTuningJob": {"user_provided_suffix", "usage_metrics", "shared_with_openai", "eval_id"}}
"""Keys the real server sends that its SDK types lack (seen on the wire): mirrored on purpose."""
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "eq"}  # fmt: skip


def unknown_keys(annotation: Any, data: Any, path: str = "") -> list[str]:
    """The keys of `data` that `annotation` (an SDK type) does not name, with their paths."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return unknown_keys(typing.get_args(annotation)[0], data, path)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        found = [unknown_keys(arg, data, path) for arg in options if _fits(arg, data)]
        return min(found, key=len) if found else []
    if origin in (list, typing.List) and isinstance(data, list):
        (item,) = typing.get_args(annotation) or (Any,)
        return [key for n, value in enumerate(data) for key in unknown_keys(item, value, f"{path}[{n}]")]
    if origin in (dict, typing.Dict) and isinstance(data, dict):
        args = typing.get_args(annotation)
        return [key for k, v in data.items() for key in unknown_keys(args[1], v, f"{path}.{k}")] if args else []
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel) and isinstance(data, dict):
        fields = {field.alias or name: field for name, field in annotation.model_fields.items()}
        found = []
        for key, value in data.items():
            if key in fields:
                found += unknown_keys(fields[key].annotation, value, f"{path}.{key}")
            elif key not in EXTENSIONS and key not in SERVER_EXTRAS.get(annotation.__name__, ()):
                found.append(f"{path}.{key}")
        return found
    return []


def _fits(annotation: Any, data: Any) -> bool:
    """Whether `data` could be of this union member (by validating it)."""
    from pydantic import TypeAdapter

    try:
        TypeAdapter(annotation).validate_python(data)
    except Exception:  # noqa: BLE001 - any refusal means: not this member
        return False
    return True


def conforms(kind: type[BaseModel], body: dict[str, Any]) -> None:
    checked = body
    if kind is FineTuningJob and body.get("error") == {}:
        # The real API sends `error: {}` on healthy jobs, which its SDK type cannot validate
        # (it reads it without validating); the backend mirrors the server, not the type.
        checked = {**body, "error": None}
    kind.model_validate(checked)  # required keys, types and the API's enum values
    assert unknown_keys(kind, body) == [], f"keys {kind.__name__} does not know"


def raw(client: openai.OpenAI, method: str, path: str, json_body: Any = None) -> dict[str, Any]:
    return json.loads(wire(client, method, path, json_body))


def wire(client: openai.OpenAI, method: str, path: str, json_body: Any = None) -> str:
    """The response's text as it came over the wire, not as the SDK read it."""
    import urllib.request

    request = urllib.request.Request(
        str(client.base_url).rstrip("/") + "/" + path,
        data=None if json_body is None else json.dumps(json_body).encode(),
        headers={"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"},
        method=method.upper(),
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # an error status raises, with its body
        return response.read().decode()


def each(client: openai.OpenAI, path: str, kind: type[BaseModel]) -> list[dict[str, Any]]:
    body = raw(client, "get", path)
    assert body["object"] == "list" and isinstance(body["data"], list) and body["data"]
    for item in body["data"]:
        conforms(kind, item)
    return body["data"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    backend = LocalBackend(folder / "backend", auto_advance=False, model_aliases={"gpt-4o-mini-2024-07-18": BUILTIN_BASE_MODEL})
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    training = generate_dataset("sft", 60, folder / "train.jsonl", "--learnable")
    validation = generate_dataset("sft", 20, folder / "valid.jsonl", "--learnable", "--seed", "5")
    file = client.files.create(file=training, purpose="fine-tune")
    valid = client.files.create(file=validation, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, validation_file=valid.id, seed=1)
    backend.run_until_settled()
    rft = generate_dataset("rft", 20, folder / "rft.jsonl", "--learnable")
    rft_file = client.files.create(file=rft, purpose="fine-tune")
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}
    rft_job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=rft_file.id, method=method, seed=1)
    yield client, backend, client.fine_tuning.jobs.retrieve(job.id), rft_job.id, file.id, folder
    client.close()
    backend.stop()


def test_files_and_uploads(served):
    client, _, _, _, file_id, folder = served
    conforms(FileObject, raw(client, "get", f"files/{file_id}"))
    each(client, "files", FileObject)
    data = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    upload = raw(client, "post", "uploads", {"purpose": "fine-tune", "filename": "u.jsonl", "bytes": len(data), "mime_type": "text/jsonl"})
    conforms(Upload, upload)
    part = json.loads(client.uploads.parts.with_raw_response.create(upload["id"], data=data).text)  # multipart
    conforms(UploadPart, part)
    done = raw(client, "post", f"uploads/{upload['id']}/complete", {"part_ids": [part["id"]]})
    conforms(Upload, done)
    conforms(FileObject, done["file"])


def test_jobs_events_and_checkpoints(served):
    client, _, job, rft_job_id, _, _ = served
    assert job.status == "succeeded"
    conforms(FineTuningJob, raw(client, "get", f"fine_tuning/jobs/{job.id}"))
    conforms(FineTuningJob, raw(client, "get", f"fine_tuning/jobs/{rft_job_id}"))  # a method with a grader
    each(client, "fine_tuning/jobs", FineTuningJob)
    events = each(client, f"fine_tuning/jobs/{job.id}/events?limit=1000", FineTuningJobEvent)
    assert any(e["type"] == "metrics" for e in events)
    each(client, f"fine_tuning/jobs/{job.id}/checkpoints", FineTuningJobCheckpoint)


def test_permissions_and_models(served):
    client, _, job, _, _, _ = served
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    created = raw(client, "post", f"fine_tuning/checkpoints/{checkpoint}/permissions", {"project_ids": ["proj_a"]})
    assert created["object"] == "list"
    for item in created["data"]:
        conforms(PermissionCreateResponse, item)
    conforms(PermissionRetrieveResponse, raw(client, "get", f"fine_tuning/checkpoints/{checkpoint}/permissions"))
    models = each(client, "models", Model)
    assert {BUILTIN_BASE_MODEL, "gpt-4o-mini-2024-07-18", job.fine_tuned_model} <= {m["id"] for m in models}
    conforms(Model, raw(client, "get", f"models/{job.fine_tuned_model}"))


def test_chat_completions_whole_and_streamed(served):
    client, _, job, _, _, _ = served
    messages = [{"role": "user", "content": "my invoice is wrong"}]
    conforms(ChatCompletion, raw(client, "post", "chat/completions", {"model": job.fine_tuned_model, "messages": messages}))
    body = {"model": job.fine_tuned_model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    streamed = wire(client, "post", "chat/completions", body)
    chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    assert chunks
    for chunk in chunks:
        conforms(ChatCompletionChunk, chunk)


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


def test_tool_calls_function_calls_and_format_reports_whole_and_streamed(served):
    client, _, job, _, _, _ = served
    messages = [{"role": "user", "content": "my invoice is wrong, answer in json"}]
    must_call = {"model": BUILTIN_BASE_MODEL, "messages": messages, "tools": [TOOL], "tool_choice": "required"}
    called = raw(client, "post", "chat/completions", must_call)
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    conforms(ChatCompletion, called)
    legacy = {"model": BUILTIN_BASE_MODEL, "messages": messages, "functions": [TOOL["function"]], "function_call": {"name": "lookup"}}
    function_call = raw(client, "post", "chat/completions", legacy)
    assert function_call["choices"][0]["finish_reason"] == "function_call"
    conforms(ChatCompletion, function_call)
    formatted = {"model": job.fine_tuned_model, "messages": messages, "response_format": {"type": "json_object"}}
    reported = raw(client, "post", "chat/completions", formatted)
    assert "response_format_error" in reported["choices"][0]["tunedeck"]
    conforms(ChatCompletion, reported)
    for body in (must_call, legacy, formatted):
        streamed = wire(client, "post", "chat/completions", {**body, "stream": True})
        chunks = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
        for chunk in chunks:
            conforms(ChatCompletionChunk, chunk)
    asked = {"model": job.fine_tuned_model, "input": "my invoice is wrong, answer in json", "text": {"format": {"type": "json_object"}}}
    response = raw(client, "post", "responses", asked)
    assert "response_format_error" in response["tunedeck"]
    conforms(Response, response)


def test_graders_and_responses(served):
    client, _, job, _, _, _ = served
    conforms(GraderValidateResponse, raw(client, "post", "fine_tuning/alpha/graders/validate", {"grader": EXACT}))
    run = raw(client, "post", "fine_tuning/alpha/graders/run", {"grader": EXACT, "model_sample": "a", "item": {"reference_answer": "a"}})
    conforms(GraderRunResponse, run)
    conforms(Response, raw(client, "post", "responses", {"model": job.fine_tuned_model, "input": "my invoice is wrong"}))


def test_the_check_finds_a_key_the_type_does_not_know_at_any_depth(served):
    client, _, job, _, _, _ = served
    completion = raw(client, "post", "chat/completions", {"model": job.fine_tuned_model, "messages": [{"role": "user", "content": "hi"}]})
    completion["choices"][0]["message"]["mood"] = "cheerful"
    completion["usage"]["completion_tokens_details"]["extra_tokens"] = 1
    assert unknown_keys(ChatCompletion, completion) == [
        ".choices[0].message.mood",
        ".usage.completion_tokens_details.extra_tokens",
    ]
    with pytest.raises(ValueError):
        conforms(ChatCompletion, {**completion, "object": "chat.completions"})  # an enum value the API has not
