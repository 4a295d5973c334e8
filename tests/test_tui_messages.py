"""Messages: dataclasses with their old constructor signatures, one adapter from core events,
and progress reports that replace an older queued one of the same task."""

from __future__ import annotations

from array import array
from pathlib import Path

from textual.app import App
from textual.message import Message

from tunedeck.core.linesearch import SearchProgress
from tunedeck.core.records import Job, JobRow
from tunedeck.core.service import ConnectionChanged, EventsAdded, JobMissing, JobsChanged, PollError
from tunedeck.tui.dataset_messages import (
    DatasetTaskFailed,
    DatasetWritten,
    IndexAdvanced,
    SearchProgressed,
    ValidationProgressed,
)
from tunedeck.tui.messages import (
    ConnectionUpdated,
    EventsArrived,
    JobNotFound,
    JobsLoaded,
    LaunchFailed,
    ModelsLoaded,
    PollFailed,
    message_for,
)


def job(job_id: str = "ftjob-1") -> Job:
    return Job.from_api({"id": job_id, "model": "m", "status": "running", "created_at": 1})


def hits(*lines: int, scanned: int = 0) -> SearchProgress:
    return SearchProgress(array("q", lines), scanned, 100, False)


def test_constructors_keep_their_positional_order_and_keywords():
    assert IndexAdvanced(3, complete=True).complete is True
    assert ValidationProgressed(3, 5, 10).done == 5
    searched = SearchProgressed(3, 7, hits(1), finished=True, cancelled=True)
    assert (searched.generation, searched.search_id, searched.finished, searched.cancelled) == (3, 7, True, True)
    assert DatasetTaskFailed(3, "index", "boom").task == "index"
    assert DatasetWritten("split", "2 files", [Path("a")]).paths == [Path("a")]
    assert JobsLoaded([]).source == "api" and ModelsLoaded(["m"]).error is None
    assert LaunchFailed("no", "auth").kind == "auth" and PollFailed("x").kind == ""
    assert IndexAdvanced(1, False).time > 0  # Textual's own set-up ran


def test_the_adapter_turns_each_core_event_into_its_message():
    row = JobRow(job())
    loaded = message_for(JobsChanged([row]))
    assert isinstance(loaded, JobsLoaded) and loaded.rows == [row] and loaded.source == "api"
    arrived = message_for(EventsAdded(job(), []))
    assert isinstance(arrived, EventsArrived) and arrived.job.id == "ftjob-1"
    updated = message_for(ConnectionChanged("error", "down"))
    assert isinstance(updated, ConnectionUpdated) and (updated.state, updated.detail) == ("error", "down")
    missing = message_for(JobMissing("ftjob-9", "no such job"))
    assert isinstance(missing, JobNotFound) and missing.job_id == "ftjob-9"
    failed = message_for(PollError("slow down", "rate_limit"))
    assert isinstance(failed, PollFailed) and (failed.message, failed.kind) == ("slow down", "rate_limit")


def test_a_newer_report_of_the_same_task_replaces_an_older_one():
    assert ValidationProgressed(1, 5, 10).can_replace(ValidationProgressed(1, 6, 10))
    assert not ValidationProgressed(1, 5, 10).can_replace(ValidationProgressed(2, 6, 10))
    assert IndexAdvanced(1, False).can_replace(IndexAdvanced(1, True))
    assert not IndexAdvanced(1, False).can_replace(ValidationProgressed(1, 6, 10))
    assert not SearchProgressed(1, 1, hits(1)).can_replace(SearchProgressed(1, 2, hits(2)))  # another search


def test_a_replaced_search_report_hands_its_hits_to_the_newer_one():
    older, newer = SearchProgressed(1, 1, hits(3, 8, scanned=40)), SearchProgressed(1, 1, hits(12, scanned=60))
    assert older.can_replace(newer)
    assert list(newer.progress.lines) == [3, 8, 12] and newer.progress.scanned_bytes == 60


class Collector(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.handled: list[Message] = []

    def on_validation_progressed(self, message: ValidationProgressed) -> None:
        self.handled.append(message)

    def on_search_progressed(self, message: SearchProgressed) -> None:
        self.handled.append(message)


async def test_queued_progress_collapses_to_the_newest_and_keeps_every_hit():
    app = Collector()
    async with app.run_test() as pilot:
        # Posted in one go, as a busy thread does between two frames.
        for done in (1, 2, 3):
            app.post_message(ValidationProgressed(1, done, 3))
        for line in (5, 9):
            app.post_message(SearchProgressed(1, 1, hits(line)))
        app.post_message(SearchProgressed(1, 1, hits(), finished=True))
        await pilot.pause()
        validations = [m for m in app.handled if isinstance(m, ValidationProgressed)]
        searches = [m for m in app.handled if isinstance(m, SearchProgressed)]
        assert [m.done for m in validations] == [3]
        assert len(searches) == 1 and searches[0].finished and list(searches[0].progress.lines) == [5, 9]
