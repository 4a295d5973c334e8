"""One shared poller for every screen: few requests however many jobs are watched.

Each poll costs one request for the job list plus one events request per job that can
still change (incremental, via the newest cached event). A finished job gets one last
events read after it finishes and nothing after that. Each poll reads the cached job
list once, after the list and the events are stored, and publishes those rows through the
service (`JobsChanged`), so progress columns never lag a poll behind.

The poller owns its pace: `run()` polls, then waits `next_interval()` or until `request()`
wakes it. The wait is a parameter, so tests drive time; `poll_now()` polls once (tests and
front ends without a loop), and `await next_poll()` waits for the next poll to finish.
Expected failures become `PollError` events, never exceptions out of `run()`.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable

from .api import ApiError
from .records import Job, JobRow
from .service import JobMissing, JobsChanged, PollError, Service, ServiceError, ServiceEvent

ACTIVE_INTERVAL_S = 2.0
IDLE_INTERVAL_S = 30.0

Wait = Callable[[asyncio.Event, float], Awaitable[None]]
"""How the loop waits between polls: `(wake, seconds)`, returning early once `wake` is set."""


async def wait_or_wake(wake: asyncio.Event, seconds: float) -> None:
    """The loop's default wait: `seconds` of the event loop's clock, or until woken."""
    try:
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    except TimeoutError:
        pass


class JobPoller:
    def __init__(
        self,
        service: Service,
        *,
        wait: Wait = wait_or_wake,
        active_interval: float = ACTIVE_INTERVAL_S,
        idle_interval: float = IDLE_INTERVAL_S,
    ) -> None:
        self._service = service
        self._wait = wait
        self.active_interval = active_interval
        self.idle_interval = idle_interval
        self.rows: list[JobRow] | None = None
        """The cached rows as last read or announced (None until the cache was first read)."""
        self.polls = 0
        """Polls finished, successful or not."""
        self._settled: set[str] = set()  # finished jobs whose final events are cached
        self._watched: set[str] = set()  # jobs a screen is looking at (followed even if idle)
        self._seen_active: set[str] = set()  # jobs seen running, so they get one read after finishing
        self._any_active = False
        self._lock = asyncio.Lock()  # a requested poll and the loop's never overlap
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._last_error: str | None = None
        # A launch or a cancel announces new rows between polls: remember which jobs they show
        # running, so a job that finishes before the next poll still gets its last events.
        self._unsubscribe = service.subscribe(self._heard)

    def close(self) -> None:
        """Stop listening to the service (the loop ends when its task is cancelled)."""
        self._unsubscribe()

    def watch(self, job_id: str) -> None:
        self._watched.add(job_id)

    def unwatch(self, job_id: str) -> None:
        self._watched.discard(job_id)

    def next_interval(self) -> float:
        return self.active_interval if self._any_active or self._watched - self._settled else self.idle_interval

    # -- the cache ------------------------------------------------------------------------

    async def read_cache(self) -> list[JobRow]:
        """The cached rows, without the network (a front end's first frame); polls build on them."""
        rows = await self._service.cached_rows()
        self._remember(rows)
        # Until a poll succeeds, the cache is what is known: jobs it shows running are retried
        # at the active pace, so a first poll that fails does not leave the error up for 30 s.
        self._any_active = any(not row.job.is_terminal for row in rows)
        return rows

    def _heard(self, event: ServiceEvent) -> None:
        if isinstance(event, JobsChanged):
            self._remember(event.rows)

    def _remember(self, rows: list[JobRow]) -> None:
        self.rows = rows
        # Jobs the cache last saw running get one final events read once they finish.
        self._seen_active.update(row.job.id for row in rows if not row.job.is_terminal)

    # -- one poll ---------------------------------------------------------------------------

    async def poll_once(self) -> list[JobRow]:
        """Refresh the job list and the events of every job that can still change; publish the rows.

        Raises the API's errors (`poll_now()` and `run()` report them instead).
        """
        if not self._service.is_connected:
            return []
        known = self.rows if self.rows is not None else await self.read_cache()
        fresh = await self._service.refresh_jobs()
        jobs = _by_id(fresh, (row.job for row in known))  # what the cache now holds
        self._any_active = any(not job.is_terminal for job in jobs.values())
        for job in jobs.values():
            if self._needs_events(job):
                await self._follow(job)
        for job_id in self._watched - jobs.keys() - self._settled:
            await self._follow_by_id(job_id)
        rows = await self._service.cached_rows()  # the poll's one read of the job list
        self._remember(rows)
        self._service.publish(JobsChanged(rows))
        return rows

    async def poll_now(self) -> list[JobRow] | None:
        """Poll once now (after a poll in progress); None when not connected.

        Expected failures (API errors) are published as `PollError`; others propagate.
        """
        if not self._service.is_connected:
            return None
        async with self._lock:
            try:
                rows = await self.poll_once()
            except ApiError as exc:
                self._report(exc.message, exc.kind)
            except ServiceError as exc:
                self._report(str(exc))
            else:
                self._last_error = None
                return rows
            finally:
                self.polls += 1
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        return None

    def next_poll(self) -> asyncio.Future[None]:
        """Await it to wait until the next poll has finished (tests; the loop polls on its own).

        A future, registered when called: a poll that ends before the caller awaits it counts.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def _report(self, message: str, kind: str = "") -> None:
        """Publish a failure once until a poll succeeds (the same error every 2 s says nothing new).

        Connection failures are always published: the service already shows them as the
        connection's state, so they never hide another failure.
        """
        if kind != "connection":
            if message == self._last_error:
                return
            self._last_error = message
        self._service.publish(PollError(message, kind))

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll, then wait `next_interval()` or until `request()`; until the task is cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.poll_now()
            except Exception as exc:  # never let one bad poll end a long session
                self._report(f"poll failed: {exc}")
            await self._wait(self._wake, self.next_interval())

    def request(self) -> None:
        """Poll as soon as possible: wakes the loop (without a running loop nothing polls)."""
        self._wake.set()

    # -- events -----------------------------------------------------------------------------

    def _needs_events(self, job: Job) -> bool:
        if job.id in self._settled:
            return False
        if not job.is_terminal:
            self._seen_active.add(job.id)
            return True
        return job.id in self._watched or job.id in self._seen_active

    async def _follow(self, job: Job) -> None:
        # The list just gave the job's state, so only its events are fetched.
        await self._service.follow(job.id, known=job)
        if job.is_terminal:
            self._settled.add(job.id)

    async def _follow_by_id(self, job_id: str) -> None:
        try:
            job = await self._service.refresh_job(job_id)
            await self._service.follow(job_id, known=job)
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
            self._settled.add(job_id)
            self._service.publish(JobMissing(job_id, exc.message))
            return
        if job.is_terminal:
            self._settled.add(job_id)


def _by_id(fresh: Iterable[Job], cached: Iterable[Job]) -> dict[str, Job]:
    """The fresh jobs (newest first), then the cached ones the list did not return."""
    jobs = {job.id: job for job in fresh}
    for job in cached:
        jobs.setdefault(job.id, job)
    return jobs
