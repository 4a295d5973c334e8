"""The poller's turns against the real local backend (manual time): which jobs each poll asks
about, how the loop slows down when nothing moves, and what a poll costs. The poller's clock
is the test's: each poll happens at a time the test sets, and nothing sleeps."""

from __future__ import annotations

import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.bootstrap import open_service
from tunedeck.core.poller import ACTIVE_INTERVAL_S, IDLE_INTERVAL_S, LIST_HEADROOM, WATCHED_MAX_INTERVAL_S, JobPoller


class PollerClock:
    """The poller's clock (`now`), moved only by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def service(backend):
    service = await open_service(local_backend=backend)
    await service.connect()
    yield service
    await service.close()


@pytest.fixture
def pclock() -> PollerClock:
    return PollerClock()


async def create_jobs(client, clock, sft_file, n: int) -> list[str]:
    """`n` jobs of many steps (10 epochs of 40 examples), a second apart on the backend's
    clock (so the list's order is theirs), newest last; `step_all` starts them."""
    upload = await client.files.create(file=sft_file, purpose="fine-tune")
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 10, "batch_size": 1}}}
    ids = []
    for _ in range(n):
        clock.now += 1
        job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=upload.id, method=method)
        ids.append(job.id)
    return ids


async def step_all(backend, ids: list[str], steps: int = 1) -> None:
    for job_id in ids:
        await backend.advance_async(job_id, steps)


async def backend_event_ids(client, job_id: str) -> list[str]:
    newest_first = [event.id async for event in client.fine_tuning.jobs.list_events(job_id, limit=100)]
    return newest_first[::-1]


async def test_a_watched_job_is_read_every_poll_and_the_others_take_turns(
    service, backend, client, clock, sft_file, pclock
):
    ids = await create_jobs(client, clock, sft_file, 11)
    await step_all(backend, ids)
    watched, others = ids[0], ids[1:]
    poller = JobPoller(service, now=pclock)
    poller.watch(watched)
    await poller.poll_once(full=False)
    assert set(poller.last_followed) == set(ids)  # first sight: every job once

    interval = poller.rotation_interval(len(others))
    assert interval == 5.0  # 10 unwatched jobs × 0.5 s
    reads: dict[str, list[float]] = {job_id: [] for job_id in ids}
    for _ in range(15):
        pclock.t += ACTIVE_INTERVAL_S
        await step_all(backend, ids)  # every job always has news: no job backs off
        await poller.poll_once(full=False)
        assert poller.next_interval() == ACTIVE_INTERVAL_S  # things move: the loop keeps its pace
        for job_id in poller.last_followed:
            reads[job_id].append(pclock.t)

    assert len(reads[watched]) == 15
    for job_id in others:
        times = reads[job_id]
        gaps = [b - a for a, b in zip(times, times[1:])]
        # Its turn comes once per rotation, on the poll nearest to it (polls are 2 s apart).
        assert gaps and all(interval - ACTIVE_INTERVAL_S / 2 <= gap <= interval + ACTIVE_INTERVAL_S / 2 for gap in gaps)
        assert times[0] <= 1000.0 + interval + ACTIVE_INTERVAL_S  # the first turns are spread, not all at once
    per_poll = [sum(t == 1000.0 + 2 * k for job_id in others for t in reads[job_id]) for k in range(2, 16)]
    assert max(per_poll) - min(per_poll) <= 2  # about the same number of jobs every poll

    # Every event came, once each, in the API's order.
    for job_id in ids:
        cached = [e.id for e in await service.cached_events(job_id)]
        backend_ids = await backend_event_ids(client, job_id)
        assert cached == backend_ids[: len(cached)] and len(cached) == len(set(cached))


async def test_a_quiet_job_backs_off_and_the_loop_slows_until_something_moves(
    service, backend, client, clock, sft_file, pclock
):
    (job_id,) = await create_jobs(client, clock, sft_file, 1)
    await backend.advance_async(job_id, 1)
    poller = JobPoller(service, now=pclock)
    start = pclock.t
    await poller.poll_once(full=False)
    assert poller.last_followed == (job_id,) and poller.next_interval() == ACTIVE_INTERVAL_S

    reads, waits = [], []
    while pclock.t - start < 90:
        pclock.t += poller.next_interval()  # what the loop would wait
        await poller.poll_once(full=False)
        if poller.last_followed:
            reads.append(pclock.t - start)
        waits.append(poller.next_interval())
    # Nothing moves: each read of the job comes twice as late as the one before, up to 30 s,
    # and the loop's own interval grows the same way.
    assert reads == [2, 6, 14, 30, 60, 90]
    assert waits[:5] == [4, 8, 16, 30, 30] and set(waits[4:]) == {IDLE_INTERVAL_S}

    # The job trains a step: its next read brings it, and both paces are back to 2 s.
    await backend.advance_async(job_id, 1)
    pclock.t = start + reads[-1] + IDLE_INTERVAL_S
    await poller.poll_once(full=False)
    assert poller.last_followed == (job_id,)
    assert poller.next_interval() == ACTIVE_INTERVAL_S
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    assert poller.last_followed == (job_id,)  # read again 2 s later (it had news)

    # Quiet again; `request()` (the user pressing r) brings the loop's pace back at once.
    for _ in range(3):
        pclock.t += poller.next_interval()
        await poller.poll_once(full=False)
    assert poller.next_interval() > ACTIVE_INTERVAL_S
    poller.request()
    assert poller.next_interval() == ACTIVE_INTERVAL_S

    # Opening it on a screen: read every poll, and the loop never waits more than 8 s for it.
    for _ in range(3):
        pclock.t += poller.next_interval()
        await poller.poll_once(full=False)
    poller.watch(job_id)
    assert poller.next_interval() == ACTIVE_INTERVAL_S
    seen = []
    for _ in range(6):
        pclock.t += poller.next_interval()
        await poller.poll_once(full=False)
        seen.append(poller.last_followed)
    assert seen == [(job_id,)] * 6 and poller.next_interval() == WATCHED_MAX_INTERVAL_S


async def test_a_job_that_finishes_out_of_turn_gets_its_last_events_then_nothing(
    service, backend, client, clock, sft_file, pclock
):
    ids = await create_jobs(client, clock, sft_file, 8)
    await step_all(backend, ids)
    poller = JobPoller(service, now=pclock)
    await poller.poll_once(full=False)
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    # A job whose turn is not due on the next poll finishes meanwhile.
    pclock.t += ACTIVE_INTERVAL_S
    finishing = next(j for j in ids if j not in poller.last_followed)
    await backend.run_until_async(finishing, "succeeded")
    await poller.poll_once(full=False)
    assert finishing in poller.last_followed  # seen finished in the list: read now, not on its turn
    assert [e.id for e in await service.cached_events(finishing)] == await backend_event_ids(client, finishing)
    row = next(r for r in poller.rows if r.job.id == finishing)
    assert row.job.status == "succeeded" and row.progress == 1.0

    # A finished job is never asked about again, whatever the poll.
    for full in (False, True, False):
        pclock.t += IDLE_INTERVAL_S
        await poller.poll_once(full=full)
        assert finishing not in poller.last_followed and len(poller.last_followed) >= 1


async def test_nothing_running_costs_one_list_request_a_poll_at_the_idle_pace(
    service, backend, client, clock, sft_file, pclock
):
    ids = await create_jobs(client, clock, sft_file, 3)
    for job_id in ids:
        await backend.run_until_async(job_id, "succeeded")
    poller = JobPoller(service, now=pclock)
    await poller.poll_once(full=False)
    assert poller.next_interval() == IDLE_INTERVAL_S
    before = service.api_requests
    for _ in range(3):
        pclock.t += IDLE_INTERVAL_S
        await poller.poll_once(full=False)
        assert poller.last_followed == ()
    assert service.api_requests - before == 3


async def test_a_running_job_past_the_first_page_of_the_list_is_still_followed_to_its_end(
    service, backend, client, clock, sft_file, pclock
):
    (old,) = await create_jobs(client, clock, sft_file, 1)
    await backend.advance_async(old, 1)
    poller = JobPoller(service, now=pclock)
    limits: list[int] = []
    refresh = service.refresh_jobs

    async def counted(limit: int = 20):
        limits.append(limit)
        return await refresh(limit=limit)

    service.refresh_jobs = counted
    await poller.poll_once(full=False)
    assert poller.last_followed == (old,)

    # 25 newer jobs, all cancelled: the job list's first 20 no longer reach the running one.
    newer = await create_jobs(client, clock, sft_file, 25)
    for job_id in newer:
        await client.fine_tuning.jobs.cancel(job_id)
    retrieves = poller.retrieve_requests
    pclock.t += 10
    await backend.advance_async(old, 1)
    await poller.poll_once(full=False)
    assert limits[-1] == 20 and old in poller.last_followed  # the cache knew 1 job: the list missed it...
    assert poller.retrieve_requests == retrieves + 1  # ...so it came by id
    pclock.t += 10
    await poller.poll_once(full=False)
    assert limits[-1] == 21 + LIST_HEADROOM  # the cache has it 21st: the list reaches it now
    assert old in poller.last_followed  # (its turn: it had news at its last read)
    assert poller.retrieve_requests == retrieves + 1

    await backend.run_until_async(old, "succeeded")
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    assert old in poller.last_followed
    assert (await service.cached_job(old)).status == "succeeded"
    assert [e.id for e in await service.cached_events(old)] == await backend_event_ids(client, old)
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    assert limits[-1] == 20 and poller.last_followed == ()  # nothing left running: the usual list


async def test_jobs_the_list_cannot_reach_are_retrieved_on_their_turn(
    service, backend, client, clock, sft_file, pclock
):
    """With a list of at most 20 jobs (`list_limit_max`), the older running jobs come by id,
    each on its turn (not every poll), and are seen to finish."""
    old = await create_jobs(client, clock, sft_file, 4)
    await step_all(backend, old)
    poller = JobPoller(service, now=pclock, list_limit_max=20)
    await poller.poll_once(full=False)
    newer = await create_jobs(client, clock, sft_file, 20)
    for job_id in newer:
        await client.fine_tuning.jobs.cancel(job_id)

    reads: dict[str, int] = {job_id: 0 for job_id in old}
    retrieves = poller.retrieve_requests
    for _ in range(10):
        pclock.t += ACTIVE_INTERVAL_S
        await step_all(backend, old)
        await poller.poll_once(full=False)
        for job_id in poller.last_followed:
            reads[job_id] = reads.get(job_id, 0) + 1
    # 4 jobs take turns every 2 s (4 × 0.5 s is under the active interval): each read every poll.
    assert all(count == 10 for count in (reads[j] for j in old))
    assert poller.retrieve_requests - retrieves == 40

    await backend.run_until_async(old[0], "succeeded")
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    assert (await service.cached_job(old[0])).status == "succeeded"
    assert [e.id for e in await service.cached_events(old[0])] == await backend_event_ids(client, old[0])
    later: list[str] = []
    for _ in range(4):
        pclock.t += ACTIVE_INTERVAL_S
        await step_all(backend, old[1:])
        await poller.poll_once(full=False)
        later += poller.last_followed
    assert old[0] not in later and set(later) == set(old[1:])  # the finished one: never again


async def test_fifty_running_jobs_cost_under_a_tenth_of_asking_each_every_2_s(
    service, backend, client, clock, sft_file, pclock
):
    """A minute of the loop's polls (on the test's clock) with 50 running jobs that always
    have news: requests against 50 × (retrieve + events) every 2 s."""
    ids = await create_jobs(client, clock, sft_file, 50)
    await step_all(backend, ids)
    poller = JobPoller(service, now=pclock)
    await poller.poll_once(full=False)  # first sight: each job once
    before = service.api_requests
    start = pclock.t
    while pclock.t - start < 60:
        pclock.t += poller.next_interval()
        for job_id in ids[: 50 // 5]:  # a fifth of the jobs train a step between two polls...
            await backend.advance_async(job_id, 1)
        ids = ids[10:] + ids[:10]  # ...in turn
        await poller.poll_once(full=False)
    naive = 50 * 2 * 60 / ACTIVE_INTERVAL_S
    spent = service.api_requests - before
    assert spent <= naive / 10, (spent, naive)


async def test_a_poll_reads_the_cache_once(service, backend, client, clock, sft_file, pclock):
    """Counts every cache operation that is not a write (the cache names its inner functions
    `read` and `write`). Needs the service's single-read `cached_rows()` and its memory of
    each job's newest event."""
    ids = await create_jobs(client, clock, sft_file, 6)
    await step_all(backend, ids)
    poller = JobPoller(service, now=pclock)
    poller.watch(ids[0])
    await poller.read_cache()
    await poller.poll_once()  # the first reads of each job's history are allowed here
    reads = [0]
    run = service.cache._run

    async def counted(op):
        if getattr(op, "__name__", "") != "write":
            reads[0] += 1
        return await run(op)

    service.cache._run = counted
    for full in (False, True, False, False):
        reads[0] = 0
        pclock.t += ACTIVE_INTERVAL_S
        await step_all(backend, ids)
        await poller.poll_once(full=full)
        assert poller.last_followed
        assert reads[0] == 1, (full, reads[0])
    await backend.run_until_async(ids[1], "succeeded")
    reads[0] = 0
    pclock.t += ACTIVE_INTERVAL_S
    await poller.poll_once(full=False)
    assert ids[1] in poller.last_followed and reads[0] == 1
