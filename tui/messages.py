"""Messages workers post; handlers on the app and screens apply them (workers never touch widgets).

Names are past tense: each says what happened, not what to do. Each message is a dataclass:
the generated `__init__` calls Textual's `Message.__post_init__`, which sets the message up
(a `__post_init__` here calling `super().__init__()` would recurse: `Message.__init__`
calls `__post_init__`). `eq=False`: a message is an event, so two alike are still two, and
each stays hashable. `repr=False`: Textual's own repr serves, and each generated method
costs start-up time (the dataset browser's messages live in `dataset_messages.py`, loaded
with it, for the same reason). `message_for()` is the one adapter from the core's events to
these messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalProgress, EvalRunInfo
    from tunedeck.core.launch.launching import CheckedLaunch, LaunchProgress
    from tunedeck.core.launch.models import ModelChoice
    from tunedeck.core.launch.request import LaunchRequest
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.records import Checkpoint, Job, JobEvent, JobRow
    from tunedeck.core.service import Service, ServiceEvent
    from tunedeck.core.watch.series import MetricSeries


@dataclass(eq=False, repr=False)
class ServiceOpened(Message):
    """The cache is open and the profile known (nothing has touched the network yet)."""

    service: Service
    poller: JobPoller


@dataclass(eq=False, repr=False)
class ServiceFailed(Message):
    """The cache or the config could not be opened; `message` says why."""

    message: str


@dataclass(eq=False, repr=False)
class JobsLoaded(Message):
    """A fresh job list, newest first (from the cache or from the API)."""

    rows: list[JobRow]
    source: str = "api"


@dataclass(eq=False, repr=False)
class EventsArrived(Message):
    """New events of one job, oldest first; `job` is its latest state."""

    job: Job
    events: list[JobEvent]


@dataclass(eq=False, repr=False)
class JobNotFound(Message):
    """The backend has no job with this id (a stale cache entry or a typed id)."""

    job_id: str
    detail: str


@dataclass(eq=False, repr=False)
class ConnectionUpdated(Message):
    """The connection state changed: offline, connecting, online or error."""

    state: str
    detail: str = ""


@dataclass(eq=False, repr=False)
class PollFailed(Message):
    """One poll failed (the loop goes on); `message` is for the user, `kind` an ApiError kind."""

    message: str
    kind: str = ""


@dataclass(eq=False, repr=False)
class NoticePosted(Message):
    """Something to tell the user that is no failure (core's `Notice`); `topic` titles it."""

    message: str
    topic: str = ""


@dataclass(eq=False, repr=False)
class JobDetailLoaded(Message):
    """The Job screen's cached job and events (oldest first)."""

    job: Job | None
    events: list[JobEvent]
    series: MetricSeries | None = None
    """The job's metrics, built from the cache off the UI thread (None: build them from `events`)."""


@dataclass(eq=False, repr=False)
class ModelsLoaded(Message):
    """Models the backend lists, fine-tunable first (empty with `error` set when they could
    not be read). Plain ids are taken too (a model with nothing more known of it)."""

    choices: list[ModelChoice | str]
    error: str | None = None

    def __post_init__(self) -> None:
        from tunedeck.core.launch.models import ModelChoice

        self.choices = [c if isinstance(c, ModelChoice) else ModelChoice(id=c) for c in self.choices]
        super().__post_init__()

    @property
    def models(self) -> list[str]:
        return [c.id for c in self.choices]


@dataclass(eq=False, repr=False)
class PreflightChecked(Message):
    """The pre-flight of `request` finished: `checked` (with its verdict), or `error` when it
    could not run (a file vanished, the validator refused its arguments)."""

    request: LaunchRequest
    checked: CheckedLaunch | None
    error: str | None = None


@dataclass(eq=False, repr=False)
class LaunchProgressed(Message):
    """How far a launch's upload got; only the latest matters."""

    progress: LaunchProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LaunchProgressed)


@dataclass(eq=False, repr=False)
class JobLaunched(Message):
    """A launch uploaded its file and created `job`."""

    job: Job


@dataclass(eq=False, repr=False)
class LaunchFailed(Message):
    """A launch failed; `message` says why (shown literally in the form)."""

    message: str
    kind: str = ""


@dataclass(eq=False, repr=False)
class JobCancelled(Message):
    """A cancel request was accepted; `job` is its new state."""

    job: Job


@dataclass(eq=False, repr=False)
class CancelFailed(Message):
    """A cancel request was refused; `message` says why."""

    job_id: str
    message: str


@dataclass(eq=False, repr=False)
class JobAlert(Message):
    """News of a job worth interrupting for (core's `JobAlert`): a status change, a failure,
    the overfitting detector firing, the budget. Shown on whatever screen is open."""

    job_id: str
    kind: str
    title: str
    message: str
    severity: str = "information"


@dataclass(eq=False, repr=False)
class CheckpointsLoaded(Message):
    """A job's checkpoints, newest first, from the cache or the API (`source`); `error` says
    what the API answered when it could not list them (the cached ones are then shown)."""

    job_id: str
    checkpoints: list[Checkpoint]
    source: str = "api"
    error: str | None = None


# -- evaluations (`service_actions`' evaluation worker posts these; `AppState.eval_progressed` tells the screens)


@dataclass(eq=False, repr=False)
class EvalStarted(Message):
    """An evaluation was created (or resumed) and is asking the models; `ticket` is what the
    request that started it returned, so the screen that asked knows its run."""

    ticket: int
    info: EvalRunInfo


@dataclass(eq=False, repr=False)
class EvalProgressed(Message):
    """How far a running evaluation got; only the latest of each run matters."""

    progress: EvalProgress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EvalProgressed) and message.progress.run_id == self.progress.run_id


@dataclass(eq=False, repr=False)
class EvalFinished(Message):
    """An evaluation stopped asking: `status` is "finished" (every answer in, some may be
    errors) or "cancelled" (it resumes where it stopped); `info` as stored, when read."""

    ticket: int
    run_id: str
    status: str
    info: EvalRunInfo | None = None


@dataclass(eq=False, repr=False)
class EvalFailed(Message):
    """An evaluation could not start or stopped on an error; `message` says why (shown
    literally). `stage`: "plan" (a job's evaluation could not be planned: no data), "create"
    (the settings were refused: the file, a line, the grader) or "run". `kind` is the
    `ServiceError`'s kind when it has one; `run_id` is None before the run exists."""

    ticket: int
    message: str
    stage: str = "run"
    run_id: str | None = None
    kind: str = ""
    job_id: str | None = None


def message_for(event: ServiceEvent) -> Message | None:
    """The one adapter from core to screens: the message a core event becomes (None: not shown)."""
    from tunedeck.core import service as core  # loaded by then: the event came from it

    if isinstance(event, core.JobsChanged):
        return JobsLoaded(event.rows, source="api")
    if isinstance(event, core.EventsAdded):
        return EventsArrived(event.job, event.events)
    if isinstance(event, core.ConnectionChanged):
        return ConnectionUpdated(event.state, event.detail)
    if isinstance(event, core.JobMissing):
        return JobNotFound(event.job_id, event.detail)
    if isinstance(event, core.PollError):
        return PollFailed(event.message, event.kind)
    if isinstance(event, core.Notice):
        return NoticePosted(event.message, event.topic)
    if isinstance(event, core.JobAlert):
        return JobAlert(event.job_id, event.kind, event.title, event.message, event.severity)
    return None
