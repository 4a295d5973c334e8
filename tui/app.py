"""The tunedeck app: state in one place, workers that post messages, screens that observe the state.

Start-up order (the first frame never waits for the network or the SDK):

1. mount: open the service and read the cache once (a few ms) so the first frame already
   shows the cached rows; a cache slower than FIRST_FRAME_WAIT_S is left to the start-up worker;
2. compose: the Jobs screen with its header, drawn at once;
3. after the first frame (`Ready`): connect (imports `openai`, starts the local backend);
4. the core's poller runs its own loop in an app worker; `r` wakes it at once.

The path of a job event from a poll to the screens, one shape per hop:

1. `core.poller.JobPoller` refreshes the list and the events, reads the cached rows once,
   and publishes them through the service (`JobsChanged`, `EventsAdded`, `JobMissing`,
   `PollError`; the service publishes `ConnectionChanged` itself);
2. one adapter, `messages.message_for`, turns each core event into a message posted to
   the app (`JobsLoaded`, `EventsArrived`, ...);
3. the app's handler applies the message to `state.AppState`, the state in one place;
4. the state's signals tell the screens and the header that subscribed (they read the
   state, never the app).

Workers never touch widgets: they post messages from `messages.py`. A worker that ends
with an unexpected exception reaches one handler here, which shows the error and
announces it (`AppState.worker_failed`) so the screen that asked can recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Sequence

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from .commands import ContextCommands
from .messages import (
    CancelFailed,
    ConnectionUpdated,
    EvalFailed,
    EvalFinished,
    EvalProgressed,
    EvalStarted,
    EventsArrived,
    JobAlert,
    JobCancelled,
    JobLaunched,
    JobNotFound,
    JobsLoaded,
    LaunchFailed,
    LaunchProgressed,
    ModelsLoaded,
    NoticePosted,
    PollFailed,
    PreflightChecked,
    ServiceFailed,
    ServiceOpened,
    message_for,
)
from .safe_text import clean
from .screens.jobs import JobsScreen
from .service_actions import EVAL_WORKERS, ServiceActions
from .state import AppState, WorkerFailure
from .themes import remember_theme, unknown_theme

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

    from tunedeck.core.launch.request import LaunchRequest
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.records import JobRow
    from tunedeck.core.service import Service, ServiceEvent

    from .alerts import DesktopSender

ServiceFactory = Callable[[], Awaitable["Service"]]

FIRST_FRAME_WAIT_S = 0.5
"""How long the first frame may wait for the cache. Reading it takes a few ms, but each of
aiosqlite's round trips waits for the loop, which is busy mounting the Jobs screen meanwhile
(50-66 ms a trip on a 2-core machine): at 0.25 s the cached rows missed the first frame
(bench/startup.py: 0 rows). The wait ends as soon as the cache answers."""

TYPED_APP_ACTIONS = frozenset({"datasets"})
"""App keys bound with priority (they act before the next key is read) that a text field
takes as typing instead."""
STARTUP_WORKERS = "startup"
POLL_WORKERS = "poll"
DESKTOP_WORKERS = "desktop"
ALERT_SEVERITIES = ("information", "warning", "error")


def default_service_factory(profile: str | None = None) -> ServiceFactory:
    """Open the user's profile from their config (imports the core lazily)."""

    async def factory() -> Service:
        from tunedeck.core.bootstrap import open_service  # the cache layer: ~20 ms of imports

        return await open_service(profile)

    return factory


class TunedeckApp(App[int]):
    """The full-screen app.

    Args:
        service_factory: async callable returning a not-yet-connected `Service`; the app
            owns the service from then on and closes it on exit. Default: the user's config.
        profile: profile name for the default factory.
        poll: run the poller's loop. Tests pass False and call `await app.poll_now()`.
        connect: connect after the first frame. False keeps the app on cached data only.
    """

    TITLE = "tunedeck"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute, so subclasses elsewhere find it
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {ContextCommands}  # every action of the current context, from its bindings

    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit tunedeck"),
        Binding("question_mark", "help", "Keys", id="app.help", tooltip="The keys that work here"),
        Binding("f1", "help", "Keys", show=False, id="app.help_f1"),
        Binding("r", "refresh", "Refresh", id="app.refresh", tooltip="Refresh from the API now"),
        Binding("p", "switch_profile", "Profile", id="app.profile", tooltip="Switch to the next profile"),
        # A priority binding: it opens the file prompt before the next key is read, so a path
        # typed right after `d` (in one burst, or pasted) lands in the prompt, not in the jobs.
        Binding("d", "datasets", "Datasets", id="app.datasets", priority=True, tooltip="Browse a dataset file before training on it"),
        Binding("E", "evaluate", "Evaluate", id="app.evaluate", tooltip="Evaluate models on a dataset: baseline, fine-tuned, checkpoints"),
        Binding("t", "playground", "Try models", id="app.playground", tooltip="Chat with two models side by side (a job's fine-tuned model and its base)"),
    ]

    def __init__(
        self,
        service_factory: ServiceFactory | None = None,
        *,
        profile: str | None = None,
        poll: bool = True,
        connect: bool = True,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        self._chosen_theme = theme
        """`--theme`: shown this run instead of the theme last picked (see `themes.py`)."""
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"  # calmer, and cheaper over SSH
        self._service_factory = service_factory or default_service_factory(profile)
        self._poll_enabled = poll
        self._connect_enabled = connect

        self.state = AppState(self)
        """Everything the screens show; only the handlers below change it."""
        self.requests = ServiceActions(self, self.state)
        """List models, launch, cancel: what screens ask of the service."""
        self.poller: JobPoller | None = None

        self._first_frame = asyncio.Event()
        self._poller_opened = asyncio.Event()
        self._watched: set[str] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._opening: asyncio.Future | None = None
        self._opened: Service | None = None
        self.exit_note: str | None = None
        """Printed after the app exits: jobs that go on training without it, and where."""
        self.desktop: DesktopSender | None = None
        """Shows desktop notifications: made on the first alert that asks for one (tests set a fake)."""
        self.desktop_off: str | None = None
        """Why desktop notifications stay quiet this session (said once), None while they work."""

    def get_default_screen(self) -> JobsScreen:
        return JobsScreen()

    # -- thin delegates (tests and scripts) --------------------------------------------------

    @property
    def service(self) -> Service | None:
        return self.state.service

    @property
    def polls(self) -> int:
        """Polls the current profile's poller finished (successful or not)."""
        return self.poller.polls if self.poller is not None else 0

    async def poll_now(self) -> None:
        """One poll now (with `poll=False` nothing else polls); failures become `PollFailed`."""
        if self.poller is not None:
            await self.poller.poll_now()

    async def next_poll(self) -> None:
        """Wait until the next poll has finished (tests; the loop polls on its own)."""
        while self.poller is None:
            await self._poller_opened.wait()
        await self.poller.next_poll()

    # -- start-up ---------------------------------------------------------------------------

    async def on_mount(self) -> None:
        # Open the cache now, so cached rows are in the first frame; but never hold the
        # first frame longer than FIRST_FRAME_WAIT_S for a slow disk: the worker goes on.
        opening = self._opening = asyncio.ensure_future(self._open_cache())
        done, _ = await asyncio.wait({opening}, timeout=FIRST_FRAME_WAIT_S)
        applied = bool(done) and opening.exception() is None
        if applied:
            service, poller, rows = opening.result()
            # A handler of the app itself, so it may apply the state directly.
            self.on_service_opened(ServiceOpened(service, poller))
            self.on_jobs_loaded(JobsLoaded(rows, source="cache"))
        self._start_up(opening, applied=applied)

    def on_ready(self) -> None:
        self._first_frame.set()
        # Everything made to start up lives as long as the app: keep it out of the collector's
        # full passes, which otherwise stall the UI (measured: 50 ms pauses -> 15 ms, bench/browse.py).
        gc.freeze()

    async def _open_cache(self) -> tuple[Service, JobPoller, list[JobRow]]:
        service = await self._service_factory()
        self._opened = service  # closed on exit even if the app quits before using it
        from tunedeck.core.poller import JobPoller

        self._unsubscribe = service.subscribe(self._core_event)
        poller = JobPoller(service)
        return service, poller, await poller.read_cache()

    def _core_event(self, event: ServiceEvent) -> None:
        """The service's one listener (called on the event loop): core events become messages."""
        message = message_for(event)
        if message is not None:
            self.post_message(message)

    @work(group=STARTUP_WORKERS, exit_on_error=False, description="open the cache, then connect")
    async def _start_up(self, opening: asyncio.Future, applied: bool) -> None:
        try:
            # Shielded: cancelling this worker (quit, next profile) must not cut the opening
            # short, or a half-opened cache is never closed and its thread outlives the app.
            service, poller, rows = await asyncio.shield(opening)
        except Exception as exc:  # a bad config or an unreadable cache: say so, keep running
            self.post_message(ServiceFailed(str(exc)))
            return
        if not applied:
            self.post_message(ServiceOpened(service, poller))
            self.post_message(JobsLoaded(rows, source="cache"))
        if not self._connect_enabled:
            return
        await self._first_frame.wait()
        await service.connect()
        if service.is_connected:
            self._start_polling(poller)

    def _start_polling(self, poller: JobPoller) -> None:
        """Run the poller's loop in an app worker (cancelled with the profile or the app)."""
        if self._poll_enabled:
            self.run_worker(poller.run, group=POLL_WORKERS, exclusive=True, exit_on_error=False, description="poll the API")

    def request_poll(self) -> None:
        """Poll as soon as possible: wakes the poller's loop (with `poll=False` nothing polls by itself)."""
        if self.poller is not None and self.state.connected:
            self.poller.request()

    def watch_job(self, job_id: str) -> None:
        """A screen shows this job: follow its events even when it is idle."""
        self.state.current_job_id = job_id
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
        state = self.state
        state.service = message.service
        self.poller = message.poller
        self._poller_opened.set()
        for job_id in self._watched:
            self.poller.watch(job_id)
        state.profile_name = message.service.profile.name
        state.profile_detail = message.service.profile.describe()
        state.connection_state = message.service.connection.state
        state.connection_detail = message.service.connection.detail
        state.changed.publish(None)
        remember_theme(self, message.service.paths, self._chosen_theme)  # the folders are known now
        if message.service.cache.recovery_note:  # the cache was damaged and rebuilt at opening
            self.on_notice_posted(NoticePosted(message.service.cache.recovery_note, "cache"))

    def on_service_failed(self, message: ServiceFailed) -> None:
        state = self.state
        state.connection_state = "error"
        state.connection_detail = message.message
        state.rows_source = state.rows_source or "cache"
        state.changed.publish(None)
        self.notify(clean(message.message), title="cannot open tunedeck", severity="error", markup=False, timeout=15)

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self.state.show_rows(message.rows, message.source)

    def on_events_arrived(self, message: EventsArrived) -> None:
        self.state.events_arrived.publish(message)

    def on_job_not_found(self, message: JobNotFound) -> None:
        self.state.job_missing.publish(message)

    def on_connection_updated(self, message: ConnectionUpdated) -> None:
        state = self.state
        previous = state.connection_state
        state.connection_state = message.state
        state.connection_detail = message.detail
        state.changed.publish(None)
        if message.state == "error" and previous != "error":
            self.notify(clean(message.detail), title="connection", severity="error", markup=False, timeout=10)
        if message.state == "consent":
            self._ask_consent(message.detail)

    def _ask_consent(self, question: str) -> None:
        """A built-in profile would send a key the user may have meant for somewhere else."""
        from .screens.confirm import ConfirmScreen

        def answered(agreed: bool | None) -> None:
            if agreed:
                self._consent_given()
                return
            self.state.connection_state = "offline"
            self.state.connection_detail = "the key was not sent; p switches profile, r asks again"
            self.state.changed.publish(None)

        self.push_screen(ConfirmScreen(question, yes_label="Send it", no_label="Stay offline"), answered)

    @work(group=STARTUP_WORKERS, exclusive=True, exit_on_error=False, description="connect after consent")
    async def _consent_given(self) -> None:
        service, poller = self.state.service, self.poller
        if service is None or poller is None:
            return
        await service.give_consent_and_connect()
        if service.is_connected:
            self._start_polling(poller)

    def on_poll_failed(self, message: PollFailed) -> None:
        # The poller reports each distinct failure once until a poll succeeds.
        if message.kind == "connection":
            return  # the header already says so
        if message.kind == "training_not_available":
            self.state.notice = message.message
            self.state.changed.publish(None)
        severity = "information" if message.kind == "training_not_available" else "warning"
        self.notify(clean(message.message), title="refresh", severity=severity, markup=False)

    def on_notice_posted(self, message: NoticePosted) -> None:
        self.notify(clean(message.message), title=clean(message.topic), severity="warning", markup=False, timeout=15)

    def on_job_alert(self, message: JobAlert) -> None:
        """A job's news, on whatever screen is open: a toast, the bell and a desktop
        notification, as the profile's `notify` setting asks."""
        from .alerts import channels

        service = self.state.service
        chosen = channels(service.profile if service is not None else None)
        title, text = clean(message.title), clean(message.message)
        severity = message.severity if message.severity in ALERT_SEVERITIES else "information"
        if "toast" in chosen:
            self.notify(text, title=title, severity=severity, markup=False, timeout=20 if severity == "error" else 12)
        if "bell" in chosen:
            self.bell()
        if "desktop" in chosen:
            self._notify_desktop(title, text, severity)

    def _notify_desktop(self, title: str, text: str, severity: str) -> None:
        if self.desktop_off is not None:
            return
        if self.desktop is None:
            from .alerts import DesktopUnavailable, default_desktop

            try:
                self.desktop = default_desktop()
            except DesktopUnavailable as exc:
                self._desktop_unavailable(str(exc))
                return
        self._send_desktop(self.desktop, title, text, severity)

    @work(group=DESKTOP_WORKERS, exit_on_error=False, description="desktop notification")
    async def _send_desktop(self, sender: DesktopSender, title: str, text: str, severity: str) -> None:
        from .alerts import DesktopUnavailable

        try:
            await sender.send(title, text, severity)
        except DesktopUnavailable as exc:
            self.call_later(self._desktop_unavailable, str(exc))  # a message to the app, not a widget touched here
        except Exception as exc:  # the library's own errors: authorisation, a backend bug
            # A desktop notification is a nicety: whatever breaks it turns it off for the
            # session, said once, rather than an "unexpected error" on every alert.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.call_later(self._desktop_unavailable, reason)

    def _desktop_unavailable(self, reason: str) -> None:
        if self.desktop_off is None:
            self.desktop_off = reason
            self.notify(clean(reason), title="desktop notifications are off", markup=False, timeout=15)

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        if message.error is None:
            self.state.model_choices = message.choices
        self.state.models_listed.publish(message)

    def on_preflight_checked(self, message: PreflightChecked) -> None:
        self.state.preflight_checked.publish(message)

    def on_launch_progressed(self, message: LaunchProgressed) -> None:
        self.state.launch_progressed.publish(message)

    def on_job_launched(self, message: JobLaunched) -> None:
        if self._launch_form_open():
            self.state.launch_answered.publish(message)
        else:  # the user left the form while it uploaded
            self.notify(f"launched {clean(message.job.id)}", title="launch", markup=False)
        self.request_poll()

    def on_launch_failed(self, message: LaunchFailed) -> None:
        if self._launch_form_open():
            self.state.launch_answered.publish(message)
        else:
            self.notify(clean(message.message), title="launch failed", severity="error", markup=False)

    def _launch_form_open(self) -> bool:
        return any(getattr(screen, "launching", False) for screen in self.screen_stack)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        self.notify(f"cancel requested: {clean(message.job.id)} is {clean(message.job.status)}", markup=False)
        self.request_poll()

    def on_cancel_failed(self, message: CancelFailed) -> None:
        self.notify(clean(message.message), title=f"cannot cancel {clean(message.job_id)}", severity="error", markup=False)

    def on_eval_started(self, message: EvalStarted) -> None:
        from tunedeck.core.evaluate.records import EvalProgress

        info = message.info
        if info.id not in self.state.evaluations:  # else a run already going, shown again: keep its progress
            self.state.evaluations[info.id] = EvalProgress(info.id, info.done, info.total, info.errors, 0.0, None)
        self.state.eval_progressed.publish(message)

    def on_eval_progressed(self, message: EvalProgressed) -> None:
        progress = message.progress
        if progress.run_id not in self.state.evaluations:
            return  # a late report of a run that has stopped since
        self.state.evaluations[progress.run_id] = progress
        self.state.eval_progressed.publish(message)

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.state.evaluations.pop(message.run_id, None)
        self.state.eval_progressed.publish(message)
        if not self._evaluate_screen_open():
            errors = f", {message.info.errors} errors" if message.info is not None and message.info.errors else ""
            self.notify(f"{clean(message.run_id)} {clean(message.status)}{errors}", title="evaluation", markup=False)

    def on_eval_failed(self, message: EvalFailed) -> None:
        if message.run_id is not None:
            self.state.evaluations.pop(message.run_id, None)
        self.state.eval_progressed.publish(message)
        if message.stage != "crash" and not self._evaluate_screen_open():
            title = f"evaluation {clean(message.run_id)}" if message.run_id else "evaluation"
            self.notify(clean(message.message), title=title, severity="error", markup=False, timeout=15)

    def _evaluate_screen_open(self) -> bool:
        """The Evaluate screen shows the run's news itself (other screens get a toast)."""
        return bool(getattr(self.screen, "shows_evaluations", False))

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one handler for unexpected worker failures (expected ones are messages already).

        App workers report here directly; screens pass on the failures of their own workers.
        The error is shown literally, then announced so the screen that asked can recover.
        """
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        error = worker.error
        text = clean(f"{type(error).__name__}: {error}" if error is not None else "unknown error")
        what = clean(worker.description or worker.name or worker.group)
        self.notify(text, title=f"unexpected error: {what}", severity="error", markup=False, timeout=15)
        if worker.group == STARTUP_WORKERS and self.state.connection_state == "connecting":
            self.state.connection_state, self.state.connection_detail = "error", text
            self.state.changed.publish(None)
        self.state.worker_failed.publish(WorkerFailure(worker.group, what, text))

    # -- actions ----------------------------------------------------------------------------

    def action_refresh(self) -> None:
        service, poller = self.state.service, self.poller
        if service is None or poller is None:
            return
        if not service.is_connected:
            if self._connect_enabled:
                self._reconnect()
            else:
                self.notify("offline: showing cached data only", markup=False)
            return
        if self._poll_enabled:
            poller.request(full=True)  # every job that can change, not only those whose turn it is
        else:
            self.run_worker(poller.poll_now, group="refresh", exit_on_error=False, description="refresh")

    @work(group=STARTUP_WORKERS, exclusive=True, exit_on_error=False, description="reconnect")
    async def _reconnect(self) -> None:
        service, poller = self.state.service, self.poller
        if service is None or poller is None or service.is_connected:
            return
        await service.connect()
        if service.is_connected:
            self._start_polling(poller)

    def action_switch_profile(self) -> None:
        running = len(self.state.evaluations)
        if not running:
            self._switch_profile()
            return
        from .screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._switch_profile()

        many = "1 evaluation is" if running == 1 else f"{running} evaluations are"
        question = f"{many} running; switching stops {'it' if running == 1 else 'them'} (R resumes later)."
        self.push_screen(ConfirmScreen(question, yes_label="Switch", no_label="Stay"), answered)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own palette commands, less those the context commands already offer with
        their keys (Quit, Keys): one entry per action."""
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A screen may turn off app keys where they would be typed by mistake (a form)."""
        blocks = getattr(self.screen, "blocks_app_action", None)
        if blocks is not None and blocks(action):
            return False
        if action in TYPED_APP_ACTIONS:
            from textual.widgets import Input, TextArea
            from textual.widgets._select import SelectOverlay

            if isinstance(self.screen.focused, (Input, TextArea, SelectOverlay)):
                return False  # a priority key typed into a field: the character, not the action
        return True

    def switch_profile(self, keep_launch: LaunchRequest | None = None) -> None:
        """Open the next profile; `keep_launch` reopens the launch form as it was filled."""
        self._switch_profile(keep_launch)

    @work(group=STARTUP_WORKERS, exclusive=True, exit_on_error=False, description="switch profile")
    async def _switch_profile(self, keep_launch: LaunchRequest | None = None) -> None:
        """Close this profile's service and open the next one from the config (cache first)."""
        from tunedeck.core.bootstrap import load_app_config
        from tunedeck.core.config import ConfigError

        try:
            config = await asyncio.to_thread(load_app_config)
        except ConfigError as exc:
            self.notify(clean(exc), title="config", severity="error", markup=False)
            return
        following = config.next_profile(self.state.profile_name)
        if following.name == self.state.profile_name:
            self.notify("Only one profile is configured (`tunedeck paths` shows the config file).", markup=False)
            return
        self.workers.cancel_group(self, POLL_WORKERS)
        # Evaluations ask through this profile's service: each stores what it has and marks
        # its run cancelled before the cache closes (it resumes later), else the close lands
        # mid-write and the run ends as a crash.
        for worker in self.workers.cancel_group(self, EVAL_WORKERS):
            with contextlib.suppress(Exception):
                await worker.wait()
        while len(self.screen_stack) > 1:
            self.pop_screen()
        await self._close_service()
        self.state.rows_source, self.state.model_choices, self.state.notice = None, None, None
        self._service_factory = default_service_factory(following.name)
        opening = self._opening = asyncio.ensure_future(self._open_cache())
        self._start_up(opening, applied=False)
        if keep_launch is not None:
            from .screens.launch import LaunchScreen

            self.push_screen(LaunchScreen(request=keep_launch))

    async def _close_service(self) -> None:
        if self._opening is not None and not self._opening.done():
            await asyncio.wait({self._opening})  # then its service is known, and closed below
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.poller is not None:
            self.poller.close()
        service = self.state.service or self._opened
        self.state.service = self._opened = self.poller = None
        self._poller_opened.clear()
        if service is not None:
            try:
                await service.close()
            except Exception:  # closing is best effort; the data is already on disk
                pass

    async def action_datasets(self) -> None:
        from .screens.dataset import DatasetScreen

        if not isinstance(self.screen, DatasetScreen):
            screen = DatasetScreen(ask_for_file=False)
            await self.push_screen(screen)
            await screen.action_open()  # the prompt mounted and focused before the next key

    def action_evaluate(self) -> None:
        from .screens.evaluate import EvaluateScreen

        if not isinstance(self.screen, EvaluateScreen):
            self.push_screen(EvaluateScreen())

    def action_playground(self) -> None:
        from .screens.playground import PlaygroundScreen

        if not isinstance(self.screen, PlaygroundScreen):
            self.push_screen(PlaygroundScreen())  # it fills both sides from the current job

    def action_help(self) -> None:
        from .screens.help import HelpScreen, help_sections

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(help_sections(self.screen), intro=getattr(self.screen, "HELP", None) or ""))

    # -- shutdown ---------------------------------------------------------------------------

    async def on_unmount(self) -> None:
        service = self.state.service
        if service is not None:
            from tunedeck.core.local_service import still_training_note

            self.exit_note = still_training_note(
                service.profile.describe(), service.local_endpoint, [row.job.status for row in self.state.rows]
            )
        await self._close_service()


def run_app(profile: str | None = None, theme: str | None = None) -> int:
    """Run the full-screen app on `profile` (None: the config's default) in `theme` (None:
    the one last picked); returns the exit code (2 for a theme that does not exist)."""
    if theme is not None and (problem := unknown_theme(theme)) is not None:
        print(f"tunedeck: {clean(problem)}", file=sys.stderr)
        return 2
    app = TunedeckApp(profile=profile, theme=theme)
    app.run()
    if app.exit_note:  # after the screen is restored, so it stays in the terminal
        print(clean(app.exit_note), file=sys.stderr)  # names the profile's URL: outside text
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
