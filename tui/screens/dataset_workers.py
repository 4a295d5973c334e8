"""The dataset screen's background work: index, validate, sample, search, clean, split.

A mixin of `DatasetScreen`. Every task runs in a thread worker that reads the file and
posts messages (tagged with the file's `generation`); none touches a widget. Long tasks
stop when `stop_event` is set (a new file opened, the screen closed) or their worker is
cancelled; the dataset engine itself is called only through its public functions.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from textual import work
from textual.worker import get_current_worker

from ..messages import (
    DatasetTaskFailed,
    DatasetWritten,
    DistributionsLoaded,
    IndexAdvanced,
    SearchProgressed,
    ValidationFinished,
    ValidationProgressed,
)
from ..safe_text import clean

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

    from tunedeck.core.datasets import ValidationReport
    from tunedeck.core.lineindex import LineIndex

    _Base = Screen
else:
    _Base = object

INDEX_REPORT_EVERY_S = 0.05
"""The index posts its growth at most this often (the list resizes on each post)."""
BACKGROUND_NICE = 10
T = TypeVar("T")


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with a usable stderr, once.

    The validator runs big files in worker processes, whose pool starts the tracker lazily,
    handing it `sys.stderr.fileno()`. Inside a Textual app that is the app's print capture,
    whose fileno() is -1, and the start fails ("bad value(s) in fds_to_keep"). Started here
    first, with stderr pointed at /dev/null for that moment, the pool finds it running.
    """
    from multiprocessing import resource_tracker

    try:
        if sys.stderr is not None and sys.stderr.fileno() >= 0:
            return
    except (AttributeError, OSError, ValueError):
        pass
    with open(os.devnull, "w") as null:
        captured, sys.stderr = sys.stderr, null
        try:
            resource_tracker.ensure_running()
        finally:
            sys.stderr = captured


def at_low_priority(work: Callable[[], T]) -> T:
    """Run `work` in a new thread whose CPU priority is below the UI's; wait for its result.

    On Linux the nice value belongs to the calling thread, and processes spawned from it
    inherit it: the validator's worker processes then run below the UI too. The thread is a
    new one because Textual's thread workers share a pool, and a thread cannot take back
    its priority once lowered. Elsewhere nice would slow the whole app, so it is left alone.
    """
    outcome: list[Any] = []

    def run() -> None:
        if sys.platform.startswith("linux"):
            try:
                os.nice(BACKGROUND_NICE)
            except OSError:
                pass
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="tunedeck-background", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def stopper(event: threading.Event) -> Callable[[], bool]:
    """True once `event` is set or the calling worker was cancelled."""
    worker = get_current_worker()
    return lambda: event.is_set() or worker.is_cancelled


class DatasetWorkers(_Base):
    generation: int
    stop_event: threading.Event

    @work(thread=True, group="dataset-index", exit_on_error=False, description="index the lines")
    def build_index(self, index: LineIndex, generation: int) -> None:
        stop = stopper(self.stop_event)
        last = 0.0

        def progressed(_: LineIndex) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= INDEX_REPORT_EVERY_S:
                last = now
                self.post_message(IndexAdvanced(generation, complete=False))

        try:
            complete = index.build(stop, progressed)
        except (OSError, ValueError) as exc:
            if not stop():
                self.post_message(DatasetTaskFailed(generation, "index", clean(exc)))
            return
        if complete:
            self.post_message(IndexAdvanced(generation, complete=True))

    @work(thread=True, group="dataset-validate", exclusive=True, exit_on_error=False, description="validate")
    def validate(self, path: Path, model: str | None, generation: int) -> None:
        from tunedeck.core.datasets import DatasetIOError, ValidationCancelled, validate_file

        stop = stopper(self.stop_event)
        start_resource_tracker()

        def progressed(done: int, total: int) -> None:
            self.post_message(ValidationProgressed(generation, done, total))

        try:
            report = at_low_priority(
                lambda: validate_file(path, model=model, progress=progressed, cancel=stop, max_issues=2000)
            )
        except ValidationCancelled:
            return
        except (DatasetIOError, ValueError) as exc:
            self.post_message(DatasetTaskFailed(generation, "validation", clean(exc)))
            return
        self.post_message(ValidationFinished(generation, report))

    @work(thread=True, group="dataset-sample", exclusive=True, exit_on_error=False, description="histograms")
    def load_distributions(self, index: LineIndex, report: ValidationReport, generation: int) -> None:
        from tunedeck.core.datasample import from_report, sample

        stop = stopper(self.stop_event)
        bad = {issue.line for issue in report.errors if issue.line is not None}
        try:
            distributions = from_report(report) or at_low_priority(
                lambda: sample(index, report.checked_as, report.encoding, cancelled=stop, skip=bad)
            )
        except (OSError, ValueError) as exc:
            self.post_message(DatasetTaskFailed(generation, "stats", clean(exc)))
            return
        self.post_message(DistributionsLoaded(generation, distributions))

    @work(thread=True, group="dataset-search", exclusive=True, exit_on_error=False, description="search")
    def run_search(self, index: LineIndex, text: str, start_line: int, search_id: int, cancel: threading.Event, generation: int) -> None:
        from tunedeck.core.linesearch import SearchProgress, search

        stop = stopper(self.stop_event)

        def progressed(progress: SearchProgress) -> None:
            self.post_message(SearchProgressed(generation, search_id, progress))

        try:
            result = search(index, text, start_line, lambda: cancel.is_set() or stop(), progressed)
        except (OSError, ValueError) as exc:
            self.post_message(DatasetTaskFailed(generation, "search", clean(exc)))
            return
        done = SearchProgress(array("q"), index.size, index.size, True)
        self.post_message(SearchProgressed(generation, search_id, done, finished=True, cancelled=result.cancelled))

    @work(thread=True, group="dataset-write", exit_on_error=False, description="write a cleaned copy")
    def write_clean(self, path: Path, fmt: str, bad_lines: list[int] | None, generation: int) -> None:
        from tunedeck.core.cleancopy import CleanCopyError, write_clean_copy

        try:
            result = write_clean_copy(path, fmt, bad_lines=bad_lines, cancelled=stopper(self.stop_event))
        except CleanCopyError as exc:
            self.post_message(DatasetTaskFailed(generation, "cleaned copy", clean(exc)))
            return
        summary = f"wrote {result.target.name}: {result.kept:,} lines kept, {result.dropped:,} invalid left out"
        self.post_message(DatasetWritten("clean", summary, [result.target]))

    @work(thread=True, group="dataset-write", exit_on_error=False, description="split train/validation")
    def split(self, path: Path, share: float, generation: int) -> None:
        from tunedeck.core.datasets.split import SplitError, split_file

        try:
            result = split_file(path, share)
        except (SplitError, ValueError, OSError) as exc:
            hint = " (write a cleaned copy with w, then split that)" if getattr(exc, "data_error", False) else ""
            self.post_message(DatasetTaskFailed(generation, "split", clean(exc) + hint))
            return
        by = f", stratified by {result.stratified_by}" if result.stratified_by else ""
        summary = (
            f"{result.train_path.name}: {result.train_examples:,} · "
            f"{result.validation_path.name}: {result.validation_examples:,}{by}"
        )
        self.post_message(DatasetWritten("split", summary, [result.train_path, result.validation_path]))
