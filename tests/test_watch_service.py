"""Watching jobs through the service, against the real local backend in manual time: pause,
resume and checkpoints, the verdict and estimates the cached rows carry, and the alerts
(status, failure, overfitting, budget) published exactly once per change."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import openai
import pytest
from conftest import CLOCK_START, FakeClock

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.bootstrap import open_service
from tunedeck.core.cache import Cache
from tunedeck.core.config import Profile
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.records import Job, JobRow
from tunedeck.core.service import EventsAdded, JobAlert, JobsChanged, Service
from tunedeck.core.watch.overfit import Verdict
from tunedeck.core.watch.progress import Money
from tunedeck.core.watch.series import MetricSeries


@pytest.fixture
async def service(manual_backend):
    service = await open_service(local_backend=manual_backend)
    service.clock = FakeClock()
    heard: list = []
    service.subscribe(heard.append)
    service.heard = heard
    await service.connect()
    yield service
    await service.close()


def alerts(service, kind: str | None = None) -> list[JobAlert]:
    return [e for e in service.heard if isinstance(e, JobAlert) and (kind is None or e.kind == kind)]


async def poll(service: Service, *job_ids: str) -> list[JobRow]:
    """What the poller does: the job list, each job's events, the cached rows once."""
    jobs = {job.id: job for job in await service.refresh_jobs()}
    for job_id in job_ids:
        await service.follow(job_id, known=jobs.get(job_id))
    return await service.cached_rows()


async def launch(service, path, **request) -> Job:
    return await service.launch(LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, **request))


# -- pause, resume, checkpoints -------------------------------------------------------------


async def test_pause_and_resume_store_the_job_follow_it_and_tell_listeners(service, manual_backend, sft_file):
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 4)
    service.heard.clear()

    paused = await service.pause(job.id)
    assert paused.status == "paused"
    assert (await service.cached_job(job.id)).status == "paused"
    assert any(isinstance(e, JobsChanged) and e.rows[0].job.status == "paused" for e in service.heard)
    messages = [e.message for e in await service.cached_events(job.id)]
    assert any(m.startswith("Fine-tuning job paused at step 4/") for m in messages)  # followed: its events are in

    resumed = await service.resume(job.id)
    assert resumed.status == "queued"
    assert (await service.cached_job(job.id)).status == "queued"


async def test_checkpoints_come_from_the_api_every_page_newest_first_and_are_cached(
    service, manual_backend, sft_file, monkeypatch
):
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 3)
    await service.pause(job.id)
    await service.resume(job.id)
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    await service.pause(job.id)

    api = service._api
    pages = []
    real_page = api.checkpoints_page

    async def small_pages(job_id, after=None, limit=100):
        pages.append(after)
        return await real_page(job_id, after=after, limit=1)

    monkeypatch.setattr(api, "checkpoints_page", small_pages)
    found = await service.checkpoints(job.id)
    assert len(pages) >= 2  # one checkpoint a page: the walk went on to the end
    assert [c.step for c in found] == [5, 3]
    assert all(c.job_id == job.id and c.model.endswith(f":ckpt-step-{c.step}") for c in found)
    assert found[0].metrics["step"] == 5.0

    cached = await service.cached_checkpoints(job.id)
    assert [(c.id, c.step, c.model) for c in cached] == [(c.id, c.step, c.model) for c in found]


async def test_pause_of_a_finished_job_is_the_apis_error(service, manual_backend, sft_file):
    from tunedeck.core.api import ApiError

    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.run_until_settled)
    with pytest.raises(ApiError) as info:
        await service.pause(job.id)
    assert info.value.kind == "bad_request" and info.value.message


# -- what the cached rows carry -------------------------------------------------------------


async def test_cached_rows_carry_the_estimate_the_verdict_and_when_fetched_in_one_read(
    service, manual_backend, sft_file, monkeypatch
):
    checked = await service.preflight(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL, n_epochs=2))
    assert checked.preflight.trained_tokens
    job = await service.launch(checked)
    row = (await service.cached_rows())[0]
    assert row.estimated_tokens == checked.preflight.trained_tokens
    assert row.fetched_at == CLOCK_START and row.verdict is None

    service.clock.now += 30
    await asyncio.to_thread(manual_backend.advance, job.id, 6)
    await poll(service, job.id)
    reads = []
    run = service.cache._run

    async def counted(op):
        reads.append(op)
        return await run(op)

    monkeypatch.setattr(service.cache, "_run", counted)
    row = (await service.cached_rows())[0]
    assert len(reads) == 1  # jobs, newest metrics and what watching stored: one read
    assert row.step == 6 and row.total_steps and row.n_epochs == 2
    assert row.epoch == pytest.approx(6 * 2 / row.total_steps)
    assert row.fetched_at == CLOCK_START + 30
    assert isinstance(row.verdict, Verdict)
    assert row.verdict == await service.verdict(job.id)
    assert row.estimated_tokens == checked.preflight.trained_tokens


async def test_cached_series_has_every_step_of_the_cached_metrics(service, manual_backend, sft_file):
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.run_until_settled)
    await service.follow(job.id)
    series = await service.cached_series(job.id)
    assert isinstance(series, MetricSeries)
    assert series.steps == list(range(1, series.total_steps + 1))
    assert "train_loss" in series.columns


async def test_events_are_synced_from_the_remembered_newest_id_without_reading_it_again(
    service, manual_backend, sft_file, monkeypatch
):
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    first = await service.sync_events(job.id)
    reads = []
    newest = service.cache.newest_event_id

    async def counted(*args):
        reads.append(args)
        return await newest(*args)

    monkeypatch.setattr(service.cache, "newest_event_id", counted)
    await asyncio.to_thread(manual_backend.advance, job.id, 3)
    second = await service.sync_events(job.id)
    assert await service.sync_events(job.id) == []
    assert reads == []  # remembered after the first sync
    cached = [e.id for e in await service.cached_events(job.id)]
    assert cached == [e.id for e in first + second] and len(set(cached)) == len(cached)


async def test_a_second_process_writing_the_same_cache_stores_no_duplicate(manual_backend, sft_file):
    first = await open_service(local_backend=manual_backend)
    second = await open_service(local_backend=manual_backend)
    await first.connect()
    await second.connect()
    try:
        job = await launch(first, sft_file)
        await asyncio.to_thread(manual_backend.advance, job.id, 2)
        await first.sync_events(job.id)
        await second.sync_events(job.id)  # reads the newest id the first stored
        await asyncio.to_thread(manual_backend.advance, job.id, 2)
        await second.sync_events(job.id)
        await first.sync_events(job.id)  # remembers an older id than the cache's: fetches some again
        ids = [e.id for e in await first.cached_events(job.id)]
        assert len(ids) == len(set(ids))
        steps = [e.data["step"] for e in await first.cached_events(job.id) if e.type == "metrics"]
        assert steps == [1, 2, 3, 4]
    finally:
        await second.close()
        await first.close()


# -- alerts ----------------------------------------------------------------------------------


async def test_status_alerts_are_published_once_per_change(service, manual_backend, sft_file):
    job = await launch(service, sft_file)
    await service.cached_rows()
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    await poll(service, job.id)
    await poll(service, job.id)
    assert [(a.job_id, a.kind, a.title) for a in alerts(service)] == [(job.id, "status", f"{job.id} running")]

    await asyncio.to_thread(manual_backend.run_until_settled)
    await poll(service, job.id)
    await poll(service, job.id)
    done = [a for a in alerts(service) if "succeeded" in a.title]
    assert len(done) == 1 and done[0].kind == "status" and "ft:" in done[0].message
    assert len(alerts(service)) == 2


async def test_a_failed_job_alerts_as_failed_with_its_reason(service, manual_backend):
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(7)
    ]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    sdk = openai.OpenAI(base_url=manual_backend.base_url, api_key=manual_backend.api_key, max_retries=0)
    try:  # too few examples: the service's pre-flight would refuse it, the API takes it and fails it
        file = await asyncio.to_thread(sdk.files.create, file=("few.jsonl", data), purpose="fine-tune")
        created = await asyncio.to_thread(sdk.fine_tuning.jobs.create, model=BUILTIN_BASE_MODEL, training_file=file.id)
    finally:
        sdk.close()
    await poll(service)  # first seen: validating files (no news)
    assert alerts(service) == []
    await asyncio.to_thread(manual_backend.run_until_settled)
    await poll(service, created.id)
    await poll(service, created.id)
    failed = alerts(service)
    assert [(a.job_id, a.kind, a.severity) for a in failed] == [(created.id, "failed", "error")]
    assert "invalid_n_examples" in failed[0].message and "at least 10 examples" in failed[0].message


async def test_overfitting_alerts_once_when_the_verdict_newly_alarms(service, manual_backend, sft_file, monkeypatch):
    """The rule itself is tested in the detector's tests; here: the verdict is worked out as
    events arrive, stored, carried by the rows, and told once per change."""
    import tunedeck.core.watch.overfit as overfit_module

    calls = []

    def fake_assess(series, *, method, n_epochs=None, checkpoint_steps=None, finished=False, rule=None, **_):
        calls.append((series.last_step(), method, finished))
        last = series.last_step() or 0
        state = "overfitting" if last >= 6 else "ok"
        return Verdict(
            state=state,
            fired_at_step=6 if state == "overfitting" else None,
            best_step=4,
            best_metric="train_loss",
            best_value=0.5,
            advice=f"stop now: use the checkpoint at step 4 (seen at {6 if last >= 6 else last})",
            reasons=(),
        )

    monkeypatch.setattr(overfit_module, "assess", fake_assess)
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 3)
    await poll(service, job.id)
    assert alerts(service, "overfitting") == []
    assert (await service.cached_rows())[0].verdict.state == "ok"

    await poll(service, job.id)  # nothing new: not worked out again
    assert len(calls) == 1

    await asyncio.to_thread(manual_backend.advance, job.id, 4)
    await poll(service, job.id)
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    await poll(service, job.id)
    told = alerts(service, "overfitting")
    assert [(a.job_id, a.severity) for a in told] == [(job.id, "warning")]
    assert told[0].message.startswith("stop now: use the checkpoint at step 4")
    row = (await service.cached_rows())[0]
    assert row.verdict.alarm and row.verdict.fired_at_step == 6
    assert calls[-1] == (9, "supervised", False)

    # Another process (the app started again) tells no alarm already stored.
    again = await open_service(local_backend=manual_backend)
    heard = []
    again.subscribe(heard.append)
    await again.connect()
    try:
        await asyncio.to_thread(manual_backend.advance, job.id, 1)
        await poll(again, job.id)
        assert not [e for e in heard if isinstance(e, JobAlert) and e.kind == "overfitting"]
        assert any(isinstance(e, EventsAdded) for e in heard)
    finally:
        await again.close()


# -- the budget ------------------------------------------------------------------------------


@pytest.fixture
async def budget_service(tmp_path, threaded_backend, monkeypatch):
    """A compatible profile with a budget, on the local backend (whose own spend is $0)."""
    monkeypatch.setenv("BUDGET_KEY", threaded_backend.api_key)
    profiles = {}

    async def make(**budget) -> Service:
        profile = Profile(
            name="paid", backend="compatible", base_url=threaded_backend.base_url, api_key_env="BUDGET_KEY", **budget
        )
        service = Service(profile, await Cache.open(tmp_path / f"cache-{len(profiles)}.sqlite3"))
        service.heard = []
        service.subscribe(service.heard.append)
        await service.connect()
        profiles[len(profiles)] = service
        return service

    yield make
    for service in profiles.values():
        await service.close()


def running_jobs(sync_client, backend, n: int, sft_file) -> list[str]:
    file = sync_client.files.create(file=sft_file, purpose="fine-tune")
    ids = []
    for _ in range(n):
        job = sync_client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
        backend.advance(job.id, 2)
        ids.append(job.id)
    return ids


def spend_of(table: dict[str, float]):
    def cost_so_far(job, *, fraction, estimated_tokens, local, now):
        return Money(table.get(job.id), True, "test")

    return cost_so_far


async def test_the_budget_warns_once_at_80_percent_and_cancels_at_100(
    budget_service, threaded_backend, sync_client, sft_file, monkeypatch
):
    import tunedeck.core.watch.progress as progress

    service = await budget_service(budget_usd=10.0, budget_cancel=True)
    a, b = await asyncio.to_thread(running_jobs, sync_client, threaded_backend, 2, sft_file)
    await service.refresh_jobs()
    rows = await service.cached_rows()

    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 3.0, b: 4.0}))
    assert await service.check_budget(rows, now=CLOCK_START) == pytest.approx(7.0)
    assert alerts(service) == []
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 4.0, b: 4.5}))
    assert await service.check_budget(rows, now=CLOCK_START) == pytest.approx(8.5)
    await service.check_budget(rows, now=CLOCK_START)
    warned = alerts(service, "budget_warn")
    assert len(warned) == 1 and "$8.50" in warned[0].message and "$10.00" in warned[0].message

    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 5.0, b: 5.5}))
    await service.check_budget(rows, now=CLOCK_START)
    await service.check_budget(rows, now=CLOCK_START)
    cancelled = alerts(service, "budget_cancel")
    assert len(cancelled) == 1 and a in cancelled[0].message and b in cancelled[0].message
    assert {(await service.cached_job(job_id)).status for job_id in (a, b)} == {"cancelled"}
    assert len(alerts(service, "budget_warn")) == 1


async def test_without_budget_cancel_reaching_the_budget_only_warns(
    budget_service, threaded_backend, sync_client, sft_file, monkeypatch
):
    import tunedeck.core.watch.progress as progress

    service = await budget_service(budget_usd=10.0)
    (a,) = await asyncio.to_thread(running_jobs, sync_client, threaded_backend, 1, sft_file)
    await service.refresh_jobs()
    rows = await service.cached_rows()
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 12.0}))
    await service.check_budget(rows, now=CLOCK_START)
    await service.check_budget(rows, now=CLOCK_START)
    assert [a.title for a in alerts(service)] == ["Budget reached"]
    assert (await service.cached_job(a)).status == "running"

    # Back under 80% (a job ended), then over again: a new crossing is told again.
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 1.0}))
    await service.check_budget(rows, now=CLOCK_START)
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 9.0}))
    await service.check_budget(rows, now=CLOCK_START)
    assert [a.title for a in alerts(service)] == ["Budget reached", "80% of the budget spent"]


async def test_the_budget_counts_running_jobs_at_the_price_table(
    budget_service, threaded_backend, sync_client, sft_file
):
    service = await budget_service(budget_usd=1.0)
    (a,) = await asyncio.to_thread(running_jobs, sync_client, threaded_backend, 1, sft_file)
    await service.refresh_jobs()
    row = (await service.cached_rows())[0]
    priced = dataclasses.replace(
        row, job=Job.from_api({**row.job.raw, "model": "gpt-4o-mini-2024-07-18", "trained_tokens": 1_000_000})
    )
    finished = dataclasses.replace(priced, job=Job.from_api({**priced.job.raw, "status": "succeeded"}))
    spend = await service.check_budget([priced], now=CLOCK_START)
    assert spend is not None and spend > 1.0
    assert [a.kind for a in alerts(service)] == ["budget_warn"]
    assert await service.check_budget([finished], now=CLOCK_START) == 0.0  # finished jobs are not "running"


async def test_no_budget_means_no_spend_worked_out(service):
    assert await service.check_budget([], now=CLOCK_START) is None


async def test_paused_jobs_and_jobs_the_api_lost_spend_nothing(
    budget_service, threaded_backend, sync_client, sft_file, monkeypatch
):
    import tunedeck.core.watch.progress as progress
    from tunedeck.core.service import JobMissing

    service = await budget_service(budget_usd=10.0, budget_cancel=True)
    a, b = await asyncio.to_thread(running_jobs, sync_client, threaded_backend, 2, sft_file)
    await service.refresh_jobs()
    rows = {row.job.id: row for row in await service.cached_rows()}
    paused = dataclasses.replace(rows[b], job=Job.from_api({**rows[b].job.raw, "status": "paused"}))
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 6.0, b: 6.0}))
    assert await service.check_budget([rows[a], paused], now=CLOCK_START) == pytest.approx(6.0)
    assert alerts(service) == []

    service.publish(JobMissing(a, "no such job"))  # what the poller says when the API lost it
    assert await service.check_budget([rows[a], paused], now=CLOCK_START) == 0.0
    assert alerts(service) == []
    assert {(await service.cached_job(job_id)).status for job_id in (a, b)} == {"running"}

    await service.refresh_jobs()  # the API lists it again: it counts again
    assert await service.check_budget([rows[a], paused], now=CLOCK_START) == pytest.approx(6.0)


async def test_a_failed_budget_cancel_is_tried_again_while_the_jobs_spend(
    budget_service, threaded_backend, sync_client, sft_file, monkeypatch
):
    import tunedeck.core.watch.progress as progress
    from tunedeck.core.api import ApiError

    service = await budget_service(budget_usd=10.0, budget_cancel=True)
    (a,) = await asyncio.to_thread(running_jobs, sync_client, threaded_backend, 1, sft_file)
    await service.refresh_jobs()
    rows = await service.cached_rows()
    monkeypatch.setattr(progress, "cost_so_far", spend_of({a: 12.0}))
    real_cancel = service.cancel
    calls = []

    async def flaky_cancel(job_id):
        calls.append(job_id)
        if len(calls) <= 2:
            raise ApiError("connection", "cannot reach the API: blip")
        return await real_cancel(job_id)

    monkeypatch.setattr(service, "cancel", flaky_cancel)
    await service.check_budget(rows, now=CLOCK_START)
    (failed,) = alerts(service)
    assert failed.kind == "budget_cancel" and "could not cancel" in failed.message and a in failed.message
    await service.check_budget(rows, now=CLOCK_START)  # fails again: told once already
    assert calls == [a, a] and len(alerts(service)) == 1
    await service.check_budget(rows, now=CLOCK_START)  # works: told once
    assert calls == [a, a, a]
    assert (await service.cached_job(a)).status == "cancelled"
    done = alerts(service)[1:]
    assert [(x.kind, x.title) for x in done] == [("budget_cancel", "Budget reached: jobs cancelled")]
    assert f"cancelled {a} on a retry" in done[0].message
    await service.check_budget(rows, now=CLOCK_START)  # still over (the rows are the same): done already
    assert calls == [a, a, a] and len(alerts(service)) == 2


def _steps_verdict(series, *, checkpoint_steps=None, finished=False, **_):
    """A stand-in detector: alarms always; names the newest checkpoint it was given."""
    best = max(checkpoint_steps) if checkpoint_steps else None
    return Verdict("overfitting", 2, best, "valid_loss", 1.0, f"use the checkpoint at step {best}", ())


async def test_a_finished_jobs_verdict_is_worked_out_again_with_the_checkpoints_kept(
    service, manual_backend, sft_file, monkeypatch
):
    import tunedeck.core.watch.overfit as overfit_module

    monkeypatch.setattr(overfit_module, "assess", _steps_verdict)
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 3)
    await service.pause(job.id)
    await service.resume(job.id)
    await asyncio.to_thread(manual_backend.run_until_settled)
    await poll(service, job.id)
    assert (await service.verdict(job.id)).best_step is None  # no checkpoints known yet
    service.heard.clear()

    kept = [c.step for c in await service.checkpoints(job.id)]
    assert 3 in kept
    verdict = await service.verdict(job.id)
    assert verdict.best_step == max(kept)
    stored, _ = await service.cache.watch_state(service.profile.name, job.id)
    assert Verdict.from_json(stored) == verdict
    assert (await service.cached_rows())[0].verdict == verdict
    assert alerts(service) == []  # a finished job's verdict is no news

    # The provider deleted some: the cached list (a new process reads it) names one it kept.
    step_3 = [c.raw for c in await service.cached_checkpoints(job.id) if c.step == 3]
    await service.cache.put_checkpoints(service.profile.name, job.id, step_3, complete=True)
    again = Service(service.profile, service.cache)
    assert (await again.verdict(job.id)).best_step == max(kept)  # as stored
    assert [c.step for c in await again.cached_checkpoints(job.id)] == [3]
    assert (await again.verdict(job.id)).best_step == 3
    assert (await service.cached_rows())[0].verdict.best_step == 3


async def test_opening_a_job_that_finished_long_ago_does_not_alert_overfitting(
    service, manual_backend, sft_file, monkeypatch
):
    import tunedeck.core.watch.overfit as overfit_module

    monkeypatch.setattr(overfit_module, "assess", _steps_verdict)
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.run_until_settled)
    await service.sync_events(job.id)  # its metrics were cached before verdicts were: none stored
    done = await service.refresh_job(job.id)
    assert done.is_terminal
    await service.cached_rows()
    service.heard.clear()

    await service.follow(job.id, known=done)  # what the poller does when a screen opens it
    assert alerts(service, "overfitting") == []
    assert (await service.cached_rows())[0].verdict.alarm  # worked out and stored all the same


async def test_a_job_that_ends_overfitting_while_watched_alerts(service, manual_backend, sft_file, monkeypatch):
    import tunedeck.core.watch.overfit as overfit_module

    def on_finish(series, *, finished=False, **_):
        state = "overfitting" if finished else "ok"
        return Verdict(state, None, None, None, None, f"{state} at the end", ())

    monkeypatch.setattr(overfit_module, "assess", on_finish)
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    await poll(service, job.id)
    await asyncio.to_thread(manual_backend.run_until_settled)
    await poll(service, job.id)
    assert [a.message for a in alerts(service, "overfitting")] == ["overfitting at the end"]


async def test_metrics_are_built_and_judged_off_the_event_loop(service, manual_backend, sft_file, monkeypatch):
    import threading

    import tunedeck.core.service as service_module
    import tunedeck.core.watch.overfit as overfit_module

    loop_thread = threading.current_thread()
    built, judged = [], []
    real_from_events = MetricSeries.from_events.__func__

    def from_events(cls, events):
        built.append(threading.current_thread() is loop_thread)
        return real_from_events(cls, events)

    def judge(series, **_):
        judged.append(threading.current_thread() is loop_thread)
        return Verdict("ok", None, None, None, None, "fine", ())

    monkeypatch.setattr(MetricSeries, "from_events", classmethod(from_events))
    monkeypatch.setattr(overfit_module, "assess", judge)
    monkeypatch.setattr(service_module, "ASSESS_IN_THREAD_FROM", 0)  # every job counts as long here
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.run_until_settled)
    await service.sync_events(job.id)

    await service.cached_series(job.id)  # the compare screen's read
    assert await service.verdict(job.id) is not None  # seeds the watch state, judges it
    await service.follow(job.id)
    assert built and not any(built)
    assert judged and not any(judged)


async def test_overlapping_follows_of_one_job_deliver_each_event_once(service, manual_backend, sft_file, monkeypatch):
    job = await launch(service, sft_file)
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    await service.follow(job.id)
    api = service._api
    real_page = api.events_page
    first_waiting, answer_first = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_first(job_id, after=None, limit=100):
        nonlocal calls
        calls += 1
        mine = calls
        page = await real_page(job_id, after=after, limit=limit)
        if mine == 1:  # the first follow's answer arrives late
            first_waiting.set()
            await answer_first.wait()
        return page

    monkeypatch.setattr(api, "events_page", slow_first)
    await asyncio.to_thread(manual_backend.advance, job.id, 1)
    first = asyncio.create_task(service.follow(job.id))  # the poll's
    await first_waiting.wait()
    await asyncio.to_thread(manual_backend.advance, job.id, 2)
    fresh = await service.refresh_job(job.id)
    second = asyncio.create_task(service.follow(job.id, known=fresh))  # a pause's, or the screen's
    await asyncio.sleep(0)  # the second follow starts: it asks for events at once, or waits its turn
    if calls == 2:  # it overlaps the first: let it end first, as a faster answer would
        got = await second
        answer_first.set()
        got += await first
    else:
        answer_first.set()
        got = await first + await second
    await asyncio.to_thread(manual_backend.advance, job.id, 1)
    got += await service.follow(job.id)
    ids = [e.id for e in got]
    assert len(ids) == len(set(ids))  # none told twice
    cached = [e.id for e in await service.cached_events(job.id)]
    assert set(ids) <= set(cached) and len(cached) == len(set(cached))
    steps = [e.data["step"] for e in await service.cached_events(job.id) if e.type == "metrics"]
    assert steps == [1, 2, 3, 4, 5, 6]
