"""The core service against the real local backend over loopback, time driven by the test."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.api import ApiError
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.poller import ACTIVE_INTERVAL_S, IDLE_INTERVAL_S, JobPoller
from tunedeck.core.records import MetricPoint
from tunedeck.core.service import ConnectionChanged, EventsAdded, JobMissing, JobsChanged, PollError, ServiceError


@pytest.fixture
async def service(manual_backend):
    service = await open_service(local_backend=manual_backend)
    heard: list = []
    service.subscribe(heard.append)
    service.heard = heard
    await service.connect()
    yield service
    await service.close()


async def test_connect_reports_online_on_the_local_profile(service):
    assert service.profile.name == "local"
    states = [e.state for e in service.heard if isinstance(e, ConnectionChanged)]
    assert states == ["connecting", "online"]
    assert BUILTIN_BASE_MODEL in await service.base_models()


async def test_launch_then_poll_until_succeeded(service, manual_backend, sft_file):
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    assert job.status == "validating_files"
    assert job.id in {row.job.id for row in await service.cached_rows()}

    poller = JobPoller(service)
    await asyncio.to_thread(manual_backend.run_until_settled)
    rows = await poller.poll_once()
    finished = next(r for r in rows if r.job.id == job.id)
    assert finished.job.status == "succeeded"
    assert finished.job.fine_tuned_model and finished.job.fine_tuned_model.startswith("ft:")
    assert finished.progress == 1.0

    events = await service.cached_events(job.id)
    metrics = [m for m in map(MetricPoint.from_event, events) if m]
    assert metrics and metrics[-1].step == metrics[-1].total_steps
    assert [m.step for m in metrics] == sorted(m.step for m in metrics)
    assert any(isinstance(e, EventsAdded) and e.job.id == job.id for e in service.heard)
    assert any(isinstance(e, JobsChanged) for e in service.heard)


async def test_events_are_fetched_incrementally_without_duplicates(service, manual_backend, sft_file):
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    await asyncio.to_thread(manual_backend.advance, job.id, 5)
    first_batch = await service.sync_events(job.id)
    assert first_batch
    await asyncio.to_thread(manual_backend.run_until_settled)
    second_batch = await service.sync_events(job.id)
    assert second_batch
    assert not {e.id for e in first_batch} & {e.id for e in second_batch}
    assert await service.sync_events(job.id) == []
    cached = await service.cached_events(job.id)
    assert [e.id for e in cached] == [e.id for e in first_batch + second_batch]


async def test_a_finished_job_costs_no_more_requests(service, manual_backend, sft_file):
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    poller = JobPoller(service)
    poller.watch(job.id)
    await poller.poll_once()
    await asyncio.to_thread(manual_backend.run_until_settled)
    await poller.poll_once()  # sees it finish: reads its last events once
    before = service.api_requests
    await poller.poll_once()
    assert service.api_requests - before == 1  # the job list only


async def test_cancel_a_running_job(service, manual_backend, sft_file):
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    await asyncio.to_thread(manual_backend.advance, job.id, 3)
    cancelled = await service.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert (await service.cached_job(job.id)).status == "cancelled"


async def test_launch_with_a_missing_file_names_it_and_sends_nothing(service, tmp_path):
    before = service.api_requests
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ServiceError, match="nope.jsonl: no such file"):
        await service.launch(LaunchRequest(training_path=missing, model=BUILTIN_BASE_MODEL))
    assert service.api_requests == before


async def test_cached_rows_are_served_before_connecting(manual_backend, sft_file):
    online = await open_service(local_backend=manual_backend)
    await online.connect()
    job = await online.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    await online.close()

    offline = await open_service(local_backend=manual_backend)
    assert not offline.is_connected
    assert offline.connection.state == "offline"
    assert [row.job.id for row in await offline.cached_rows()] == [job.id]
    await offline.close()


async def test_a_second_process_attaches_to_the_running_local_backend(tmp_path):
    """Two tunedeck processes on one profile share one backend instead of racing two."""
    from tunedeck.core.paths import AppPaths

    paths = AppPaths(config_dir=tmp_path / "c", cache_dir=tmp_path / "k", data_dir=tmp_path / "d")
    first = await open_service(paths=paths)
    await first.connect()
    second = await open_service(paths=paths)
    await second.connect()
    try:
        assert first.connection.state == second.connection.state == "online"
        assert first.local_endpoint.started and not second.local_endpoint.started  # the second only attached
        assert first.local_endpoint.pid == second.local_endpoint.pid
        assert await second.base_models() == await first.base_models()
    finally:
        await second.close()
        await first.close()


async def test_closing_while_connecting_leaves_the_service_closed(tmp_path):
    """The backend may finish starting after the app has closed: the service stays closed
    (no client left open), while the background backend serves on for the next start."""
    from tunedeck.backend import find_running
    from tunedeck.core.paths import AppPaths

    paths = AppPaths(config_dir=tmp_path / "c", cache_dir=tmp_path / "k", data_dir=tmp_path / "d")
    service = await open_service(paths=paths)
    connecting = asyncio.ensure_future(service.connect())
    await asyncio.sleep(0)  # let connect() hand the backend start to its thread
    await service.close()
    await connecting
    assert not service.is_connected
    assert find_running(paths.local_backend_dir("local")) is not None


async def test_launch_sends_hyperparameters_and_tunedeck_options_only_when_given(service, manual_backend, sft_file):
    plain = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    tuned = await service.launch(
        LaunchRequest(
            training_path=sft_file,
            model=BUILTIN_BASE_MODEL,
            batch_size=4,
            learning_rate_multiplier=2.5,
            options={"training_type": "lora", "lora_rank": 8},
        )
    )
    await asyncio.to_thread(manual_backend.run_until_settled)
    api = service._api  # what the server stored, as the SDK reads it back
    plain_job = await api.retrieve_job(plain.id)
    tuned_job = await api.retrieve_job(tuned.id)
    assert "tunedeck" not in plain_job  # other providers refuse fields they do not know
    assert tuned_job["tunedeck"] == {"training_type": "lora", "lora_rank": 8}
    assert tuned_job["hyperparameters"]["batch_size"] == 4
    assert tuned_job["hyperparameters"]["learning_rate_multiplier"] == 2.5


# -- the poller: one cache read per poll, its own loop, time driven by the test -------------


def count_job_list_reads(service, monkeypatch) -> list[int]:
    """Count reads of the cached job list (each `cached_rows()` reads the jobs, their newest
    metrics and their verdicts in one `job_rows` read)."""
    reads = [0]
    jobs = service.cache.job_rows

    async def counted(*args, **kwargs):
        reads[0] += 1
        return await jobs(*args, **kwargs)

    monkeypatch.setattr(service.cache, "job_rows", counted)
    return reads


async def test_a_poll_reads_the_cached_job_list_once_and_publishes_it(service, manual_backend, sft_file, monkeypatch):
    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    poller = JobPoller(service)
    poller.watch(job.id)
    poller.watch("ftjob-gone0000000000000000")  # followed by id: costs no cache read either
    await poller.read_cache()  # the first frame's read, before any poll
    await asyncio.to_thread(manual_backend.advance, job.id, 5)
    reads = count_job_list_reads(service, monkeypatch)
    service.heard.clear()

    rows = await poller.poll_once()
    assert reads[0] == 1
    published = [e for e in service.heard if isinstance(e, JobsChanged)]
    assert [e.rows for e in published] == [rows]  # published once, after the events
    assert next(r for r in rows if r.job.id == job.id).step  # progress from this poll's events
    assert any(isinstance(e, JobMissing) and e.job_id == "ftjob-gone0000000000000000" for e in service.heard)

    await asyncio.to_thread(manual_backend.run_until_settled)
    await poller.poll_once()
    assert reads[0] == 2


async def test_the_poll_loop_waits_its_interval_and_wakes_on_request(service, manual_backend, sft_file):
    waits: list[float] = []

    async def test_clock(wake: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        await wake.wait()  # time stands still: only `request()` moves the loop on

    job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    poller = JobPoller(service, wait=test_clock)
    first = poller.next_poll()
    loop = asyncio.ensure_future(poller.run())
    try:
        await asyncio.wait_for(first, 10)
        assert poller.polls == 1 and waits == [ACTIVE_INTERVAL_S]  # a job runs: the short pace
        await asyncio.to_thread(manual_backend.run_until_settled)
        second = poller.next_poll()
        poller.request()
        await asyncio.wait_for(second, 10)
        assert poller.polls == 2 and waits == [ACTIVE_INTERVAL_S, IDLE_INTERVAL_S]
        assert (await service.cached_job(job.id)).status == "succeeded"
    finally:
        loop.cancel()
        poller.close()


async def test_a_failing_poll_is_reported_once_until_a_poll_succeeds(service, monkeypatch):
    poller = JobPoller(service)
    refresh = service.refresh_jobs

    async def refused(limit: int = 20):
        raise ApiError("server", "the list is down [/]")

    monkeypatch.setattr(service, "refresh_jobs", refused)
    service.heard.clear()
    await poller.poll_now()
    await poller.poll_now()
    assert [e for e in service.heard if isinstance(e, PollError)] == [PollError("the list is down [/]", "server")]
    monkeypatch.setattr(service, "refresh_jobs", refresh)
    assert await poller.poll_now() is not None
    monkeypatch.setattr(service, "refresh_jobs", refused)
    await poller.poll_now()
    assert len([e for e in service.heard if isinstance(e, PollError)]) == 2
    assert poller.polls == 4


async def test_a_file_named_with_control_characters_uploads_under_a_name_a_header_can_carry(
    service, manual_backend, sft_file
):
    """A multipart header cannot carry ESC or undecodable bytes: servers refuse the upload."""
    hostile = sft_file.with_name("evil\x1b]0;pwned\x07\u202egnp.jsonl")
    hostile.write_bytes(sft_file.read_bytes())
    job = await service.launch(LaunchRequest(training_path=hostile, model=BUILTIN_BASE_MODEL))
    sdk = openai.AsyncOpenAI(base_url=manual_backend.base_url, api_key=manual_backend.api_key, max_retries=0)
    try:
        uploaded = await sdk.files.retrieve(job.raw["training_file"])
    finally:
        await sdk.close()
    assert uploaded.filename == "evil_]0;pwned__gnp.jsonl"
