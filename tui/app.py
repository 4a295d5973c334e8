"""The tunedeck app: state in one place, workers that post messages, screens that show them.

Start-up order (the first frame never waits for the network or the SDK):

1. mount: open the service (cache only, a few ms) so the first frame already shows the
   cached rows; a cache slower than FIRST_FRAME_WAIT_S is left to the start-up worker;
2. compose: the Jobs screen with its header, drawn at once;
3. after the first frame (`Ready`): connect (imports `openai`, starts the local backend);
4. a poll loop worker refreshes at the poller's pace; `r` wakes it at once.

Workers never touch widgets: they post messages from `messages.py`; the handlers here
update the state (`rows`, connection, profile) and announce it through signals that the
screens subscribe to.
"""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal

from .messages import (
    CancelFailed,
    ConnectionUpdated,
    EventsArrived,
    JobCancelled,
    JobLaunched,
    JobNotFound,
    JobsLoaded,
    LaunchFailed,
    ModelsLoaded,
    PollFailed,
    ServiceFailed,
    ServiceOpened,
)
from .safe_text import clean
from .screens.jobs import JobsScreen
from .service_actions import ServiceActions

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.records import JobRow
    from tunedeck.core.service import Service, ServiceEvent

ServiceFactory = Callable[[], Awaitable["Service"]]

FIRST_FRAME_WAIT_S = 0.25
"""How long the first frame may wait for the cache (normally a few ms)."""


def default_service_factory(profile: str | None = None) -> ServiceFactory:
    """Open the user's profile from their config (imports the core lazily)."""

    async def factory() -> Service:
        from tunedeck.core.bootstrap import open_service  # the cache layer: ~20 ms of imports

        return await open_service(profile)

    return factory


class TunedeckApp(ServiceActions, App[int]):
    """The full-screen app.

    Args:
        service_factory: async callable returning a not-yet-connected `Service`; the app
            owns the service from then on and closes it on exit. Default: the user's config.
        profile: profile name for the default factory.
        poll: run the poll loop. Tests pass False and call `await app.poll_now()`.
        connect: connect after the first frame. False keeps the app on cached data only.
    """

    TITLE = "tunedeck"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit tunedeck"),
        Binding("question_mark", "help", "Keys", id="app.help", tooltip="The keys that work here"),
        Binding("f1", "help", "Keys", show=False, id="app.help_f1"),
        Binding("r", "refresh", "Refresh", id="app.refresh", tooltip="Refresh from the API now"),
        Binding("p", "switch_profile", "Profile", id="app.profile", tooltip="Switch to the next profile"),
        Binding("d", "datasets", "Datasets", id="app.datasets", tooltip="Browse a dataset file before training on it"),
    ]

    def __init__(
        self,
        service_factory: ServiceFactory | None = None,
        *,
        profile: str | None = None,
        poll: bool = True,
        connect: bool = True,
    ) -> None:
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"  # calmer, and cheaper over SSH
        self._service_factory = service_factory or default_service_factory(profile)
        self._poll_enabled = poll
        self._connect_enabled = connect

        # -- the state, in one place --------------------------------------------------
        self.service: Service | None = None
        self.poller: JobPoller | None = None
        self.rows: list[JobRow] = []
        self.rows_source: str | None = None
        """None until the cache answered; then "cache" or "api"."""
        self.profile_name = ""
        self.profile_detail = ""
        self.connection_state = "offline"
        self.connection_detail = "opening cache"
        self.models: list[str] | None = None
        self.current_job_id: str | None = None
        """The job last opened or launched: the Jobs screen puts its cursor there."""
        self.notice: str | None = None
        """A calm note for the Jobs screen (e.g. the endpoint offers no fine-tuning)."""

        # -- announcements screens subscribe to ---------------------------------------
        self.state_signal: Signal[None] = Signal(self, "state")
        self.jobs_signal: Signal[list[JobRow]] = Signal(self, "jobs")
        self.events_signal: Signal[EventsArrived] = Signal(self, "events")
        self.missing_signal: Signal[JobNotFound] = Signal(self, "missing")
        self.models_signal: Signal[ModelsLoaded] = Signal(self, "models")
        self.launch_signal: Signal[JobLaunched | LaunchFailed] = Signal(self, "launch")

        self._first_frame = asyncio.Event()
        self._poll_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._watched: set[str] = set()
        self._last_poll_error: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._opened: Service | None = None
        self._poll_waiters: list[asyncio.Future[None]] = []
        self.polls = 0
        """Polls finished (successful or not)."""

    def get_default_screen(self) -> JobsScreen:
        return JobsScreen()

    # -- start-up ---------------------------------------------------------------------------

    async def on_mount(self) -> None:
        # Open the cache now, so cached rows are in the first frame; but never hold the
        # first frame longer than FIRST_FRAME_WAIT_S for a slow disk: the worker goes on.
        opening = asyncio.ensure_future(self._open_cache())
        done, _ = await asyncio.wait({opening}, timeout=FIRST_FRAME_WAIT_S)
        if done and opening.exception() is None:
            service, poller, rows = opening.result()
            # A handler of the app itself, so it may apply the state directly.
            self.on_service_opened(ServiceOpened(service, poller))
            self.on_jobs_loaded(JobsLoaded(rows, source="cache"))
        self._start_up(opening, applied=bool(done) and opening.exception() is None)

    def on_ready(self) -> None:
        self._first_frame.set()
        # Everything made to start up lives as long as the app: keep it out of the collector's
        # full passes, which otherwise stall the UI (measured: 50 ms pauses -> 15 ms, bench/browse.py).
        gc.freeze()

    async def _open_cache(self) -> tuple[Service, JobPoller, list[JobRow]]:
        service = await self._service_factory()
        self._opened = service  # closed on exit even if the app quits before using it
        from tunedeck.core.poller import JobPoller

        self._unsubscribe = service.subscribe(self._on_service_event)
        return service, JobPoller(service), await service.cached_rows()

    @work(group="startup", exit_on_error=False, description="open the cache, then connect")
    async def _start_up(self, opening: asyncio.Future, applied: bool) -> None:
        try:
            service, poller, rows = await opening
        except Exception as exc:  # a bad config or an unreadable cache: say so, keep running
            self.post_message(ServiceFailed(clean(exc)))
            return
        if not applied:
            self.post_message(ServiceOpened(service, poller))
            self.post_message(JobsLoaded(rows, source="cache"))
        if not self._connect_enabled:
            return
        await self._first_frame.wait()
        await service.connect()
        if service.is_connected and self._poll_enabled:
            self._poll_loop()

    def _on_service_event(self, event: ServiceEvent) -> None:
        """Service listener (called on the event loop): turn core events into messages."""
        from tunedeck.core.service import ConnectionChanged, EventsAdded, JobMissing, JobsChanged

        if isinstance(event, JobsChanged):
            self.post_message(JobsLoaded(event.rows, source="api"))
        elif isinstance(event, EventsAdded):
            self.post_message(EventsArrived(event.job, event.events))
        elif isinstance(event, ConnectionChanged):
            self.post_message(ConnectionUpdated(event.state, event.detail))
        elif isinstance(event, JobMissing):
            self.post_message(JobNotFound(event.job_id, event.detail))

    # -- polling ----------------------------------------------------------------------------

    async def poll_now(self) -> None:
        """One poll: the job list plus events of running and watched jobs.

        Expected failures (API errors) become a `PollFailed` message; the caller goes on.
        """
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service, poller = self.service, self.poller
        if service is None or poller is None or not service.is_connected:
            return
        async with self._poll_lock:
            try:
                await poller.poll_once()
            except ApiError as exc:
                self.post_message(PollFailed(exc.message, exc.kind))
            except ServiceError as exc:
                self.post_message(PollFailed(str(exc)))
            else:
                self._last_poll_error = None
            finally:
                self.polls += 1
                waiters, self._poll_waiters = self._poll_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def next_poll(self) -> None:
        """Wait until the next poll has finished (tests; the poll loop runs on its own)."""
        waiter = asyncio.get_running_loop().create_future()
        self._poll_waiters.append(waiter)
        await waiter

    @work(group="poll", exclusive=True, exit_on_error=False, description="poll the API")
    async def _poll_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.poll_now()
            except Exception as exc:  # never let one bad poll end a long session
                self.post_message(PollFailed(f"poll failed: {exc}"))
            interval = self.poller.next_interval() if self.poller else 30.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            except TimeoutError:
                pass

    def request_poll(self) -> None:
        """Poll as soon as possible: wakes the poll loop (with `poll=False` nothing polls by itself)."""
        if self._poll_enabled and self.service is not None and self.service.is_connected:
            self._wake.set()

    def watch_job(self, job_id: str) -> None:
        """A screen shows this job: follow its events even when it is idle."""
        self.current_job_id = job_id
        self._watched.add(job_id)
        if self.poller is not None:
            self.poller.watch(job_id)
        self.request_poll()

    def unwatch_job(self, job_id: str) -> None:
        self._watched.discard(job_id)
        if self.poller is not None:
            self.poller.unwatch(job_id)

    # -- message handlers: the only place the state changes ----------------------------------

    def on_service_opened(self, message: ServiceOpened) -> None:
        self.service = message.service
        self.poller = message.poller
        for job_id in self._watched:
            self.poller.watch(job_id)
        self.profile_name = message.service.profile.name
        self.profile_detail = message.service.profile.describe()
        self.connection_state = message.service.connection.state
        self.connection_detail = message.service.connection.detail
        self.state_signal.publish(None)

    def on_service_failed(self, message: ServiceFailed) -> None:
        self.connection_state = "error"
        self.connection_detail = message.message
        self.rows_source = self.rows_source or "cache"
        self.state_signal.publish(None)
        self.notify(message.message, title="cannot open tunedeck", severity="error", markup=False, timeout=15)

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        if message.source == "cache" and self.rows_source == "api":
            return  # the API already answered; a late cache read is older
        self.rows = message.rows
        self.rows_source = message.source
        self.jobs_signal.publish(message.rows)

    def on_events_arrived(self, message: EventsArrived) -> None:
        self.events_signal.publish(message)

    def on_job_not_found(self, message: JobNotFound) -> None:
        self.missing_signal.publish(message)

    def on_connection_updated(self, message: ConnectionUpdated) -> None:
        previous = self.connection_state
        self.connection_state = message.state
        self.connection_detail = message.detail
        self.state_signal.publish(None)
        if message.state == "error" and previous != "error":
            self.notify(clean(message.detail), title="connection", severity="error", markup=False, timeout=10)

    def on_poll_failed(self, message: PollFailed) -> None:
        if message.kind == "connection":
            return  # the header already says so
        if message.kind == "training_not_available":
            self.notice = message.message
            self.state_signal.publish(None)
        if message.message != self._last_poll_error:
            self._last_poll_error = message.message
            severity = "information" if message.kind == "training_not_available" else "warning"
            self.notify(clean(message.message), title="refresh", severity=severity, markup=False)

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        if message.error is None:
            self.models = message.models
        self.models_signal.publish(message)

    def on_job_launched(self, message: JobLaunched) -> None:
        if self._launch_form_open():
            self.launch_signal.publish(message)
        else:  # the user left the form while it uploaded
            self.notify(f"launched {clean(message.job.id)}", title="launch", markup=False)
        self.request_poll()

    def on_launch_failed(self, message: LaunchFailed) -> None:
        if self._launch_form_open():
            self.launch_signal.publish(message)
        else:
            self.notify(clean(message.message), title="launch failed", severity="error", markup=False)

    def _launch_form_open(self) -> bool:
        return any(getattr(screen, "launching", False) for screen in self.screen_stack)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        self.notify(f"cancel requested: {clean(message.job.id)} is {clean(message.job.status)}", markup=False)
        self.request_poll()

    def on_cancel_failed(self, message: CancelFailed) -> None:
        self.notify(clean(message.message), title=f"cannot cancel {clean(message.job_id)}", severity="error", markup=False)

    def action_refresh(self) -> None:
        service = self.service
        if service is None:
            return
        if not service.is_connected:
            if self._connect_enabled:
                self._reconnect()
            else:
                self.notify("offline: showing cached data only", markup=False)
            return
        if self._poll_enabled:
            self._wake.set()
        else:
            self.run_worker(self.poll_now(), group="refresh", exit_on_error=False)

    @work(group="startup", exclusive=True, exit_on_error=False, description="reconnect")
    async def _reconnect(self) -> None:
        service = self.service
        if service is None or service.is_connected:
            return
        await service.connect()
        if service.is_connected and self._poll_enabled:
            self._poll_loop()

    def action_switch_profile(self) -> None:
        self._switch_profile()

    @work(group="startup", exclusive=True, exit_on_error=False, description="switch profile")
    async def _switch_profile(self) -> None:
        """Close this profile's service and open the next one from the config (cache first)."""
        from tunedeck.core.bootstrap import load_app_config
        from tunedeck.core.config import ConfigError

        try:
            config = await asyncio.to_thread(load_app_config)
        except ConfigError as exc:
            self.notify(clean(exc), title="config", severity="error", markup=False)
            return
        following = config.next_profile(self.profile_name)
        if following.name == self.profile_name:
            self.notify("Only one profile is configured (`tunedeck paths` shows the config file).", markup=False)
            return
        self.workers.cancel_group(self, "poll")
        while len(self.screen_stack) > 1:
            self.pop_screen()
        await self._close_service()
        self.rows_source, self.models, self.notice = None, None, None
        self._service_factory = default_service_factory(following.name)
        opening = asyncio.ensure_future(self._open_cache())
        self._start_up(opening, applied=False)

    async def _close_service(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        service = self.service or self._opened
        self.service = self._opened = self.poller = None
        if service is not None:
            try:
                await service.close()
            except Exception:  # closing is best effort; the data is already on disk
                pass

    def action_datasets(self) -> None:
        from .screens.dataset import DatasetScreen

        if not isinstance(self.screen, DatasetScreen):
            self.push_screen(DatasetScreen())

    def action_help(self) -> None:
        from .screens.help import HelpScreen, help_sections

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(help_sections(self.screen), intro=getattr(self.screen, "HELP", None) or ""))

    # -- shutdown ---------------------------------------------------------------------------

    async def on_unmount(self) -> None:
        await self._close_service()


def run_app(profile: str | None = None) -> int:
    """Run the full-screen app on `profile` (None: the config's default); returns the exit code."""
    app = TunedeckApp(profile=profile)
    app.run()
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tunedeck.tui.app")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    return run_app(args.profile)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["TunedeckApp", "run_app", "main", "default_service_factory"]
