"""The one async API every front end uses (the TUI and the headless CLI).

Data flows one way: API -> cache -> listeners. Every read a screen needs is answered from
the cache first; network calls update the cache and then tell listeners what changed,
through `publish()` (the poller in `poller.py` publishes its polls there too). Nothing
here imports Textual, and `openai` is only imported by `connect()`, off the event loop's
thread.

Watching: each followed job keeps, in memory, its metric series (seeded from the cache once)
and its overfitting verdict, recomputed when its events arrive and stored in the cache, so
`cached_rows()` carries it. What the user should hear about (a job's status changed, it
failed, it started overfitting, the budget) is published once per change as a `JobAlert`.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .api import CHECKPOINTS_MAX_PAGES, Api, ApiError
from .cache import Cache, CachedRow
from .config import Profile
from .paging import EVENTS_MAX_PAGES, JOBS_MAX_PAGES, CursorWalk
from .records import TERMINAL_STATUSES, Checkpoint, Job, JobEvent, JobRow
from .watch.verdict import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.backend import LocalBackend

    from .compute import ComputeView
    from .evaluate.service import Evaluations
    from .job_create import Sleep
    from .launch.launching import CheckedLaunch, LaunchProgress
    from .launch.models import ModelChoice
    from .launch.preflight import Preflight
    from .launch.request import LaunchRequest
    from .local_service import LocalEndpoint
    from .paths import AppPaths
    from .watch.series import MetricSeries


# -- what listeners hear -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobsChanged:
    """The job list changed (newest first)."""

    rows: list[JobRow]


@dataclass(frozen=True, slots=True)
class EventsAdded:
    """New events for one job, oldest first; `job` is its latest state."""

    job: Job
    events: list[JobEvent]


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """`state` is one of: offline, connecting, online, error, consent (a built-in profile
    waits for the user to agree to send its key; `detail` is the question)."""

    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class JobMissing:
    """A job a screen asked for does not exist on this profile's backend."""

    job_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class PollError:
    """One poll failed (the poller goes on); `message` is for the user, `kind` an ApiError kind."""

    message: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that is no failure: a damaged cache was replaced, a
    launch whose answer was lost found its job. `topic` says what it is about."""

    message: str
    topic: str = ""


ALERT_KINDS = ("status", "failed", "overfitting", "budget_warn", "budget_cancel")
ALERT_STATUSES = frozenset({"running", "paused", "succeeded", "failed", "cancelled"})
"""Statuses a job's move into is news; `validating_files` and `queued` are waits on the way."""
BUDGET_WARN_FRACTION = 0.8
ASSESS_IN_THREAD_FROM = 5_000
"""Metric steps from which a job's verdict is worked out in a thread."""


@dataclass(frozen=True, slots=True)
class JobAlert:
    """Something to tell the user even on another screen (a toast, the bell, the desktop),
    published once per change. `kind` is one of `ALERT_KINDS`; `severity` one of
    "information", "warning", "error"; `job_id` is "" for the profile's budget."""

    job_id: str
    kind: str
    title: str
    message: str
    severity: str = "information"


ServiceEvent = JobsChanged | EventsAdded | ConnectionChanged | JobMissing | PollError | Notice | JobAlert
Listener = Callable[[ServiceEvent], None]


class ServiceError(Exception):
    """A user-facing failure with a message that says what to do; `kind` says what sort
    ("preflight": the request or its files would be refused; "cancelled"; "" otherwise)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class _Watched:
    """What the service keeps in memory about one followed job."""

    series: MetricSeries
    verdict: Verdict | None  # as stored in the cache
    assessed_version: int | None = None  # the series' version the verdict was worked out from
    assessed_finished: bool = False


class Service:
    """State for one profile: its cache rows, its API connection, its listeners."""

    def __init__(
        self,
        profile: Profile,
        cache: Cache,
        paths: AppPaths | None = None,
        *,
        local_backend: LocalBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.cache = cache
        self.clock = clock
        """Wall-clock seconds: when a job was fetched (`JobRow.fetched_at`); tests drive it."""
        self._paths = paths
        self._local = local_backend  # an in-process backend (tests, embedding); else a background service
        self.local_endpoint: LocalEndpoint | None = None  # the background service this service talks to
        self._reviving = asyncio.Lock()
        self._closed = False
        self._api: Api | None = None
        self._listeners: list[Listener] = []
        self.takes_tunedeck_options = profile.backend == "local"
        """The server accepts tunedeck's own job options (`tunedeck` field): the local
        backend, or a compatible profile whose model list shows a tunedeck backend."""
        self.upload_sizes: tuple[int, int] | None = None
        """(multipart threshold, part size) in bytes for uploads; None: the API's (64 MB
        each). Tests set small ones to send a few KB in parts."""
        self.connection = ConnectionChanged("offline", "showing cached data")
        # Remembered so a poll reads the cache once: each job's newest cached event id (valid
        # for one cache file: `cache.generation`), its watch state, the statuses last stored.
        self._newest_event: dict[str, str | None] = {}
        self._cache_generation = cache.generation
        self._watched: dict[str, _Watched] = {}
        self._checkpoint_steps: dict[str, list[int]] = {}
        self._statuses: dict[str, str] = {}
        self._syncing: dict[str, asyncio.Lock] = {}  # per job: one events sync at a time
        self._missing: set[str] = set()  # jobs the API no longer has (the poller's `JobMissing`)
        self._budget_level = 0  # 0 under 80% of the budget, 1 warned, 2 at or over it
        self._budget_cancel_failed = False  # at the budget, a cancel failed: tried again each check
        self._assessing = asyncio.Lock()
        self._evaluations: Evaluations | None = None
        # Damage found after opening is announced; a note from the opening itself is read by
        # the front ends from `cache.recovery_note` once they listen.
        cache.on_recovery = lambda note: self.publish(Notice(note, "cache"))

    # -- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: ServiceEvent) -> None:
        """Tell every listener: the one way events leave the core (the poller publishes here too)."""
        if isinstance(event, JobMissing):  # a job the API no longer has spends nothing (`check_budget`)
            self._missing.add(event.job_id)
        for listener in list(self._listeners):
            listener(event)

    def _set_connection(self, state: str, detail: str = "") -> None:
        self.connection = ConnectionChanged(state, detail)
        self.publish(self.connection)

    # -- cached reads (no network) -----------------------------------------------------

    async def cached_rows(self) -> list[JobRow]:
        """Every cached job newest first, with its progress, verdict and estimated tokens: one
        cache read (the poller reads this once per poll)."""
        rows = [_row(cached) for cached in await self.cache.job_rows(self.profile.name)]
        for row in rows:  # what the cache shows is the status a change is told against
            self._statuses.setdefault(row.job.id, row.job.status)
        return rows

    async def cached_job(self, job_id: str) -> Job | None:
        data = await self.cache.job(self.profile.name, job_id)
        return Job.from_api(data) if data else None

    async def cached_events(self, job_id: str) -> list[JobEvent]:
        """All cached events of a job, oldest first."""
        return [JobEvent.from_api(job_id, e) for e in await self.cache.events(self.profile.name, job_id)]

    async def cached_series(self, job_id: str) -> MetricSeries:
        """Every metric of a job by step, from its cached metrics events (a fresh copy, built
        in a thread: a long job's take seconds)."""
        events = await self.cache.metric_events(self.profile.name, job_id)
        return await asyncio.to_thread(_series_of, job_id, events)

    async def cached_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """A job's cached checkpoints, newest (highest step) first."""
        found = [Checkpoint.from_api(c, job_id) for c in await self.cache.checkpoints(self.profile.name, job_id)]
        await self._remember_checkpoints(job_id, found)
        return found

    async def verdict(self, job_id: str) -> Verdict | None:
        """The job's overfitting verdict: as last worked out, else as stored, else worked out
        from its cached metrics and stored (None for a job the cache does not hold)."""
        watched = self._watched.get(job_id)
        if watched is not None and watched.verdict is not None and watched.assessed_version is not None:
            return watched.verdict
        if watched is None:
            stored, _ = await self.cache.watch_state(self.profile.name, job_id)
            verdict = _verdict_of(stored)
            if verdict is not None:
                return verdict
        # Never worked out, or its checkpoints changed since: work it out now.
        job = await self.cached_job(job_id)
        if job is None:
            return watched.verdict if watched is not None else None
        async with self._assessing:
            await self._assess_now(job, (), alert=not job.is_terminal, seed=True)
        return self._watched[job_id].verdict

    # -- connection --------------------------------------------------------------------

    @property
    def api_requests(self) -> int:
        """API calls made since connecting."""
        return self._api.requests if self._api else 0

    @property
    def is_connected(self) -> bool:
        return self._api is not None

    async def connect(self) -> None:
        """Build the SDK client (and start the local backend for a local profile).

        Runs its slow parts (importing `openai`, starting the backend) in a thread so the
        UI keeps drawing. Failures become a `ConnectionChanged("error", ...)`, not exceptions.
        """
        if self._api is not None:
            return
        question = self.consent_question()
        if question is not None:  # a built-in profile's key goes nowhere before the user agrees
            self._set_connection("consent", question)
            return
        self._set_connection("connecting", self.profile.describe())
        try:
            api = await asyncio.to_thread(self._build_api)
        except ApiError as exc:
            self._set_connection("error", exc.message)
            return
        if self._closed:
            await api.close()
            return
        self._api = api
        self._set_connection("online", self.profile.describe())

    def consent_question(self) -> str | None:
        """What to ask before this profile sends its key (None: nothing to ask)."""
        from .consent import needs_consent

        return needs_consent(self.profile, self._paths) if self._paths is not None else None

    async def give_consent_and_connect(self) -> None:
        """The user agreed to send this built-in profile's key: remember it, then connect."""
        from .consent import give_consent

        if self._paths is not None:
            await asyncio.to_thread(give_consent, self.profile, self._paths)
        await self.connect()

    def _build_api(self) -> Api:
        from .api import build_client

        if self.profile.backend != "local":
            return Api(build_client(self.profile))
        if self._local is not None:
            return Api(build_client(self.profile, base_url=self._local.base_url, api_key=self._local.api_key))
        endpoint = self._find_or_start_local_backend()
        self.local_endpoint = endpoint
        return Api(build_client(self.profile, base_url=endpoint.base_url, api_key=endpoint.api_key))

    def _find_or_start_local_backend(self) -> LocalEndpoint:
        """The background service of this profile: found, or started (it outlives the app)."""
        from tunedeck.backend import ApiKeyFileError, DaemonError

        from .local_service import find_or_start

        if self._paths is None:
            raise ApiError("config", "the local backend needs a data directory")
        try:
            return find_or_start(self._paths, self.profile)
        except DaemonError as exc:
            raise ApiError("connection", f"cannot start the local backend: {exc}") from None
        except ApiKeyFileError as exc:
            raise ApiError("config", str(exc)) from None
        except OSError as exc:
            raise ApiError("connection", f"cannot start the local backend: {exc.strerror or exc}") from None

    async def _revive_local_backend(self, failed: Api) -> bool:
        """After a connection failure on a local profile: when the service we talked to is
        gone (stopped, crashed), take its data directory over: find the one now serving it
        or start one, and switch to it. True when the service now answers somewhere new."""
        if self.profile.backend != "local" or self._local is not None or self._paths is None:
            return False
        if not self._reviving.locked():
            self._set_connection("connecting", "the local backend does not answer; looking for it")
        async with self._reviving:
            if self._closed:
                return False
            if self._api is not failed:  # another call revived it meanwhile
                return self._api is not None
            before = self.local_endpoint
            try:
                endpoint = await asyncio.to_thread(self._find_or_start_local_backend)
            except ApiError:
                return False
            if before is not None and (endpoint.base_url, endpoint.pid) == (before.base_url, before.pid):
                return False  # the same service, alive: a passing failure, not a restart
            from .api import build_client

            api = Api(build_client(self.profile, base_url=endpoint.base_url, api_key=endpoint.api_key))
            api.requests = failed.requests
            self._api, self.local_endpoint = api, endpoint
            await failed.close()
        how = "started it again" if endpoint.started else "found it"
        self._set_connection("online", f"reconnected: the local backend had stopped; {how} at {endpoint.base_url}")
        return True

    async def close(self) -> None:
        # A local backend service is left running: its jobs train on without the app.
        self._closed = True
        self._local = None
        if self._api is not None:
            await self._api.close()
            self._api = None
        await self.cache.close()

    def _require_api(self) -> Api:
        if self._api is None:
            raise ServiceError(f"not connected to {self.profile.describe()}")
        return self._api

    async def _call(self, coro_factory: Callable[[Api], Any]) -> Any:
        """Run one API call; connection failures flip the header to `error` and re-raise."""
        api = self._require_api()
        try:
            result = await coro_factory(api)
        except ApiError as exc:
            if exc.kind != "connection":
                raise
            if not await self._revive_local_backend(api):
                self._set_connection("error", exc.message)
                raise
            result = await coro_factory(self._require_api())  # once, against the revived backend
        if self.connection.state != "online":
            self._set_connection("online", self.profile.describe())
        return result

    # -- jobs ------------------------------------------------------------------------------

    async def refresh_jobs(self, limit: int = 20) -> list[Job]:
        """Fetch the newest `limit` jobs into the cache; return them, newest first.

        Nothing is read back nor announced: the poller reads the cached rows once, after
        the events are stored too, and publishes them (progress columns never lag a poll).
        """
        jobs, _ = await self._call(lambda api: api.list_jobs(limit=limit))
        await self._store_jobs(jobs)
        return [Job.from_api(data) for data in jobs]

    async def _store_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Cache fresh job states, but hold back a cached unfinished job's move into a final
        state: `follow` stores that once the job's last events are cached too. Otherwise a
        poll cut short between the list and the events (a failure, the app quitting) leaves
        a finished job whose last events no later poll would fetch."""
        await self.cache.upsert_jobs(self.profile.name, jobs, hold_finishing=True, fetched_at=self.clock())
        for data in jobs:
            job = Job.from_api(data)
            self._missing.discard(job.id)  # the API has it (again)
            before = self._statuses.get(job.id)
            if job.is_terminal and before is not None and before not in TERMINAL_STATUSES:
                continue  # held back: `follow` stores it, and tells it, with the last events
            self._status_stored(job)

    def _status_stored(self, job: Job) -> None:
        """The cache now holds `job` in its status: tell a change from the status it held."""
        before = self._statuses.get(job.id)
        self._statuses[job.id] = job.status
        if before is None or before == job.status or job.status not in ALERT_STATUSES:
            return
        self.publish(_status_alert(job))

    async def refresh_all_jobs(self, max_pages: int = JOBS_MAX_PAGES) -> list[JobRow]:
        """Walk every page of the job list (the CLI's `jobs list`).

        A list whose paging never ends is cut short and a `PollError` (kind "paging") says so.
        """
        api = self._require_api()
        walk = CursorWalk("the job list", max_pages)
        jobs = [job async for job in api.iter_jobs(walk=walk)]
        await self._store_jobs(jobs)
        if walk.warning and api.first_warning(walk.what):
            self.publish(PollError(walk.warning, "paging"))
        cached = {row.job.id: row for row in await self.cached_rows()}
        # As listed, newest first; a job held back in the cache (finishing) shows as listed.
        return [_listed_row(Job.from_api(j), cached.get(j["id"])) for j in jobs]

    async def refresh_job(self, job_id: str) -> Job:
        data = await self._call(lambda api: api.retrieve_job(job_id))
        await self._store_jobs([data])
        return Job.from_api(data)

    async def sync_events(self, job_id: str, max_pages: int = EVENTS_MAX_PAGES) -> list[JobEvent]:
        """Fetch events newer than the newest cached one; return them oldest first.

        Events come newest first and `after` walks backward, so read pages until the
        newest known id shows up (or the history ends), then store them reversed. Paging
        that never ends is cut short, what came is kept, and a `PollError` (kind "paging")
        says so, once per connection.
        """
        lock = self._syncing.setdefault(job_id, asyncio.Lock())
        # Two follows of one job at once (a poll, a pause's): the second starts from where the
        # first ended; else a slower first would move the remembered newest id back and the
        # next sync fetch (and announce) again what the second stored.
        async with lock:
            return await self._sync_events(job_id, max_pages)

    async def _sync_events(self, job_id: str, max_pages: int) -> list[JobEvent]:
        known = await self._newest_event_id(job_id)
        walk = CursorWalk(f"events of {job_id}", max_pages)
        fresh: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await self._call(lambda api, after=after: api.events_page(job_id, after=after))
            reached_known = False
            for event in walk.unseen(page.data):
                if event["id"] == known:
                    reached_known = True
                    break
                fresh.append(event)
            after = None if reached_known else walk.after(page.data, page.has_more)
            if after is None:
                break
        if walk.warning and self._require_api().first_warning(walk.what):
            self.publish(PollError(walk.warning, "paging"))
        fresh.reverse()
        generation = self.cache.generation
        await self.cache.add_events(self.profile.name, job_id, fresh)
        if fresh and generation == self.cache.generation:
            self._newest_event[job_id] = fresh[-1]["id"]
        return [JobEvent.from_api(job_id, e) for e in fresh]

    async def _newest_event_id(self, job_id: str) -> str | None:
        """The newest cached event of a job: read from the cache once, then remembered (a
        replaced cache file forgets it all: its events are fetched again)."""
        if self._cache_generation != self.cache.generation:
            self._newest_event.clear()
            self._cache_generation = self.cache.generation
        if job_id not in self._newest_event:
            self._newest_event[job_id] = await self.cache.newest_event_id(self.profile.name, job_id)
        return self._newest_event[job_id]

    async def follow(self, job_id: str, known: Job | None = None) -> list[JobEvent]:
        """Sync one job's events (and its state, unless `known` is fresh); announce what is new.

        The job's verdict is worked out again from the new metrics (or its end) and stored;
        an overfitting alert is news while the job runs or as it ends, not after."""
        job = known or await self.refresh_job(job_id)
        events = await self.sync_events(job_id)
        before = self._statuses.get(job_id)
        ending = job.is_terminal and before is not None and before not in TERMINAL_STATUSES
        if job.is_terminal:  # its final state, held back until now that its last events are in
            await self.cache.upsert_jobs(self.profile.name, [job.raw], fetched_at=self.clock())
            self._status_stored(job)
        await self._assess(job, events, alert=not job.is_terminal or ending)
        if events:
            self.publish(EventsAdded(job, events))
        return events

    # -- watching: the verdict, alerts, the budget -------------------------------------------

    async def _watch_state(self, job_id: str) -> _Watched:
        watched = self._watched.get(job_id)
        if watched is None:  # once per job: its cached metrics and the verdict stored for it
            events, stored = await self.cache.watch_seed(self.profile.name, job_id)
            # A long job's metrics take seconds to build (3 s at 100k steps): not on the loop.
            series = await asyncio.to_thread(_series_of, job_id, events)
            watched = self._watched.setdefault(job_id, _Watched(series, _verdict_of(stored)))
        return watched

    async def _assess(self, job: Job, events: Sequence[JobEvent], *, alert: bool = True) -> None:
        """Work the job's verdict out again when its metrics changed or it finished; store a
        new one, and alert (when `alert`) when it newly says overfitting."""
        async with self._assessing:  # a poll and a pause/cancel may follow a job at once
            await self._assess_now(job, events, alert=alert)

    async def _assess_now(
        self, job: Job, events: Sequence[JobEvent], *, alert: bool = True, seed: bool = False
    ) -> None:
        """`seed`: read the job's metrics even when nothing new came (a verdict asked for, the
        checkpoints it may name changed)."""
        watched = self._watched.get(job.id)
        seeded = watched is None
        if watched is None:
            if not events and not job.is_terminal and not seed:
                return  # nothing new to learn: no need to read its metrics yet
            watched = await self._watch_state(job.id)
        watched.series.add_events(events)
        # A job first seen finished with no verdict stored (cached before verdicts were, or it
        # ended unwatched): its verdict is history, not news.
        if seeded and watched.verdict is None and job.is_terminal:
            alert = False
        series = watched.series
        if watched.assessed_version == series.version and watched.assessed_finished == job.is_terminal:
            return
        version = series.version
        from .watch.overfit import assess  # the rule loads when a job is first judged, not at start

        judge = functools.partial(
            assess,
            series,
            method=job.method,
            n_epochs=_n_epochs(job),
            checkpoint_steps=self._checkpoint_steps.get(job.id),
            finished=job.is_terminal,
            has_validation_file=bool(job.validation_file),
        )
        # A few ms for a usual job; a long one (0.15 s at 100k steps) is judged in a thread so
        # the loop the app draws on never waits on it.
        verdict = await asyncio.to_thread(judge) if len(series) > ASSESS_IN_THREAD_FROM else judge()
        watched.assessed_version, watched.assessed_finished = version, job.is_terminal
        if verdict == watched.verdict:
            return
        before, watched.verdict = watched.verdict, verdict
        await self.cache.set_verdict(self.profile.name, job.id, verdict.to_json())
        if alert and verdict.alarm and not (before is not None and before.alarm):
            self.publish(JobAlert(job.id, "overfitting", f"{job.id} is overfitting", verdict.advice, "warning"))

    async def check_budget(self, rows: Sequence[JobRow], now: float) -> float | None:
        """Weigh what the profile's running jobs have spent against its budget (None: no
        budget): a `JobAlert` when it first crosses 80% ("budget_warn") and when it reaches
        100%, where `budget_cancel` cancels those jobs ("budget_cancel"). Returns the spend in
        USD (jobs of unknown cost count nothing). Call it after each poll with its rows."""
        budget = self.profile.budget_usd
        if budget is None:
            return None
        from .watch.progress import cost_so_far

        # A paused job trains no more; one the API no longer has is left "running" in the cache.
        running = [
            row
            for row in rows
            if not row.job.is_terminal and row.job.status != "paused" and row.job.id not in self._missing
        ]
        spend = 0.0
        for row in running:
            money = cost_so_far(
                row.job,
                fraction=row.progress,
                estimated_tokens=row.estimated_tokens,
                local=self.profile.backend == "local",
                now=now,
            )
            spend += money.usd or 0.0
        level = 2 if spend >= budget else 1 if spend >= budget * BUDGET_WARN_FRACTION else 0
        before, self._budget_level = self._budget_level, level
        figures = f"running jobs have spent ${spend:,.2f} of the profile's ${budget:,.2f} budget"
        if level < 2:
            self._budget_cancel_failed = False
        elif before == 2 and self._budget_cancel_failed and self.profile.budget_cancel:
            # Still at the budget after a cancel failed: the jobs still spend, so try again.
            await self._retry_budget_cancel(running, figures)
            return spend
        if level <= before:  # told already, or back under: a later crossing is news again
            return spend
        if level == 2 and self.profile.budget_cancel:
            await self._cancel_for_budget(running, figures)
        elif level == 2:
            self.publish(JobAlert("", "budget_warn", "Budget reached", f"{figures} (budget_cancel is off)", "warning"))
        else:
            self.publish(JobAlert("", "budget_warn", "80% of the budget spent", figures, "warning"))
        return spend

    async def _cancel_for_budget(self, running: Iterable[JobRow], figures: str) -> None:
        cancelled, failed = await self._cancel_all(running)
        self._budget_cancel_failed = bool(failed)
        message = f"{figures}; cancelled {', '.join(cancelled) or 'nothing'}"
        title = "Budget reached: jobs cancelled"
        if failed:
            message += "; could not cancel " + "; ".join(failed) + " (trying again at each poll)"
            title = "Budget reached: a cancel failed"
        self.publish(JobAlert("", "budget_cancel", title, message, "error"))

    async def _retry_budget_cancel(self, running: Iterable[JobRow], figures: str) -> None:
        """Cancel the jobs still running after a budget cancel failed; told once, when it works
        (the failure was told already)."""
        cancelled, failed = await self._cancel_all(running)
        if failed:
            return
        self._budget_cancel_failed = False
        message = f"{figures}; cancelled {', '.join(cancelled) or 'nothing'} on a retry"
        self.publish(JobAlert("", "budget_cancel", "Budget reached: jobs cancelled", message, "error"))

    async def _cancel_all(self, running: Iterable[JobRow]) -> tuple[list[str], list[str]]:
        """(ids cancelled, "id: why" of those that could not be)."""
        cancelled, failed = [], []
        for row in running:
            try:
                await self.cancel(row.job.id)
            except (ApiError, ServiceError) as exc:
                failed.append(f"{row.job.id}: {exc}")
            else:
                cancelled.append(row.job.id)
        return cancelled, failed

    async def preflight(
        self,
        request: LaunchRequest,
        model: ModelChoice | None = None,
        *,
        look_up_model: bool = True,
        cancel: threading.Event | None = None,
    ) -> CheckedLaunch:
        """Everything about a launch before anything is spent (`launch/preflight.py`), run in
        a thread: the validator reads whole files. `model` is the chosen model as listed
        (its retirement date); without it the list is asked for when connected, unless
        `look_up_model` is False (what it adds are warnings, which never block)."""
        from .launch.launching import CheckedLaunch, request_files, stamps_of
        from .launch.preflight import build_preflight

        for role, path in request_files(request):
            _check_readable(path, f"{role} file")
        if model is None and look_up_model and self.is_connected:
            try:
                model = next((c for c in await self.model_choices() if c.id == request.model), None)
            except (ApiError, ServiceError):
                model = None  # the pre-flight says what it could not learn
        model_info = {"shutdown_date": model.shutdown_date, "fine_tunable": model.fine_tunable} if model else None
        try:
            stamps = stamps_of(request)
        except OSError as exc:
            raise ServiceError(f"{exc.filename}: {exc.strerror or exc}", "preflight") from None
        checked = await asyncio.to_thread(
            build_preflight,
            request,
            local=self.takes_tunedeck_options,
            model_info=model_info,
            today=datetime.date.today(),
            cancel=cancel,
        )
        await self._check_file_ids(request, checked)
        return CheckedLaunch(request, checked, stamps)

    async def _check_file_ids(self, request: LaunchRequest, checked: Preflight) -> None:
        """A file given by id must exist on the provider: a missing one blocks (when connected;
        offline the launch finds out)."""
        if not self.is_connected:
            return
        for role, file_id in (("training", request.training_file_id), ("validation", request.validation_file_id)):
            if not file_id:
                continue
            try:
                await self._call(lambda api, file_id=file_id: api.retrieve_file(file_id))
            except ApiError as exc:
                if exc.kind != "not_found":
                    checked.warnings.append(f"the {role} file {file_id} could not be looked up: {exc.message}")
                    continue
                checked.blocking.append(f"the {role} file {file_id} does not exist on {self.profile.describe()}")

    async def launch(
        self,
        launch: LaunchRequest | CheckedLaunch,
        *,
        progress: Callable[[LaunchProgress], None] | None = None,
        cancel: asyncio.Event | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> Job:
        """Upload the file(s) and create a job. A bare request is checked first; a checked
        one must still pass and its files be unchanged since. Errors name the file or field.

        Files go up once (an identical one already on this profile is reused; a big one in
        parts that resume, `launch/uploads.py`). The create is never duplicated: when its
        answer is lost, the job is looked for by its launch tag before it is sent again
        (`job_create.py`; `sleep` paces that, tests drive it).
        """
        # Imported here: the service opens before the app's first frame, launching is later.
        from .job_create import CreateUncertain, create_job_once
        from .launch.launching import CheckedLaunch, LaunchProgress

        if isinstance(launch, CheckedLaunch):
            checked = launch
        else:
            checked = await self.preflight(launch, look_up_model=False)
        request = checked.request
        if not checked.preflight.ok:
            raise ServiceError("the pre-flight blocks this launch: " + "; ".join(checked.preflight.blocking), "preflight")
        changed = checked.changed_files()
        if changed:
            names = ", ".join(str(p) for p in changed)
            raise ServiceError(f"{names} changed since the pre-flight checked it: check it again", "preflight")
        training = await self._file_for(request.training_path, request.training_file_id, "training", progress, cancel)
        validation = None
        if request.validation_path is not None or request.validation_file_id:
            validation = await self._file_for(
                request.validation_path, request.validation_file_id, "validation", progress, cancel
            )
        # Uploads take minutes: a file edited meanwhile (one not being sent) is caught here.
        changed = checked.changed_files()
        if changed:
            names = ", ".join(str(p) for p in changed)
            raise ServiceError(f"{names} changed while the launch uploaded: check it again", "preflight")
        if cancel is not None and cancel.is_set():
            raise ServiceError("the launch was cancelled before the job was created", "cancelled")
        if progress is not None:
            progress(LaunchProgress("job"))
        body = request.body(training, validation, launch_tag=checked.launch_tag)
        try:
            created = await self._call(lambda a: create_job_once(a, body, sleep=sleep))
        except CreateUncertain as exc:
            raise ServiceError(str(exc)) from None
        await self.cache.upsert_jobs(self.profile.name, [created.job], fetched_at=self.clock())
        self._statuses[created.job["id"]] = str(created.job.get("status"))
        estimate = checked.preflight.trained_tokens
        if estimate is not None:  # what the job's spend is worked out from until it reports trained tokens
            await self.cache.set_estimated_tokens(self.profile.name, created.job["id"], estimate)
        self.publish(JobsChanged(await self.cached_rows()))
        if created.note:
            self.publish(Notice(created.note, "launch"))
        return Job.from_api(created.job)

    async def _file_for(
        self,
        path: Path | None,
        file_id: str | None,
        role: str,
        progress: Callable[[LaunchProgress], None] | None,
        cancel: asyncio.Event | None,
    ) -> str:
        """The id of the file to train on: the given one (checked to exist), or `path` uploaded."""
        from .launch.launching import LaunchProgress
        from .launch.uploads import FileChanged, UploadCancelled, upload_for_training

        if cancel is not None and cancel.is_set():
            raise ServiceError("the launch was cancelled; nothing was created", "cancelled")
        if path is None:
            assert file_id is not None
            try:
                await self._call(lambda a: a.retrieve_file(file_id))
            except ApiError as exc:
                if exc.kind == "not_found":
                    raise ServiceError(f"{role} file {file_id}: no such file on {self.profile.describe()}") from None
                raise
            return file_id
        _check_readable(path, f"{role} file")
        report = (lambda p: progress(LaunchProgress(role, p))) if progress is not None else None
        sizes = {}
        if self.upload_sizes is not None:
            sizes = {"multipart_threshold": self.upload_sizes[0], "part_size": self.upload_sizes[1]}
        try:
            result = await self._call(
                lambda a: upload_for_training(
                    a, self.cache, self.profile.name, path, progress=report, cancel=cancel, **sizes
                )
            )
        except UploadCancelled:
            raise ServiceError("the upload was cancelled; nothing was created", "cancelled") from None
        except FileChanged as exc:
            raise ServiceError(str(exc), "preflight") from None
        if result.note:
            self.publish(Notice(f"{role} file: {result.note}", "upload"))
        await self._remember_dataset(path)
        return result.file["id"]

    async def _remember_dataset(self, path: Path) -> None:
        """A file trained on joins the recent datasets: the launch form offers it again, and an
        evaluation of the job finds its validation file here rather than downloading it (which
        some providers refuse for fine-tuning files)."""
        from .cachefile import CacheError
        from .recent import remember_file

        try:
            await remember_file(self.cache, path)
        except CacheError:
            pass  # a convenience: never fail a launch on it

    async def cancel(self, job_id: str) -> Job:
        return await self._acted(await self._call(lambda api: api.cancel_job(job_id)))

    async def pause(self, job_id: str) -> Job:
        """Pause a running job (the provider saves a checkpoint first); its new state."""
        return await self._acted(await self._call(lambda api: api.pause_job(job_id)))

    async def resume(self, job_id: str) -> Job:
        """Resume a paused job (it queues, then trains on from where it stopped); its new state."""
        return await self._acted(await self._call(lambda api: api.resume_job(job_id)))

    async def _acted(self, data: dict[str, Any]) -> Job:
        """Store the state an action answered, follow the job's events, tell listeners.

        The user asked for this state and the front end answers the action itself: the move
        into it is no alert (a later move, e.g. resumed to running, is)."""
        job = Job.from_api(data)
        self._statuses[job.id] = job.status
        await self._store_jobs([data])
        try:  # its last events, then its final state (the next poll does it if this fails)
            await self.follow(job.id, known=job)
        except ApiError:
            pass
        self.publish(JobsChanged(await self.cached_rows()))
        return job

    async def checkpoints(self, job_id: str) -> list[Checkpoint]:
        """A job's checkpoints from the API (every page), cached; newest (highest step) first."""
        walks: list[CursorWalk] = []

        def listing(api: Api) -> Any:
            walks.append(CursorWalk(f"checkpoints of {job_id}", CHECKPOINTS_MAX_PAGES))
            return api.list_checkpoints(job_id, walk=walks[-1])

        found = await self._call(listing)
        walk = walks[-1]
        # A full list replaces the cached one (the provider keeps only some); a cut one adds to it.
        await self.cache.put_checkpoints(self.profile.name, job_id, found, complete=walk.warning is None)
        if walk.warning and self._require_api().first_warning(walk.what):
            self.publish(PollError(walk.warning, "paging"))
        checkpoints = sorted(
            (Checkpoint.from_api(c, job_id) for c in found), key=lambda c: (c.step, c.created_at), reverse=True
        )
        await self._remember_checkpoints(job_id, checkpoints)
        return checkpoints

    async def _remember_checkpoints(self, job_id: str, checkpoints: Sequence[Checkpoint]) -> None:
        """The steps the detector may name as the best one (`overfit.assess`'s checkpoint_steps).

        When they change the verdict is worked out again at once and stored: a finished job
        gets no more events to do it (the provider keeps only some checkpoints, and the
        verdict must name one it kept). That is no news for a finished job: no alert."""
        steps = sorted({c.step for c in checkpoints})
        if steps == self._checkpoint_steps.get(job_id):
            return
        self._checkpoint_steps[job_id] = steps
        watched = self._watched.get(job_id)
        if watched is not None:
            watched.assessed_version = None
        job = await self.cached_job(job_id)
        if job is None:
            return
        async with self._assessing:
            await self._assess_now(job, (), alert=not job.is_terminal, seed=True)

    async def base_models(self) -> list[str]:
        """Models the backend lists, fine-tuned ones included (read, never hard-coded)."""
        return [choice.id for choice in await self.model_choices()]

    async def model_choices(self) -> list[ModelChoice]:
        """The provider's models as the launch form lists them: fine-tunable ones first,
        with retirement dates and (on the local backend) sizes."""
        from .launch.models import model_choices

        choices = model_choices(await self._call(lambda api: api.list_models()))
        self.takes_tunedeck_options = self.profile.backend == "local" or any(c.tunedeck for c in choices)
        return choices

    async def compute(self) -> ComputeView:
        """The backend's training devices and the job holding each; a `ServiceError` for a
        provider that does not report them (only a tunedeck backend does)."""
        from .compute import ComputeView

        try:
            raw = await self._call(lambda api: api.compute())
        except ApiError as exc:
            if exc.kind != "not_found":
                raise
            raise ServiceError(f"{self.profile.name}: this provider does not report its devices (a tunedeck backend does)") from None
        return ComputeView.from_json(raw)

    async def run_grader(self, grader: dict[str, Any], sample: str, item: dict[str, Any]) -> dict[str, Any]:
        """Grade one answer with the provider's `graders/run` (the grader editor's test run)."""
        return await self._call(lambda api: api.run_grader(grader, sample, item))

    @property
    def evaluations(self) -> Evaluations:
        """Evaluating models on a dataset (`evaluate/service.py`): made on first use."""
        if self._evaluations is None:
            from .evaluate.service import Evaluations

            self._evaluations = Evaluations(self)
        return self._evaluations

    @property
    def paths(self) -> AppPaths | None:
        """Where this install keeps its files (presets and saved graders live in the config folder)."""
        return self._paths


def _row(cached: CachedRow) -> JobRow:
    job = Job.from_api(cached.body)
    metrics = cached.metrics or {}
    step, total = _whole(metrics.get("step")), _whole(metrics.get("total_steps"))
    n_epochs = _n_epochs(job)
    epoch = step * n_epochs / total if step is not None and total and n_epochs else None
    return JobRow(
        job,
        step=step,
        total_steps=total,
        verdict=_verdict_of(cached.verdict),
        estimated_tokens=cached.estimated_tokens,
        fetched_at=cached.fetched_at,
        epoch=epoch,
        n_epochs=n_epochs,
    )


def _listed_row(job: Job, cached: JobRow | None) -> JobRow:
    """A job as the list gave it, with what the cache knows of its progress and verdict."""
    if cached is None:
        return JobRow(job, n_epochs=_n_epochs(job))
    return JobRow(
        job,
        step=cached.step,
        total_steps=cached.total_steps,
        verdict=cached.verdict,
        estimated_tokens=cached.estimated_tokens,
        fetched_at=cached.fetched_at,
        epoch=cached.epoch,
        n_epochs=_n_epochs(job),
    )


def _series_of(job_id: str, events: Iterable[dict[str, Any]]) -> MetricSeries:
    """A job's series from its cached metrics events (run in a thread)."""
    from .watch.series import MetricSeries

    return MetricSeries.from_events(JobEvent.from_api(job_id, e) for e in events)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _n_epochs(job: Job) -> int | None:
    """The job's epochs once resolved (`"auto"` until the provider picks a number)."""
    value = job.hyperparameters.get("n_epochs")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _verdict_of(data: dict[str, Any] | None) -> Verdict | None:
    """A stored verdict; one this version cannot read is worked out again from the metrics."""
    if data is None:
        return None
    try:
        return Verdict.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def _status_alert(job: Job) -> JobAlert:
    if job.status == "failed":
        detail = ": ".join(part for part in (job.error_code, job.error_message) if part) or "no reason given"
        return JobAlert(job.id, "failed", f"{job.id} failed", detail, "error")
    if job.status == "succeeded":
        detail = f"fine-tuned model {job.fine_tuned_model}" if job.fine_tuned_model else "finished"
        return JobAlert(job.id, "status", f"{job.id} succeeded", detail, "information")
    severity = "warning" if job.status == "cancelled" else "information"
    return JobAlert(job.id, "status", f"{job.id} {job.status}", f"{job.model} ({job.method_label})", severity)


def _check_readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise ServiceError(f"{what} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ServiceError(f"{what} {path}: cannot read ({exc.strerror})") from None
