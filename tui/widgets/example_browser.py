"""The dataset browser: every example of one JSONL file, its errors, its figures, a search.

`ExampleBrowser` owns the open file and what is known about it. Opening is instant at any
size: the first 256 KB are indexed on the spot (the first page), the rest by a background
scan (core `LineIndex`) while the rows grow. The dataset engine validates in the background;
its errors sit under the list (enter jumps to the line and marks the field) and its figures
in the stats view. Search streams hits as it reads.

The browser's own thread workers index, validate, sample and search. They never touch a
widget: each posts messages tagged with the file's `generation`, and the handlers here apply
them on the UI thread, dropping those about a file no longer shown. A worker that fails
(expectedly, with `DatasetTaskFailed`, or with an unexpected exception) leaves nothing
showing as still under way.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import ContentSwitcher, Static
from textual.worker import Worker

from tunedeck.core.lineindex import FIRST_BATCH_BYTES, LineIndex
from tunedeck.core.linesearch import SearchMatches

from ..dataset_messages import (
    DatasetTaskFailed,
    DistributionsLoaded,
    IndexAdvanced,
    SearchProgressed,
    ValidationFinished,
    ValidationProgressed,
)
from ..safe_text import clean, one_line
from ..state import pass_on_failure
from .background_work import at_low_priority, start_resource_tracker, stopper
from .dataset_stats import DatasetStats
from .example_list import ExampleList
from .example_view import ExampleView, RawView, example_renderable
from .issue_list import IssueList

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import Issue, ValidationReport

VIEWS = {"example": "example-view", "raw": "raw-view", "stats": "stats"}
NARROW_BELOW = 100
"""Under this width the stats view takes the whole width (the list steps aside)."""


class ExampleBrowser(Vertical):
    """The example list and the errors under it, the line's views beside, the status line below."""

    def __init__(
        self,
        *,
        auto_index: bool = True,
        validate: bool = True,
        first_batch: int = FIRST_BATCH_BYTES,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.auto_index = auto_index
        self.auto_validate = validate
        self.first_batch = first_batch
        self.examples = ExampleList(id="examples")
        self.examples.mark_for = self.mark_for
        self.issue_list = IssueList(id="issues")
        self.stats_view = DatasetStats(id="stats")
        self.path: Path | None = None
        self.index: LineIndex | None = None
        self.generation = 0
        self.stop_event = threading.Event()
        """Set when the open file is closed (another one opened, the screen closed)."""
        self.model: str | None = None
        """The base model chosen in the stats view (None: the engine's default for the format)."""
        self.status_line = ""
        """The status line as plain text (tests read it)."""
        self._reset_file_state()

    def _reset_file_state(self) -> None:
        self.task_workers: dict[str, Worker] = {}
        """The worker running each task ("index", "validation", "stats", "search") on this file."""
        self.index_stopped = False
        """The background index failed: the rows stop where it got to."""
        self.report: ValidationReport | None = None
        self.validation_fraction: float | None = None
        self.error_lines: list[int] = []
        self._error_set: set[int] = set()
        self.issues_by_line: dict[int, list[Issue]] = {}
        self.chosen_issue: Issue | None = None
        self.search: SearchMatches | None = None
        self.search_cancel = threading.Event()
        self.search_id = 0
        self._search_jumped = False
        self.errors_only = False
        self.pending_jump: int | None = None
        self.view = "example"

    def compose(self) -> ComposeResult:
        with Horizontal(id="dataset-main"):
            with Vertical(id="dataset-left"):
                yield self.examples
                yield self.issue_list
            with ContentSwitcher(initial="example-view", id="dataset-right"):
                yield ExampleView(id="example-view")
                yield RawView(id="raw-view")
                yield self.stats_view
        yield Static(id="dataset-status")

    def on_mount(self) -> None:
        self.refresh_status()

    def on_unmount(self) -> None:
        self.close_file()

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width < NARROW_BELOW, "-narrow")

    # -- opening -----------------------------------------------------------------------------

    def open_file(self, path: Path) -> bool:
        """Show `path` from its first line; index and validate it in the background."""
        try:
            index = LineIndex.open(path, self.first_batch)
        except OSError as exc:
            self.notify(f"{clean(path)}: {clean(exc.strerror or exc)}", title="cannot open", severity="error", markup=False)
            return False
        self.close_file()
        self.generation += 1
        self.stop_event = threading.Event()
        self.path, self.index = path, index
        self._reset_file_state()
        self.query_one(ContentSwitcher).current = VIEWS["example"]
        self.set_class(False, "-stats")
        self.examples.set_index(index)
        self.issue_list.reset()
        self.stats_view.reset()
        self.examples.focus()
        if self.auto_index and not index.complete:
            self.task_workers["index"] = self.build_index(index, self.generation)
        if self.auto_validate:
            self.task_workers["validation"] = self.validate(path, self.model, self.generation)
        self.refresh_status()
        return True

    def close_file(self) -> None:
        self.stop_event.set()
        self.search_cancel.set()
        if self.index is not None:
            self.index.close()

    def index_step(self, max_bytes: int) -> None:
        """Index the next `max_bytes` in this thread (tests drive the index with it)."""
        assert self.index is not None
        self.index.scan_step(max_bytes)
        self.post_message(IndexAdvanced(self.generation, self.index.complete))

    # -- background work (thread workers: they read the file and post messages) ---------------

    @work(thread=True, group="dataset-index", exit_on_error=False, description="index the lines")
    def build_index(self, index: LineIndex, generation: int) -> None:
        stop = stopper(self.stop_event)

        # One post per scan step (8 MB), unthrottled: a newer IndexAdvanced replaces one still
        # queued, and handling one takes about a millisecond (measured with bench/browse.py).
        def progressed(_: LineIndex) -> None:
            self.post_message(IndexAdvanced(generation, complete=False))

        try:
            complete = index.build(stop, progressed)
        except (OSError, ValueError) as exc:
            if not stop():
                self.post_message(DatasetTaskFailed(generation, "index", str(exc)))
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
            self.post_message(DatasetTaskFailed(generation, "validation", str(exc)))
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
            self.post_message(DatasetTaskFailed(generation, "stats", str(exc)))
            return
        self.post_message(DistributionsLoaded(generation, distributions))

    @work(thread=True, group="dataset-search", exclusive=True, exit_on_error=False, description="search")
    def run_search(self, index: LineIndex, text: str, start_line: int, search_id: int, cancel: threading.Event, generation: int) -> None:
        from tunedeck.core.linesearch import SearchProgress, search

        stop = stopper(self.stop_event)

        def progressed(progress: SearchProgress) -> None:
            self.post_message(SearchProgressed(generation, search_id, progress))

        try:
            cancelled = search(index, text, start_line, lambda: cancel.is_set() or stop(), progressed).cancelled
        except (OSError, ValueError) as exc:
            self.post_message(DatasetTaskFailed(generation, "search", str(exc)))
            cancelled = True
        done = SearchProgress(array("q"), index.size, index.size, True)
        self.post_message(SearchProgressed(generation, search_id, done, finished=True, cancelled=cancelled))

    # -- background results ----------------------------------------------------------------------

    def on_index_advanced(self, message: IndexAdvanced) -> None:
        message.stop()
        if message.generation != self.generation or self.index is None:
            return
        self.examples.rows_changed()
        pending = self.pending_jump
        if pending is not None and (pending <= self.index.line_count or self.index.complete):
            self.pending_jump = None
            self.goto_line(pending)
        self.refresh_status()

    def on_validation_progressed(self, message: ValidationProgressed) -> None:
        message.stop()
        if message.generation == self.generation and message.total:
            self.validation_fraction = message.done / message.total
            self.refresh_status()

    def on_validation_finished(self, message: ValidationFinished) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        report = self.report = message.report
        self.validation_fraction = None
        by_line: dict[int, list[Issue]] = {}
        for issue in [*report.errors, *report.warnings]:
            if issue.line is not None:
                by_line.setdefault(issue.line, []).append(issue)
        self.issues_by_line = by_line
        self.error_lines = sorted({i.line for i in report.errors if i.line is not None})
        self._error_set = set(self.error_lines)
        self.issue_list.show_report(report)
        self.stats_view.show_report(report)
        self.examples.refresh_marks()
        if self.examples.current_line is not None:
            self.show_line(self.examples.current_line)
        if self.index is not None:
            self.task_workers["stats"] = self.load_distributions(self.index, report, self.generation)
        self.refresh_status()

    def on_distributions_loaded(self, message: DistributionsLoaded) -> None:
        message.stop()
        if message.generation == self.generation:
            self.stats_view.show_distributions(message.distributions)

    def on_search_progressed(self, message: SearchProgressed) -> None:
        message.stop()
        search = self.search
        if message.generation != self.generation or search is None or message.search_id != self.search_id:
            return
        search.add(message.progress)
        if message.finished:
            search.finished, search.cancelled = True, message.cancelled
        if not self._search_jumped and search.first_after_start is not None:
            self._search_jumped = True
            self.goto_line(search.first_after_start, keep_filter=True)
        self.examples.refresh_marks()
        self.refresh_status()

    def on_dataset_task_failed(self, message: DatasetTaskFailed) -> None:
        message.stop()
        if message.generation != self.generation:
            return
        self.notify(clean(message.message), title=f"{message.task} failed", severity="error", markup=False, timeout=10)
        if message.task != "search":  # a search's end comes with its last SearchProgressed, which names the search
            self._task_stopped(message.task)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # An unexpected exception ends a worker without its last message: once the app shows
        # it, put right what the task left showing as under way.
        if not pass_on_failure(self, event):
            return
        task = next((name for name, worker in self.task_workers.items() if worker is event.worker), None)
        if task is not None:
            self._task_stopped(task)

    def _task_stopped(self, task: str) -> None:
        """`task` on the open file ended without its result: show nothing as still under way."""
        self.task_workers.pop(task, None)
        if task == "index":
            self.index_stopped = True
            self.pending_jump = None
            self.examples.follow_end = False
            self.search_cancel.set()  # a search waits for the index where it has not got to
        elif task == "validation":
            self.validation_fraction = None
            if self.report is None:
                self.issue_list.show_unavailable("validation failed")
                self.stats_view.show_progress(one_line("validation failed", "red"))
            else:  # a recount for another base model: the report shown stays
                self.stats_view.show_recount_failed()
        elif task == "search" and self.search is not None:
            self.search.finished, self.search.cancelled = True, True
        self.refresh_status()

    # -- showing a line ------------------------------------------------------------------------

    def mark_for(self, line: int) -> str | None:
        if line in self.issues_by_line:
            return "error" if line in self._error_set else "warning"
        if self.search is not None and line in self.search:
            return "match"
        return None

    def on_example_list_highlighted(self, message: ExampleList.Highlighted) -> None:
        message.stop()
        if self.chosen_issue is not None and self.chosen_issue.line != message.line:
            self.chosen_issue = None
        self.show_line(message.line)

    def show_line(self, line: int) -> None:
        if self.index is None:
            return
        right = self.query_one("#dataset-right")
        right.border_title = f"line {line:,} · {self.view if self.view != 'example' else 'conversation'}"
        if self.view == "example":
            fmt = self.report.checked_as if self.report is not None else None
            search = self.search.text if self.search is not None else None
            body = example_renderable(self.index, line, fmt, self.issues_by_line.get(line, []), self.chosen_issue, search)
            self.query_one(ExampleView).show(body)
        elif self.view == "raw":
            self.query_one(RawView).show(self.index, line)

    def _index_state(self) -> str:
        """How far the index is, as a suffix of the line count ("" once complete)."""
        assert self.index is not None
        if self.index.complete:
            return ""
        if self.index_stopped:
            return f" (index stopped at {self.index.fraction:.0%})"
        return f" (indexing {self.index.fraction:.0%})"

    def format_status_line(self) -> str:
        """The status line: file, index, validation, search, filter (plain text)."""
        if self.path is None or self.index is None:
            return "no file open · o opens one"
        parts = [self.path.name, f"{self.index.line_count:,} lines" + self._index_state()]
        if self.pending_jump is not None:
            parts.append(f"line {self.pending_jump:,}: waiting for the index")
        if self.validation_fraction is not None:
            parts.append(f"validating {self.validation_fraction:.0%}")
        elif self.report is not None:
            report = self.report
            parts.append(f"{report.error_count:,} errors · {report.warning_count:,} warnings" if report.error_count or report.warning_count else "valid")
        search = self.search
        if search is not None:
            found = f"/{search.text}: {search.count:,} match{'es' if search.count != 1 else ''}"
            if not search.finished:
                found += f" ({search.scanned_bytes / max(1, search.total_bytes):.0%}, esc cancels)"
            elif search.cancelled:
                found += " (cancelled)"
            parts.append(found)
        if self.errors_only:
            parts.append("errors only")
        return " · ".join(parts)

    def refresh_status(self) -> None:
        self.status_line = self.format_status_line()
        self.query_one("#dataset-status", Static).update(one_line(self.status_line))
        title = "examples"
        if self.index is not None:
            lines = f"{self.index.line_count:,} lines"
            if self.errors_only:
                lines = f"errors only: {len(self.error_lines):,} of {lines}"
            title += f" · {lines}" + self._index_state()
        self.examples.border_title = title

    # -- choosing in the lists ------------------------------------------------------------------

    def on_issue_list_chosen(self, message: IssueList.Chosen) -> None:
        message.stop()
        issue = message.issue
        if issue.line is None:
            self.notify("this issue is about the whole file", markup=False)
            return
        self.chosen_issue = issue
        self.goto_line(issue.line, keep_filter=True)
        self.show_line(issue.line)
        self.examples.focus()

    def on_dataset_stats_model_chosen(self, message: DatasetStats.ModelChosen) -> None:
        from tunedeck.core.datasets.models import model_info

        message.stop()
        self.model = message.model
        if self.report is not None and self.path is not None and model_info(message.model).encoding != self.report.encoding:
            self.validation_fraction = 0.0
            self.task_workers["validation"] = self.validate(self.path, self.model, self.generation)
            self.refresh_status()

    # -- navigation -------------------------------------------------------------------------------

    def cursor_line(self) -> int:
        return self.examples.current_line or 1

    def goto_line(self, line: int, keep_filter: bool = False) -> None:
        """Put the cursor on `line`; wait for the index when it has not got there yet."""
        if self.index is None:
            return
        line = max(1, line)
        if self.errors_only and not keep_filter:
            self.set_errors_only(False)
        if line <= self.index.line_count:
            self.examples.go_to_line(line)
        elif not self.index.complete and not self.index_stopped:
            self.pending_jump = line
            self.examples.go_to_line(self.index.line_count)
        else:
            count = f"{self.index.line_count:,} lines"
            self.notify(f"only {count} are indexed" if self.index_stopped else f"the file has {count}", markup=False)
            self.examples.go_to_line(self.index.line_count)
        self.refresh_status()

    def _neighbour_error(self, forward: bool) -> int | None:
        lines = self.error_lines
        if not lines:
            return None
        here = self.cursor_line()
        if forward:
            at = bisect_right(lines, here)
            return lines[at] if at < len(lines) else lines[0]
        at = bisect_left(lines, here)
        return lines[at - 1] if at > 0 else lines[-1]

    def jump_to_error(self, forward: bool) -> None:
        if self.report is None:
            self.notify("the errors show once validation finishes", markup=False)
            return
        line = self._neighbour_error(forward)
        if line is None:
            self.notify("no errors in this file", markup=False)
            return
        self.chosen_issue = self.issues_by_line[line][0]
        self.goto_line(line, keep_filter=True)
        self.show_line(line)
        self.issue_list.point_at(self.chosen_issue)

    def step(self, forward: bool) -> None:
        """To the next (previous) search hit while a search has hits, else to the next error."""
        if self.search is None or not self.search.count:
            self.jump_to_error(forward)
            return
        current = self.cursor_line()
        line = self.search.next_after(current) if forward else self.search.previous_before(current)
        if line is not None:
            self.goto_line(line, keep_filter=True)

    def set_errors_only(self, on: bool) -> None:
        self.errors_only = on
        self.examples.set_filter(self.error_lines if on else None)
        self.refresh_status()

    def toggle_errors_only(self) -> None:
        if not self.errors_only and self.report is None:
            self.notify("the errors show once validation finishes", markup=False)
        elif not self.errors_only and not self.error_lines:
            self.notify("no lines with errors", markup=False)
        else:
            self.set_errors_only(not self.errors_only)

    def start_search(self, text: str) -> None:
        """Search `text` from the current line on (wrapping), replacing any running search."""
        assert self.index is not None
        self.search_cancel.set()
        self.search_cancel = threading.Event()
        self.search_id += 1
        start = self.examples.current_line or 1
        self.search = SearchMatches(text, start)
        self._search_jumped = False
        self.examples.highlight = text
        self.examples.refresh_marks()
        self.task_workers["search"] = self.run_search(self.index, text, start, self.search_id, self.search_cancel, self.generation)
        self.refresh_status()

    def show_view(self, view: str) -> None:
        """Show the line as "example" (the conversation) or "raw" JSON, or the file's "stats"."""
        self.view = view
        self.query_one(ContentSwitcher).current = VIEWS[view]
        self.set_class(view == "stats", "-stats")
        if view == "stats":
            self.query_one("#dataset-right").border_title = "stats"
        elif self.examples.current_line is not None:
            self.show_line(self.examples.current_line)

    def toggle_view(self, view: str) -> None:
        """Show `view`, or the conversation when it shows already."""
        self.show_view("example" if self.view == view else view)

    def toggle_issues_focus(self) -> None:
        (self.examples if self.issue_list.has_focus else self.issue_list).focus()

    def step_back(self) -> bool:
        """Cancel the search, else clear it, leave the filter, or the view; False when none was on."""
        if self.search is not None and not self.search.finished:
            self.search_cancel.set()
        elif self.search is not None:
            self.search = None
            self.examples.highlight = None
            self.examples.refresh_marks()
            self.show_line(self.cursor_line())
        elif self.errors_only:
            self.set_errors_only(False)
        elif self.view != "example":
            self.show_view("example")
        else:
            return False
        self.refresh_status()
        return True

    def describe(self) -> dict[str, Any]:
        """What the browser shows, as plain data (tests and the benchmark read it)."""
        return {
            "path": str(self.path) if self.path else None,
            "line": self.examples.current_line,
            "lines": self.index.line_count if self.index else 0,
            "indexed": self.index.complete if self.index else False,
            "view": self.view,
            "errors_only": self.errors_only,
            "matches": self.search.count if self.search else None,
        }
