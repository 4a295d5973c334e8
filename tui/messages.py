"""Messages workers post; handlers on the app and screens apply them (workers never touch widgets).

Names are past tense: each says what happened, not what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasample import Distributions
    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.linesearch import SearchProgress
    from tunedeck.core.poller import JobPoller
    from tunedeck.core.records import Job, JobEvent, JobRow
    from tunedeck.core.service import Service


class ServiceOpened(Message):
    """The cache is open and the profile known (nothing has touched the network yet)."""

    def __init__(self, service: Service, poller: JobPoller) -> None:
        super().__init__()
        self.service = service
        self.poller = poller


class ServiceFailed(Message):
    """The cache or the config could not be opened; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class JobsLoaded(Message):
    """A fresh job list, newest first (from the cache or from the API)."""

    def __init__(self, rows: list[JobRow], source: str = "api") -> None:
        super().__init__()
        self.rows = rows
        self.source = source


class EventsArrived(Message):
    """New events of one job, oldest first; `job` is its latest state."""

    def __init__(self, job: Job, events: list[JobEvent]) -> None:
        super().__init__()
        self.job = job
        self.events = events


class JobNotFound(Message):
    """The backend has no job with this id (a stale cache entry or a typed id)."""

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail = detail


class ConnectionUpdated(Message):
    """The connection state changed: offline, connecting, online or error."""

    def __init__(self, state: str, detail: str = "") -> None:
        super().__init__()
        self.state = state
        self.detail = detail


class PollFailed(Message):
    """One poll failed (the loop goes on); `message` is for the user, `kind` an ApiError kind."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__()
        self.message = message
        self.kind = kind


class JobDetailLoaded(Message):
    """The Job screen's cached job and events (oldest first)."""

    def __init__(self, job: Job | None, events: list[JobEvent]) -> None:
        super().__init__()
        self.job = job
        self.events = events


class ModelsLoaded(Message):
    """Base models the backend lists (empty with `error` set when they could not be read)."""

    def __init__(self, models: list[str], error: str | None = None) -> None:
        super().__init__()
        self.models = models
        self.error = error


class JobLaunched(Message):
    """A launch uploaded its file and created `job`."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


class LaunchFailed(Message):
    """A launch failed; `message` says why (shown literally in the form)."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__()
        self.message = message
        self.kind = kind


class JobCancelled(Message):
    """A cancel request was accepted; `job` is its new state."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


class CancelFailed(Message):
    def __init__(self, job_id: str, message: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.message = message


# -- the dataset screen (each carries the `generation` of the file it is about, so a message
# from the file shown before is recognised and dropped) ------------------------------------


class IndexAdvanced(Message):
    """The line index of the open file grew (or completed)."""

    def __init__(self, generation: int, complete: bool) -> None:
        super().__init__()
        self.generation = generation
        self.complete = complete


class DatasetTaskFailed(Message):
    """A background task on the open file failed; `task` names it ("index", "validation"…)."""

    def __init__(self, generation: int, task: str, message: str) -> None:
        super().__init__()
        self.generation = generation
        self.task = task
        self.message = message


class ValidationProgressed(Message):
    def __init__(self, generation: int, done: int, total: int) -> None:
        super().__init__()
        self.generation = generation
        self.done = done
        self.total = total


class ValidationFinished(Message):
    """The dataset engine's report on the open file."""

    def __init__(self, generation: int, report: ValidationReport) -> None:
        super().__init__()
        self.generation = generation
        self.report = report


class DistributionsLoaded(Message):
    def __init__(self, generation: int, distributions: Distributions) -> None:
        super().__init__()
        self.generation = generation
        self.distributions = distributions


class SearchProgressed(Message):
    """New matching lines of search `search_id`; `finished` on the last one (also cancelled)."""

    def __init__(self, generation: int, search_id: int, progress: SearchProgress, finished: bool = False, cancelled: bool = False) -> None:
        super().__init__()
        self.generation = generation
        self.search_id = search_id
        self.progress = progress
        self.finished = finished
        self.cancelled = cancelled


class DatasetWritten(Message):
    """A cleaned copy or a split was written; `paths` are the new files."""

    def __init__(self, kind: str, summary: str, paths: list[Path]) -> None:
        super().__init__()
        self.kind = kind
        self.summary = summary
        self.paths = paths
