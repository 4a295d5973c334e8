"""A launch whose create answer is lost never duplicates the job: against the real local
backend, with its fault plan dropping the answer after the job was made (or before), a 5xx
sent after handling, and a flaky listing. Time is the test's: the launch's pauses go
through a recorded `sleep`."""

from __future__ import annotations

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.backend.http.faults import plan_from_dict
from tunedeck.core.api import Api, ApiError
from tunedeck.core.bootstrap import open_service
from tunedeck.core.job_create import LAUNCH_TAG, LIST_WAITS_S, create_job_once
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.service import JobsChanged, Notice, ServiceError

CREATE = {"method": "POST", "path": "/v1/fine_tuning/jobs"}
# `should_retry: false`: the SDK's own retries (with their real pauses) stay out of the way.
LIST = {"method": "GET", "path": "/v1/fine_tuning/jobs", "should_retry": False}


def rules(backend, *raw: dict) -> None:
    backend.faults.set_rules([plan_from_dict({"rules": [r]}).rules[0] for r in raw])


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def service(backend):
    service = await open_service(local_backend=backend)
    heard: list = []
    service.subscribe(heard.append)
    service.heard = heard
    await service.connect()
    assert service.is_connected, service.connection.detail
    yield service
    await service.close()


async def jobs_and_files(client) -> tuple[list[str], int]:
    backend_jobs = [job.id async for job in client.fine_tuning.jobs.list()]
    return backend_jobs, len((await client.files.list()).data)


@pytest.mark.parametrize(
    "fault",
    [{"kind": "drop", "after_handling": True}, {"kind": "server_error", "after_handling": True}],
    ids=["dropped-after-create", "500-after-create"],
)
async def test_a_lost_answer_yields_the_one_job_that_was_made(service, backend, client, sft_file, fault):
    rules(backend, {**CREATE, **fault, "times": 1})
    sleeps = Sleeps()
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL), sleep=sleeps)
    backend.faults.set_rules([])
    jobs, files = await jobs_and_files(client)
    assert jobs == [job.id] and files == 1  # one job; the file was uploaded once
    assert sleeps == []  # the first listing answered
    assert job.raw["metadata"][LAUNCH_TAG]
    assert [row.job.id for row in next(e for e in service.heard if isinstance(e, JobsChanged)).rows] == [job.id]
    assert (await service.cached_job(job.id)) is not None
    (notice,) = [e for e in service.heard if isinstance(e, Notice)]  # the user hears what happened
    assert notice.topic == "launch" and job.id in notice.message


async def test_an_answer_dropped_before_handling_is_sent_again_once(service, backend, client, sft_file):
    rules(backend, {**CREATE, "kind": "drop", "times": 1})
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL), sleep=Sleeps())
    backend.faults.set_rules([])
    assert (await jobs_and_files(client)) == ([job.id], 1)


async def test_a_flaky_listing_is_tried_again_after_a_pause(service, backend, client, sft_file):
    rules(
        backend,
        {**CREATE, "kind": "drop", "after_handling": True, "times": 1},
        {**LIST, "kind": "unavailable", "times": 1},
    )
    sleeps = Sleeps()
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL), sleep=sleeps)
    backend.faults.set_rules([])
    assert sleeps == [LIST_WAITS_S[0]]
    assert (await jobs_and_files(client))[0] == [job.id]


async def test_when_nothing_answers_the_error_says_the_job_may_exist(service, backend, client, sft_file):
    rules(backend, {**CREATE, "kind": "drop", "after_handling": True, "times": 1}, {**LIST, "kind": "unavailable"})
    sleeps = Sleeps()
    with pytest.raises(ServiceError) as info:
        await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL), sleep=sleeps)
    backend.faults.set_rules([])
    message = str(info.value)
    assert "may or may not exist" in message and "Check the job list" in message and LAUNCH_TAG in message
    assert sleeps == list(LIST_WAITS_S)
    assert len((await jobs_and_files(client))[0]) == 1  # it did exist: nothing was sent again


async def test_two_lost_creates_that_made_nothing_end_in_the_same_warning(service, backend, client, sft_file):
    rules(backend, {**CREATE, "kind": "drop", "times": 2})
    with pytest.raises(ServiceError, match="may or may not exist"):
        await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL), sleep=Sleeps())
    backend.faults.set_rules([])
    assert (await jobs_and_files(client)) == ([], 1)  # one upload, no job, no third create


async def test_a_refused_create_is_not_reconciled(service, backend, sft_file):
    with pytest.raises(ApiError) as info:
        await service.launch(LaunchRequest(training_path=sft_file, model="no-such-model"), sleep=Sleeps())
    assert "may or may not exist" not in str(info.value)
    assert service.api_requests == 2  # the upload and one create: a 4xx is an answer


async def test_the_create_carries_its_tag_as_the_idempotency_key(backend, client, sft_file):
    """Seen from the backend, which honours `Idempotency-Key`: the same key sent again by
    hand is answered with the job the launch made."""
    api = Api(openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key))
    try:
        file = await api.upload_training_file(sft_file)
        body = {"model": BUILTIN_BASE_MODEL, "training_file": file["id"], "metadata": {LAUNCH_TAG: "tag-123"}}
        created = await create_job_once(api, body)
    finally:
        await api.close()
    again = await client.fine_tuning.jobs.with_raw_response.create(**body, extra_headers={"Idempotency-Key": "tag-123"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.parse().id == created.job["id"] and created.note is None
    assert (await jobs_and_files(client)) == ([created.job["id"]], 1)
