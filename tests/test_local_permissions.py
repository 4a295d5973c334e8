"""Checkpoint permissions (sharing a fine-tuned model with other projects) on the local backend, through the unmodified
`openai` SDK, sync and async: create (no duplicates per project), list paged to exhaustion
with small limits in both orders (the SDK's ConversationCursorPage follows `last_id`), the
`project_id` filter, delete, the error envelopes, persistence across restarts, and cleanup
when the model is deleted.

One tiny SFT job per test, trained in manual time (nothing sleeps): 12 examples, 3 epochs
of 3 steps give the checkpoints `…:ckpt-step-3`, `…:ckpt-step-6` and the final model.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from typing import Any

import openai
import pytest
from conftest import CLOCK_START

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend

START = CLOCK_START  # the fake clock's time (conftest.py)
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 4}}}
PROJECTS = [f"proj_{name}" for name in ("alpha", "bravo", "charlie", "delta", "echo")]


def chat_rows(n: int) -> bytes:
    labels = {"billing": "invoice", "shipping": "parcel", "account": "password"}
    rows = []
    for i in range(n):
        label = list(labels)[i % 3]
        rows.append({"messages": [{"role": "user", "content": f"ticket {i}: my {labels[label]} is wrong"},
                                  {"role": "assistant", "content": label}]})  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


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


def train(client: openai.OpenAI, backend: LocalBackend) -> list[str]:
    """Checkpoint names of a finished job, oldest first; the last is the final model."""
    training = client.files.create(file=("t.jsonl", chat_rows(12)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, method=METHOD)
    backend.run_until_settled()
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"
    names = [c.fine_tuned_model_checkpoint for c in client.fine_tuning.jobs.checkpoints.list(job.id)][::-1]
    assert names[-1] == done.fine_tuned_model and names[0].endswith(":ckpt-step-3")
    return names


def permissions_in_store(backend: LocalBackend) -> list[tuple[str, str]]:
    """(model, project_id) rows, read through a connection of our own."""
    with sqlite3.connect(backend.data_dir / "backend.sqlite3") as db:
        return db.execute("SELECT model, project_id FROM permissions ORDER BY seq").fetchall()


def expect_error(error_type: type[openai.APIStatusError], call: Any, param: str | None) -> openai.APIStatusError:
    with pytest.raises(error_type) as info:
        call()
    error = info.value
    assert error.type == "invalid_request_error" and error.param == param and error.request_id.startswith("req_")
    return error


# -- sync -------------------------------------------------------------------------------------------


def test_sync_create_list_page_filter_delete(client, backend, clock):
    step3, step6, final = train(client, backend)
    permissions = client.fine_tuning.checkpoints.permissions
    clock.now = START + 100
    created = permissions.create(step3, project_ids=[*PROJECTS[:4], PROJECTS[0]])  # a repeat counts once
    assert [p.project_id for p in created] == PROJECTS[:4]  # the SDK's SyncPage: iterating never pages
    assert created.data[0].model_dump() == {"id": created.data[0].id, "object": "checkpoint.permission",
                                            "created_at": START + 100, "project_id": PROJECTS[0]}  # fmt: skip
    assert all(p.id.startswith("cp_") and len(p.id) == 27 for p in created) and len({p.id for p in created}) == 4

    clock.now = START + 200
    again = permissions.create(step3, project_ids=[PROJECTS[4], PROJECTS[1]])
    assert again.data[1].id == created.data[1].id and again.data[1].created_at == START + 100  # not duplicated
    ids = [p.id for p in created] + [again.data[0].id]  # creation order
    assert len(permissions_in_store(backend)) == 5

    for limit in (1, 2, 3, 5, 6):
        assert [p.id for p in permissions.list(step3, limit=limit, order="descending")] == ids[::-1]
        assert [p.id for p in permissions.list(step3, limit=limit, order="ascending")] == ids
    first = permissions.list(step3)  # defaults: newest first, 10 a page
    assert [p.id for p in first.data] == ids[::-1] and first.has_more is False
    assert (first.first_id, first.last_id) == (ids[-1], ids[0])
    page = permissions.list(step3, limit=2, order="ascending", after=ids[1])
    assert [p.id for p in page.data] == ids[2:4] and page.has_more and (page.first_id, page.last_id) == tuple(ids[2:4])
    pages = [[p.id for p in pg.data] for pg in permissions.list(step3, limit=2).iter_pages()]
    assert pages == [ids[:2:-1], ids[2:0:-1], ids[:1]]
    with warnings.catch_warnings():  # the deprecated alias answers the raw list object
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = permissions.retrieve(step3, limit=2)
    assert [p.id for p in raw.data] == ids[:2:-1] and raw.has_more and raw.object == "list"

    only = list(permissions.list(step3, project_id=PROJECTS[2], limit=1))
    assert [(p.id, p.project_id) for p in only] == [(ids[2], PROJECTS[2])]
    assert list(permissions.list(step3, project_id="proj_nobody")) == []
    assert list(permissions.list(step6)) == []  # permissions belong to one checkpoint
    assert list(permissions.list(step3, after="cp_unknown")) == []  # a stale cursor ends paging

    on_final = permissions.create(final, project_ids=[PROJECTS[0]]).data[0]  # the final model can be shared too
    assert on_final.id not in ids and [p.id for p in permissions.list(final)] == [on_final.id]

    gone = permissions.delete(ids[1], fine_tuned_model_checkpoint=step3)
    assert gone.model_dump() == {"id": ids[1], "object": "checkpoint.permission", "deleted": True}
    assert [p.id for p in permissions.list(step3, limit=2, order="ascending")] == [ids[0], *ids[2:]]
    expect_error(openai.NotFoundError, lambda: permissions.delete(ids[1], fine_tuned_model_checkpoint=step3),
                 "permission_id")  # fmt: skip
    expect_error(openai.NotFoundError, lambda: permissions.delete(ids[0], fine_tuned_model_checkpoint=step6),
                 "permission_id")  # another checkpoint's permission  # fmt: skip
    assert [p.id for p in permissions.list(step3, project_id=PROJECTS[0])] == [ids[0]]
    regranted = permissions.create(step3, project_ids=[PROJECTS[1]]).data[0]
    assert regranted.id not in ids and regranted.created_at == START + 200


def test_model_deletion_removes_its_permissions_and_the_rest_persist(client, backend, tmp_path, clock):
    step3, step6, final = train(client, backend)
    permissions = client.fine_tuning.checkpoints.permissions
    permissions.create(step3, project_ids=PROJECTS[:2])
    kept = permissions.create(step6, project_ids=[PROJECTS[2]]).data[0]
    permissions.create(final, project_ids=[PROJECTS[3]])
    assert client.models.delete(step3).deleted
    assert client.models.delete(final).deleted
    assert permissions_in_store(backend) == [(step6, PROJECTS[2])]
    error = expect_error(openai.NotFoundError, lambda: permissions.list(step3), "fine_tuned_model_checkpoint")
    assert step3 in error.message and error.code == "model_not_found"

    backend.stop()  # permissions live in the store: a new backend on the same data serves them
    again = LocalBackend(backend.data_dir, auto_advance=False, clock=clock)
    sdk = openai.OpenAI(base_url=again.start(), api_key=again.api_key, max_retries=0)
    try:
        listed = list(sdk.fine_tuning.checkpoints.permissions.list(step6))
        assert [p.model_dump() for p in listed] == [kept.model_dump()]
    finally:
        sdk.close()
        again.stop()


# -- async ------------------------------------------------------------------------------------------


async def test_async_create_list_page_filter_delete(aclient, backend):
    training = (await aclient.files.create(file=("t.jsonl", chat_rows(12)), purpose="fine-tune")).id
    job = await aclient.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, method=METHOD)
    await backend.run_until_settled_async()
    step3 = f"{(await aclient.fine_tuning.jobs.retrieve(job.id)).fine_tuned_model}:ckpt-step-3"
    permissions = aclient.fine_tuning.checkpoints.permissions

    created = [p async for p in permissions.create(step3, project_ids=PROJECTS)]  # AsyncPage: one request
    ids = [p.id for p in created]
    assert [p.project_id for p in created] == PROJECTS and len(set(ids)) == 5
    assert [p.id for p in (await permissions.create(step3, project_ids=PROJECTS[::-1])).data] == ids[::-1]
    for limit in (1, 2, 4):
        assert [p.id async for p in permissions.list(step3, limit=limit)] == ids[::-1]
        assert [p.id async for p in permissions.list(step3, limit=limit, order="ascending")] == ids
    assert [p.id async for p in permissions.list(step3, project_id=PROJECTS[3])] == [ids[3]]

    deleted = await permissions.delete(ids[0], fine_tuned_model_checkpoint=step3)
    assert (deleted.id, deleted.object, deleted.deleted) == (ids[0], "checkpoint.permission", True)
    assert [p.id async for p in permissions.list(step3, limit=3, order="ascending")] == ids[1:]
    with pytest.raises(openai.NotFoundError):
        await permissions.delete(ids[0], fine_tuned_model_checkpoint=step3)
    with pytest.raises(openai.NotFoundError) as unknown:
        await permissions.create("ft:tunedeck-ngram:local::AbCd1234:ckpt-step-40", project_ids=PROJECTS[:1])
    assert unknown.value.type == "invalid_request_error" and "does not exist" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        await permissions.create(step3, project_ids=[])
    assert bad.value.param == "project_ids"


# -- errors -----------------------------------------------------------------------------------------


def test_unknown_checkpoints_are_404s(client, backend):
    step3, _, _ = train(client, backend)
    permission = client.fine_tuning.checkpoints.permissions.create(step3, project_ids=PROJECTS[:1]).data[0]
    permissions = client.fine_tuning.checkpoints.permissions
    for name in ("ft:tunedeck-ngram:local::AbCd1234:ckpt-step-40", BUILTIN_BASE_MODEL, f"{step3}0", "x" * 300):
        for call in (
            lambda: permissions.create(name, project_ids=PROJECTS[:1]),
            lambda: permissions.list(name),
            lambda: permissions.delete(permission.id, fine_tuned_model_checkpoint=name),
        ):
            error = expect_error(openai.NotFoundError, call, "fine_tuned_model_checkpoint")
            assert error.code == "model_not_found" and name[:100] in error.message and len(error.message) < 400
    expect_error(openai.NotFoundError, lambda: permissions.delete("cp_nope", fine_tuned_model_checkpoint=step3),
                 "permission_id")  # fmt: skip
    assert permissions_in_store(backend) == [(step3, PROJECTS[0])]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "missing_required_parameter"),
        ({"project_ids": []}, None),
        ({"project_ids": None}, None),
        ({"project_ids": "proj_alpha"}, None),
        ({"project_ids": {"proj_alpha": True}}, None),
        ({"project_ids": ["proj_alpha", 7]}, None),
        ({"project_ids": ["proj_alpha", ""]}, None),
        ({"project_ids": ["team-alpha"]}, None),
        ({"project_ids": ["proj_"]}, None),
        ({"project_ids": ["proj_a b"]}, None),
        ({"project_ids": ["proj_" + "a" * 65]}, None),
    ],
)
def test_bad_project_ids_are_400s_naming_the_field(client, backend, body, code):
    step3, _, _ = train(client, backend)
    with pytest.raises(openai.BadRequestError) as info:
        client.post(f"/fine_tuning/checkpoints/{step3}/permissions", body=body, cast_to=object)
    error = info.value
    assert (error.status_code, error.type, error.param, error.code) == (400, "invalid_request_error", "project_ids", code)
    assert permissions_in_store(backend) == []  # nothing granted, not even the valid ids before the bad one


def test_bad_list_queries_are_400s(client, backend):
    step3, _, _ = train(client, backend)
    permissions = client.fine_tuning.checkpoints.permissions
    expect_error(openai.BadRequestError, lambda: permissions.list(step3, order="desc"), "order")  # type: ignore[arg-type]
    expect_error(openai.BadRequestError, lambda: permissions.list(step3, limit=0), "limit")
    expect_error(openai.BadRequestError, lambda: permissions.list(step3, extra_query={"limit": "ten"}), "limit")
