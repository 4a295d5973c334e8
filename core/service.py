"""The one async API every front end uses (the TUI and the headless CLI).

Data flows one way: API -> cache -> listeners. Every read a screen needs is answered from
the cache first; network calls update the cache and then tell listeners what changed,
through `publish()` (the poller in `poller.py` publishes its polls there too). Nothing
here imports Textual, and `openai` is only imported by `connect()`, off the event loop's
thread.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .api import Api, ApiError
from .cache import Cache
from .config import Profile
from .paging import EVENTS_MAX_PAGES, JOBS_MAX_PAGES, CursorWalk
from .records import Job, JobEvent, JobRow

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.backend import LocalBackend

    from .job_create import Sleep
    from .launch.launching import CheckedLaunch, LaunchProgress
    from .launch.models import ModelChoice
    from .launch.preflight import Preflight
    from .launch.request import LaunchRequest
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
    """A user-facing failure with a message that says what to do; `kind` says what sort
    ("preflight": the request or its files would be refused; "cancelled"; "" otherwise)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


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
        self.takes_tunedeck_options = profile.backend == "local"
        """The server accepts tunedeck's own job options (`tunedeck` field): the local
        backend, or a compatible profile whose model list shows a tunedeck backend."""
        self.upload_sizes: tuple[int, int] | None = None
        """(multipart threshold, part size) in bytes for uploads; None: the API's (64 MB
        each). Tests set small ones to send a few KB in parts."""
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
        await self.cache.upsert_jobs(self.profile.name, [created.job])
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
        return result.file["id"]

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
        return [choice.id for choice in await self.model_choices()]

    async def model_choices(self) -> list[ModelChoice]:
        """The provider's models as the launch form lists them: fine-tunable ones first,
        with retirement dates and (on the local backend) sizes."""
        from .launch.models import model_choices

        choices = model_choices(await self._call(lambda api: api.list_models()))
        self.takes_tunedeck_options = self.profile.backend == "local" or any(c.tunedeck for c in choices)
        return choices

    async def run_grader(self, grader: dict[str, Any], sample: str, item: dict[str, Any]) -> dict[str, Any]:
        """Grade one answer with the provider's `graders/run` (the grader editor's test run)."""
        return await self._call(lambda api: api.run_grader(grader, sample, item))

    @property
    def paths(self) -> AppPaths | None:
        """Where this install keeps its files (presets and saved graders live in the config folder)."""
        return self._paths


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
