"""One shared poller for every screen: few requests however many jobs run.

Each poll costs one request for the job list, then events requests (incremental: only
events newer than the newest cached one) for the jobs whose turn it is, and reads the cached
rows once, after the list and the events are stored, to publish them through the service
(`JobsChanged`), so progress columns never lag a poll behind.

Whose turn it is (times on the poller's clock, `now`, which tests drive by hand):
- a job a screen watches: every poll;
- a job that just changed status, that this poller has not seen before, or that finished
  (its last events, read once; nothing is asked about it after that): this poll;
- any other job that can still change: in rotation, each about every `n × 0.5 s` for n such
  jobs, but at most every active interval (2 s) and at least every idle one (30 s), so the
  events requests of many running jobs add up to about 2 a second (from 4 jobs up to 60;
  past 60, each job every 30 s). A job whose events request brings nothing new waits twice
  as long the next time (up to 30 s); its pace is back to normal once something arrives,
  its status changes or a screen opens it.

For 50 running jobs, one of them on screen, that is about 30 list requests and 150 events
requests a minute, against 3,000 for asking each job's state and events every 2 s
(`bench/watch_polling.py` measures it).

The list request covers every job that can still change: it asks for as many jobs as reach
the oldest unfinished one the cache knows (plus room for jobs created since), up to
`list_limit_max`; an unfinished job the list still leaves out is retrieved by id on its turn,
so it is seen to finish.

The loop owns its pace: `run()` polls, then waits `next_interval()` or until `request()`
wakes it. The interval is the active one (2 s) while things move; each poll that sees no
status change and no new event doubles it, up to the idle interval (30 s), or 8 s while a
screen watches a job that can change; any change, `request()` or a newly watched job brings
it back to 2 s. With nothing that can change it is the idle interval. The wait is a
parameter, so tests drive time. A poll asked for by hand (`poll_now()`, `poll_once()`: tests,
front ends without a loop) reads every job that can change; `poll_once(full=False)` is one
of the loop's polls, by the turns above. `await next_poll()` waits for the next poll to
finish. Expected failures become `PollError` events, never exceptions out of `run()`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Sequence

from .api import ApiError
from .records import Job, JobEvent, JobRow
from .service import JobMissing, JobsChanged, PollError, Service, ServiceError, ServiceEvent

ACTIVE_INTERVAL_S = 2.0
IDLE_INTERVAL_S = 30.0
WATCHED_MAX_INTERVAL_S = 8.0
"""The loop's longest wait while a screen watches a job that can change: a quiet job on
screen (queued, validating) is still seen to start within seconds."""
ROTATION_S_PER_JOB = 0.5
"""An unwatched job's turn comes about every `n × this` seconds for n jobs that can change:
their events requests add up to 1 / this per second, however many there are."""
LIST_LIMIT = 20  # the job list's usual length (the API's default)
LIST_LIMIT_MAX = 100  # the most one list request asks for (the API's page size cap)
LIST_HEADROOM = 10  # jobs created since the cache last saw the list push older ones down
MAX_BACKOFF = 8  # doublings of the loop's interval counted (2 s × 2^8 is past any cap)

Wait = Callable[[asyncio.Event, float], Awaitable[None]]
"""How the loop waits between polls: `(wake, seconds)`, returning early once `wake` is set."""


async def wait_or_wake(wake: asyncio.Event, seconds: float) -> None:
    """The loop's default wait: `seconds` of the event loop's clock, or until woken."""
    try:
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    except TimeoutError:
        pass


@dataclass(slots=True)
class _Pace:
    """One job's turn in the rotation."""

    due: float  # on the poller's clock
    quiet: int = 0  # events requests in a row that brought nothing new


class JobPoller:
    def __init__(
        self,
        service: Service,
        *,
        wait: Wait = wait_or_wake,
        now: Callable[[], float] = time.monotonic,
        active_interval: float = ACTIVE_INTERVAL_S,
        idle_interval: float = IDLE_INTERVAL_S,
        watched_max_interval: float = WATCHED_MAX_INTERVAL_S,
        rotation_per_job: float = ROTATION_S_PER_JOB,
        list_limit_max: int = LIST_LIMIT_MAX,
    ) -> None:
        self._service = service
        self._wait = wait
        self._now = now
        self.active_interval = active_interval
        self.idle_interval = idle_interval
        self.watched_max_interval = watched_max_interval
        self.rotation_per_job = rotation_per_job
        self.list_limit_max = list_limit_max
        self.rows: list[JobRow] | None = None
        """The cached rows as last read or announced (None until the cache was first read)."""
        self.polls = 0
        """Polls finished, successful or not."""
        # What polling costs, in API calls the poller asked for (an events read of many new
        # events may take more than one page: `service.api_requests` counts pages).
        self.list_requests = 0
        self.events_requests = 0
        self.retrieve_requests = 0
        self.last_followed: tuple[str, ...] = ()
        """The jobs whose events the last poll asked for, in the order it asked."""
        self._settled: set[str] = set()  # finished jobs whose final events are cached
        self._watched: set[str] = set()  # jobs a screen is looking at (followed every poll)
        self._seen_active: set[str] = set()  # jobs seen running, so they get one read after finishing
        self._statuses: dict[str, str] = {}  # each job's status as the last poll that saw it found it
        self._paces: dict[str, _Pace] = {}
        self._backoff = 0  # polls in a row that saw nothing move (the loop's interval doubles each)
        self._list_short = 0  # the last list's limit when it may have stopped short of running jobs
        self._any_active = False
        self._lock = asyncio.Lock()  # a requested poll and the loop's never overlap
        self._wake = asyncio.Event()
        self._full = False  # the next poll asks every job that can change (`request(full=True)`)
        self._waiters: list[asyncio.Future[None]] = []
        self._last_error: str | None = None
        # A launch or a cancel announces new rows between polls: remember which jobs they show
        # running, so a job that finishes before the next poll still gets its last events.
        self._unsubscribe = service.subscribe(self._heard)

    def close(self) -> None:
        """Stop listening to the service (the loop ends when its task is cancelled)."""
        self._unsubscribe()

    def watch(self, job_id: str) -> None:
        """A screen shows the job: follow it every poll, from the next one, at the active pace."""
        if job_id not in self._watched:
            self._watched.add(job_id)
            self._backoff = 0
        pace = self._paces.get(job_id)
        if pace is not None:
            pace.quiet = 0

    def unwatch(self, job_id: str) -> None:
        """Back into the rotation (its turn comes a full rotation after its last read)."""
        self._watched.discard(job_id)

    def next_interval(self) -> float:
        """How long the loop waits after this poll (see the module's docstring)."""
        watching = bool(self._watched - self._settled)
        if not (self._any_active or watching):
            return self.idle_interval
        cap = min(self.idle_interval, self.watched_max_interval) if watching else self.idle_interval
        return min(cap, self.active_interval * 2**self._backoff)

    def rotation_interval(self, jobs: int) -> float:
        """How often an unwatched job that can change gets its turn, with `jobs` such jobs."""
        return min(self.idle_interval, max(self.active_interval, jobs * self.rotation_per_job))

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

    async def poll_once(self, *, full: bool = True) -> list[JobRow]:
        """Refresh the job list and the events of every job that can still change (`full=False`:
        of the jobs whose turn it is, what the loop's polls do); publish the rows.

        Raises the API's errors (`poll_now()` and `run()` report them instead).
        """
        if not self._service.is_connected:
            return []
        known = self.rows if self.rows is not None else await self.read_cache()
        full = full or self._full
        self._full = False
        limit = self._list_limit(known)
        fresh = await self._service.refresh_jobs(limit=limit)
        self.list_requests += 1
        # A full list that ends on a job that can change may stop short of others (a cache
        # that does not know them yet): the next list asks for twice as many.
        self._list_short = limit if len(fresh) >= limit and not fresh[-1].is_terminal else 0
        now = self._now()
        listed = {job.id for job in fresh}
        jobs = _by_id(fresh, (row.job for row in known))  # what the cache now holds
        self._any_active = any(not job.is_terminal for job in jobs.values())
        moved = self._note_statuses(fresh)
        rotating = [job for job in jobs.values() if self._needs_events(job) and job.id not in self._watched]
        interval = self.rotation_interval(sum(not job.is_terminal for job in rotating))
        followed: list[str] = []
        spread: list[str] = []  # read out of turn together: their next turns are spread out
        for job in jobs.values():
            if not self._needs_events(job):
                continue
            turn = self._turn(job, now, full, changed=job.id in moved)
            if turn is None:
                continue
            followed.append(job.id)
            if job.id in listed:
                news = bool(await self._follow(job))
            else:  # the list no longer reaches it (or never did): its state comes by id
                news = await self._follow_by_id(job.id)
            if news:
                moved.add(job.id)
            if job.id in self._settled:
                self._paces.pop(job.id, None)
                continue
            self._paced(job.id, news, now, interval)
            if turn == "spread":
                spread.append(job.id)
        self._spread(spread, now)
        for job_id in self._watched - jobs.keys() - self._settled:
            followed.append(job_id)
            if await self._follow_by_id(job_id):
                moved.add(job_id)
        self.last_followed = tuple(followed)
        rows = await self._service.cached_rows()  # the poll's one read of the job list
        self._remember(rows)
        self._service.publish(JobsChanged(rows))
        self._backoff = 0 if moved else min(self._backoff + 1, MAX_BACKOFF)
        await self._service.check_budget(rows, self._service.clock())  # the budget's alerts, after each poll
        return rows

    def _list_limit(self, known: Sequence[JobRow]) -> int:
        """Enough jobs to reach the oldest one that can still change (rows are newest first)."""
        reach = max((i + 1 for i, row in enumerate(known) if not row.job.is_terminal), default=0)
        return max(LIST_LIMIT, min(self.list_limit_max, max(reach + LIST_HEADROOM, 2 * self._list_short)))

    def _note_statuses(self, fresh: Iterable[Job]) -> set[str]:
        """The listed jobs whose status this poller had not seen yet (new ones included)."""
        changed = set()
        for job in fresh:
            if self._statuses.get(job.id) != job.status:
                changed.add(job.id)
                self._statuses[job.id] = job.status
                pace = self._paces.get(job.id)
                if pace is not None:
                    pace.quiet = 0
        return changed

    def _turn(self, job: Job, now: float, full: bool, changed: bool) -> str | None:
        """Why the job's events are read this poll ("spread": out of turn, with others), or None."""
        if job.is_terminal or job.id in self._watched:
            return "now"
        pace = self._paces.get(job.id)
        if full or pace is None:
            return "spread"
        if changed:
            return "now"
        # Due before the middle of the next wait: now, rather than a whole interval late.
        return "now" if pace.due <= now + self.active_interval / 2 else None

    def _paced(self, job_id: str, news: bool, now: float, interval: float) -> None:
        pace = self._paces.setdefault(job_id, _Pace(due=now))
        pace.quiet = 0 if news or job_id in self._watched else pace.quiet + 1
        pace.due = now + min(self.idle_interval, interval * 2**pace.quiet)

    def _spread(self, job_ids: list[str], now: float) -> None:
        """Jobs read together out of turn (first seen, or all at once) would come due together
        ever after: spread their next turns over their intervals instead."""
        for index, job_id in enumerate(job_ids):
            pace = self._paces[job_id]
            pace.due = now + (pace.due - now) * (index + 1) / len(job_ids)

    async def poll_now(self) -> list[JobRow] | None:
        """Poll every job that can change once, now (after a poll in progress); None when not
        connected.

        Expected failures (API errors) are published as `PollError`; others propagate.
        """
        if not self._service.is_connected:
            return None
        return await self._locked_poll(full=True)

    async def _locked_poll(self, *, full: bool) -> list[JobRow] | None:
        if not self._service.is_connected:
            return None
        async with self._lock:
            try:
                rows = await self.poll_once(full=full)
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
                await self._locked_poll(full=False)
            except Exception as exc:  # never let one bad poll end a long session
                self._report(f"poll failed: {exc}")
            await self._wait(self._wake, self.next_interval())

    def request(self, *, full: bool = False) -> None:
        """Poll as soon as possible, at the active pace again (`full`: and read the events of
        every job that can change, not only those whose turn it is): wakes the loop (without
        a running loop nothing polls)."""
        self._backoff = 0
        self._full = self._full or full
        self._wake.set()

    # -- events -----------------------------------------------------------------------------

    def _needs_events(self, job: Job) -> bool:
        if job.id in self._settled:
            return False
        if not job.is_terminal:
            self._seen_active.add(job.id)
            return True
        return job.id in self._watched or job.id in self._seen_active

    async def _follow(self, job: Job) -> list[JobEvent]:
        # The list just gave the job's state, so only its events are fetched.
        self.events_requests += 1
        events = await self._service.follow(job.id, known=job)
        if job.is_terminal:
            self._settled.add(job.id)
        return events

    async def _follow_by_id(self, job_id: str) -> bool:
        """Its state, then its events. True when that is news: new events, a new status, or
        the API no longer has the job (said once, then the job is left alone)."""
        try:
            self.retrieve_requests += 1
            job = await self._service.refresh_job(job_id)
            self.events_requests += 1
            events = await self._service.follow(job_id, known=job)
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
            self._settled.add(job_id)
            self._service.publish(JobMissing(job_id, exc.message))
            return True
        if job.is_terminal:
            self._settled.add(job_id)
        changed = self._statuses.get(job_id) != job.status
        self._statuses[job_id] = job.status
        return bool(events) or changed


def _by_id(fresh: Iterable[Job], cached: Iterable[Job]) -> dict[str, Job]:
    """The fresh jobs (newest first), then the cached ones the list did not return."""
    jobs = {job.id: job for job in fresh}
    for job in cached:
        jobs.setdefault(job.id, job)
    return jobs
