"""Messages workers post; handlers on the app and screens apply them (workers never touch widgets).

Names are past tense: each says what happened, not what to do. Each message is a dataclass:
the generated `__init__` calls Textual's `Message.__post_init__`, which sets the message up
(a `__post_init__` here calling `super().__init__()` would recurse: `Message.__init__`
calls `__post_init__`). `eq=False`: a message is an event, so two alike are still two, and
each stays hashable. `message_for()` is the one adapter from the core's events to these
messages.

Progress reports (`IndexAdvanced`, `ValidationProgressed`, `SearchProgressed`) define
`can_replace`: when a newer report of the same task is already queued, the older one is
dropped, so a busy background thread never floods the screen with stale progress.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasample import Distributions
    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.linesearch import SearchProgress
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.records import Job, JobEvent, JobRow
    from tunedeck.core.service import Service, ServiceEvent


@dataclass(eq=False)
class ServiceOpened(Message):
    """The cache is open and the profile known (nothing has touched the network yet)."""

    service: Service
    poller: JobPoller


@dataclass(eq=False)
class ServiceFailed(Message):
    """The cache or the config could not be opened; `message` says why."""

    message: str


@dataclass(eq=False)
class JobsLoaded(Message):
    """A fresh job list, newest first (from the cache or from the API)."""

    rows: list[JobRow]
    source: str = "api"


@dataclass(eq=False)
class EventsArrived(Message):
    """New events of one job, oldest first; `job` is its latest state."""

    job: Job
    events: list[JobEvent]


@dataclass(eq=False)
class JobNotFound(Message):
    """The backend has no job with this id (a stale cache entry or a typed id)."""

    job_id: str
    detail: str


@dataclass(eq=False)
class ConnectionUpdated(Message):
    """The connection state changed: offline, connecting, online or error."""

    state: str
    detail: str = ""


@dataclass(eq=False)
class PollFailed(Message):
    """One poll failed (the loop goes on); `message` is for the user, `kind` an ApiError kind."""

    message: str
    kind: str = ""


@dataclass(eq=False)
class JobDetailLoaded(Message):
    """The Job screen's cached job and events (oldest first)."""

    job: Job | None
    events: list[JobEvent]


@dataclass(eq=False)
class ModelsLoaded(Message):
    """Base models the backend lists (empty with `error` set when they could not be read)."""

    models: list[str]
    error: str | None = None


@dataclass(eq=False)
class JobLaunched(Message):
    """A launch uploaded its file and created `job`."""

    job: Job


@dataclass(eq=False)
class LaunchFailed(Message):
    """A launch failed; `message` says why (shown literally in the form)."""

    message: str
    kind: str = ""


@dataclass(eq=False)
class JobCancelled(Message):
    """A cancel request was accepted; `job` is its new state."""

    job: Job


@dataclass(eq=False)
class CancelFailed(Message):
    """A cancel request was refused; `message` says why."""

    job_id: str
    message: str


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
    return None


# -- the dataset screen (each carries the `generation` of the file it is about, so a message
# from the file shown before is recognised and dropped) ------------------------------------


@dataclass(eq=False)
class IndexAdvanced(Message):
    """The line index of the open file grew (or completed)."""

    generation: int
    complete: bool

    def can_replace(self, message: Message) -> bool:
        # The handler reads the index itself, so a newer report says all this one does.
        return isinstance(message, IndexAdvanced) and message.generation == self.generation


@dataclass(eq=False)
class DatasetTaskFailed(Message):
    """A background task on the open file failed; `task` names it ("index", "validation"…)."""

    generation: int
    task: str
    message: str


@dataclass(eq=False)
class ValidationProgressed(Message):
    """How many of the open file's lines the validation has checked."""

    generation: int
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ValidationProgressed) and message.generation == self.generation


@dataclass(eq=False)
class ValidationFinished(Message):
    """The dataset engine's report on the open file."""

    generation: int
    report: ValidationReport


@dataclass(eq=False)
class DistributionsLoaded(Message):
    """Histograms of the open file's sampled examples."""

    generation: int
    distributions: Distributions


@dataclass(eq=False)
class SearchProgressed(Message):
    """New matching lines of search `search_id`; `finished` on the last one (also cancelled)."""

    generation: int
    search_id: int
    progress: SearchProgress
    finished: bool = False
    cancelled: bool = False

    def can_replace(self, message: Message) -> bool:
        if not (
            isinstance(message, SearchProgressed)
            and message.generation == self.generation
            and message.search_id == self.search_id
        ):
            return False
        # Each report holds only the hits found since the one before: the newer report, which
        # is handled instead of this one, takes this one's hits along (found first, so first).
        message.progress = replace(message.progress, lines=self.progress.lines + message.progress.lines)
        return True


@dataclass(eq=False)
class DatasetWritten(Message):
    """A cleaned copy or a split was written; `paths` are the new files."""

    kind: str
    summary: str
    paths: list[Path]
