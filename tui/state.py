"""What the screens show, in one place: the app's state and the signals that announce changes.

The path of a change: the core publishes an event (`Service.publish`), one adapter
(`messages.message_for`) turns it into a message posted to the app, the app's handler
applies it here, and a signal tells the screens that subscribed. Screens and widgets read
this object and ask for work through `ScreenHost`; none of them imports the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from textual.signal import Signal
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:  # pragma: no cover
    from textual.dom import DOMNode

    from tunedeck.core.evaluate.records import EvalProgress, EvalSettings
    from tunedeck.core.launch.launching import CheckedLaunch
    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.core.launch.request import LaunchRequest
    from tunedeck.core.records import JobRow
    from tunedeck.core.service import Service

    from .messages import (
        EvalFailed,
        EvalFinished,
        EvalProgressed,
        EvalStarted,
        EventsArrived,
        JobLaunched,
        JobNotFound,
        LaunchFailed,
        LaunchProgressed,
        ModelsLoaded,
        PreflightChecked,
    )


@dataclass(frozen=True)
class WorkerFailure:
    """A worker ended with an unexpected exception; `error` is its text, controls made visible."""

    group: str
    description: str
    error: str


class AppState:
    """The profile, its connection, its jobs: written by the app's handlers, read by screens."""

    def __init__(self, owner: DOMNode) -> None:
        self.service: Service | None = None
        """The open profile's service (None until the cache is open): cached reads, connection."""
        self.rows: list[JobRow] = []
        self.rows_source: str | None = None
        """None until the cache answered; then "cache" or "api"."""
        self.profile_name = ""
        self.profile_detail = ""
        self.connection_state = "offline"
        self.connection_detail = "opening cache"
        self.model_choices: list[ModelChoice] | None = None
        """The profile's models as last listed (None: not listed yet)."""
        self.notice: str | None = None
        """A calm note for the Jobs screen (e.g. the endpoint offers no fine-tuning)."""
        self.current_job_id: str | None = None
        """The job last opened or launched: the Jobs screen puts its cursor there."""
        self.evaluations: dict[str, EvalProgress] = {}
        """The evaluations running in this app, by run id, as far as they got."""

        # -- announcements screens subscribe to ------------------------------------------
        self.changed: Signal[None] = Signal(owner, "state")
        """The profile, the connection, the notice or `rows_source` changed."""
        self.rows_changed: Signal[list[JobRow]] = Signal(owner, "rows")
        self.events_arrived: Signal[EventsArrived] = Signal(owner, "events")
        self.job_missing: Signal[JobNotFound] = Signal(owner, "missing")
        self.models_listed: Signal[ModelsLoaded] = Signal(owner, "models")
        self.launch_answered: Signal[JobLaunched | LaunchFailed] = Signal(owner, "launch")
        self.preflight_checked: Signal[PreflightChecked] = Signal(owner, "preflight")
        self.launch_progressed: Signal[LaunchProgressed] = Signal(owner, "launch progress")
        self.worker_failed: Signal[WorkerFailure] = Signal(owner, "worker failed")
        self.eval_progressed: Signal[EvalStarted | EvalProgressed | EvalFinished | EvalFailed] = Signal(
            owner, "evaluation"
        )
        """An evaluation started, moved on, stopped or failed (`evaluations` is up to date)."""

    @property
    def connected(self) -> bool:
        return self.service is not None and self.service.is_connected

    def show_rows(self, rows: list[JobRow], source: str) -> None:
        if source == "cache" and self.rows_source == "api":
            return  # the API already answered; a late cache read is older
        self.rows = rows
        self.rows_source = source
        self.rows_changed.publish(rows)

    def row(self, job_id: str) -> JobRow | None:
        return next((row for row in self.rows if row.job.id == job_id), None)


class ServiceRequests(Protocol):
    """What screens may ask of the profile's service; each answer comes back as a message."""

    def load_models(self) -> None: ...

    def run_preflight(self, request: LaunchRequest, model: ModelChoice | None = None) -> None: ...

    def launch_job(self, checked: CheckedLaunch) -> None: ...

    def cancel_launch(self) -> None: ...

    def cancel_preflight(self) -> None: ...

    def confirm_cancel(self, job_id: str) -> None: ...

    def pause_job(self, job_id: str) -> None: ...

    def resume_job(self, job_id: str) -> None: ...

    def start_evaluation(self, settings: EvalSettings) -> int:
        """Create a run and ask every model (answers: `EvalStarted`, `EvalProgressed`...,
        `EvalFinished` or `EvalFailed`, each carrying the ticket returned here)."""
        ...

    def evaluate_job(self, job_id: str) -> int:
        """Plan a job's evaluation (base, fine-tuned, checkpoints on its validation file), then
        start it; a plan that cannot be made answers `EvalFailed(stage="plan")`."""
        ...

    def resume_evaluation(self, run_id: str, retry_errors: bool = False) -> int:
        """Ask what a stopped run has not answered yet (`retry_errors`: also what failed)."""
        ...

    def cancel_evaluation(self, run_id: str) -> bool:
        """Stop a running evaluation (its answers so far are kept; it resumes). False: not running here."""
        ...


class ScreenHost(Protocol):
    """The app as screens and widgets see it: its state, and the requests they make."""

    @property
    def state(self) -> AppState: ...

    @property
    def requests(self) -> ServiceRequests: ...

    def watch_job(self, job_id: str) -> None: ...

    def unwatch_job(self, job_id: str) -> None: ...

    def switch_profile(self, keep_launch: LaunchRequest | None = None) -> None:
        """Open the next profile; `keep_launch` reopens the launch form filled as it was."""


def host(node: DOMNode) -> ScreenHost:
    """The app running `node`, through the surface screens may use (never the concrete app)."""
    return cast("ScreenHost", node.app)


def pass_on_failure(node: DOMNode, event: Worker.StateChanged) -> bool:
    """For a screen's or widget's `on_worker_state_changed`: a worker's state change reaches
    only the node that runs it, so a failure is passed on to the app's one handler (which
    shows it). True when the worker failed, for the node to put right what it left showing."""
    if event.state != WorkerState.ERROR:
        return False
    node.app.post_message(Worker.StateChanged(event.worker, event.state))
    return True
