"""The one async API every front end uses (the TUI and the headless CLI).

Data flows one way: API -> cache -> listeners. Every read a screen needs is answered from
the cache first; network calls update the cache and then tell listeners what changed,
through `publish()` (the poller in `poller.py` publishes its polls there too). Nothing
here imports Textual, and `openai` is only imported by `connect()`, off the event loop's
thread.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .api import Api, ApiError
from .cache import Cache
from .config import Profile
from .job_create import LAUNCH_TAG, CreateUncertain, Sleep, create_job_once
from .paging import EVENTS_MAX_PAGES, JOBS_MAX_PAGES, CursorWalk
from .records import Job, JobEvent, JobRow

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.backend import LocalBackend

    from .local_service import LocalEndpoint
    from .paths import AppPaths


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


ServiceEvent = JobsChanged | EventsAdded | ConnectionChanged | JobMissing | PollError | Notice
Listener = Callable[[ServiceEvent], None]


class ServiceError(Exception):
    """A user-facing failure with a message that says what to do."""


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    training_path: Path
    model: str
    method: str = "supervised"
    validation_path: Path | None = None
    suffix: str | None = None
    n_epochs: int | str = "auto"
    metadata: dict[str, str] = field(default_factory=dict)
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"
    # tunedeck's own options for the local backend's transformer trainer (`training_type`,
    # `lora_rank`...): sent as the request's `tunedeck` field, only when given, since other
    # providers refuse fields they do not know.
    options: dict[str, Any] = field(default_factory=dict)


class Service:
    """State for one profile: its cache rows, its API connection, its listeners."""

    def __init__(
        self,
        profile: Profile,
        cache: Cache,
        paths: AppPaths | None = None,
        *,
        local_backend: LocalBackend | None = None,
    ) -> None:
        self.profile = profile
        self.cache = cache
        self._paths = paths
        self._local = local_backend  # an in-process backend (tests, embedding); else a background service
        self.local_endpoint: LocalEndpoint | None = None  # the background service this service talks to
        self._reviving = asyncio.Lock()
        self._closed = False
        self._api: Api | None = None
        self._listeners: list[Listener] = []
        self.connection = ConnectionChanged("offline", "showing cached data")
        # Damage found after opening is announced; a note from the opening itself is read by
        # the front ends from `cache.recovery_note` once they listen.
        cache.on_recovery = lambda note: self.publish(Notice(note, "cache"))

    # -- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, event: ServiceEvent) -> None:
        """Tell every listener: the one way events leave the core (the poller publishes here too)."""
        for listener in list(self._listeners):
            listener(event)

    def _set_connection(self, state: str, detail: str = "") -> None:
        self.connection = ConnectionChanged(state, detail)
        self.publish(self.connection)

    # -- cached reads (no network) -----------------------------------------------------

    async def cached_rows(self) -> list[JobRow]:
        jobs = await self.cache.jobs(self.profile.name)
        metrics = await self.cache.latest_metrics(self.profile.name)
        return [_row(Job.from_api(j), metrics.get(j["id"])) for j in jobs]

    async def cached_job(self, job_id: str) -> Job | None:
        data = await self.cache.job(self.profile.name, job_id)
        return Job.from_api(data) if data else None

    async def cached_events(self, job_id: str) -> list[JobEvent]:
        """All cached events of a job, oldest first."""
        return [JobEvent.from_api(job_id, e) for e in await self.cache.events(self.profile.name, job_id)]

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
        await self.cache.upsert_jobs(self.profile.name, jobs, hold_finishing=True)

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
        metrics = await self.cache.latest_metrics(self.profile.name)
        return [_row(Job.from_api(j), metrics.get(j["id"])) for j in jobs]  # as listed, newest first

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
        known = await self.cache.newest_event_id(self.profile.name, job_id)
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
        await self.cache.add_events(self.profile.name, job_id, fresh)
        return [JobEvent.from_api(job_id, e) for e in fresh]

    async def follow(self, job_id: str, known: Job | None = None) -> list[JobEvent]:
        """Sync one job's events (and its state, unless `known` is fresh); announce what is new."""
        job = known or await self.refresh_job(job_id)
        events = await self.sync_events(job_id)
        if job.is_terminal:  # its final state, held back until now that its last events are in
            await self.cache.upsert_jobs(self.profile.name, [job.raw])
        if events:
            self.publish(EventsAdded(job, events))
        return events

    async def launch(self, request: LaunchRequest, *, sleep: Sleep = asyncio.sleep) -> Job:
        """Upload the file(s) and create a job. Errors name the file or the field.

        The create is never duplicated: when its answer is lost, the job is looked for by its
        launch tag before it is sent again (`job_create.py`; `sleep` paces that, tests drive it).
        """
        _check_readable(request.training_path, "training file")
        if request.validation_path is not None:
            _check_readable(request.validation_path, "validation file")
        training = await self._call(lambda a: a.upload_training_file(request.training_path))
        validation = (
            await self._call(lambda a: a.upload_training_file(request.validation_path))
            if request.validation_path
            else None
        )
        body = _job_body(request, training["id"], validation["id"] if validation else None)
        try:
            created = await self._call(lambda a: create_job_once(a, body, sleep=sleep))
        except CreateUncertain as exc:
            raise ServiceError(str(exc)) from None
        await self.cache.upsert_jobs(self.profile.name, [created.job])
        self.publish(JobsChanged(await self.cached_rows()))
        if created.note:
            self.publish(Notice(created.note, "launch"))
        return Job.from_api(created.job)

    async def cancel(self, job_id: str) -> Job:
        data = await self._call(lambda api: api.cancel_job(job_id))
        await self._store_jobs([data])
        try:  # its last events, then its final state (the next poll does it if this fails)
            await self.follow(job_id, known=Job.from_api(data))
        except ApiError:
            pass
        self.publish(JobsChanged(await self.cached_rows()))
        return Job.from_api(data)

    async def base_models(self) -> list[str]:
        """Models the backend lists, fine-tuned ones included (read, never hard-coded)."""
        return await self._call(lambda api: api.list_model_ids())


def _row(job: Job, metrics: dict[str, Any] | None) -> JobRow:
    if not metrics:
        return JobRow(job)
    return JobRow(job, step=metrics.get("step"), total_steps=metrics.get("total_steps"))


def _check_readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise ServiceError(f"{what} {path}: no such file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ServiceError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _job_body(request: LaunchRequest, training_id: str, validation_id: str | None) -> dict[str, Any]:
    hyper: dict[str, Any] = {
        "n_epochs": request.n_epochs,
        "batch_size": request.batch_size,
        "learning_rate_multiplier": request.learning_rate_multiplier,
    }
    body: dict[str, Any] = {
        "model": request.model,
        "training_file": training_id,
        "method": {"type": request.method, request.method: {"hyperparameters": hyper}},
        # A tag of our own, so a create whose answer was lost can be found again by listing
        # (and its idempotency key); last, so the request's own metadata cannot replace it.
        "metadata": {**request.metadata, LAUNCH_TAG: uuid.uuid4().hex[:16]},
    }
    if validation_id:
        body["validation_file"] = validation_id
    if request.suffix:
        body["suffix"] = request.suffix
    if request.options:
        body["extra_body"] = {"tunedeck": dict(request.options)}
    return body
