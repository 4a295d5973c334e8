"""Dataset browser: look at a JSONL file before paying for training on it.

Opening is instant at any size: the first 256 KB are indexed on the spot (the first page),
the rest by a background scan (core `LineIndex`) while the rows grow. The dataset engine
validates in the background; its errors sit under the list (enter jumps to the line and
marks the field) and its figures in the stats view. Search streams hits as it reads.
Every background task posts messages tagged with the file's `generation`; handlers here
drop those about a file no longer shown.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static

from tunedeck.core.lineindex import FIRST_BATCH_BYTES, LineIndex
from tunedeck.core.linesearch import SearchMatches

from ..messages import (
    DatasetTaskFailed,
    DatasetWritten,
    DistributionsLoaded,
    IndexAdvanced,
    SearchProgressed,
    ValidationFinished,
    ValidationProgressed,
)
from ..safe_text import clean, one_line
from ..widgets.dataset_stats import DatasetStats
from ..widgets.example_list import ExampleList
from ..widgets.example_view import ExampleView, RawView, example_renderable
from ..widgets.header import AppHeader
from ..widgets.issue_list import IssueList
from .dataset_actions import DatasetActions, status_text
from .dataset_workers import DatasetWorkers

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import Issue, ValidationReport

VIEWS = {"example": "example-view", "raw": "raw-view", "stats": "stats"}
NARROW_BELOW = 100
"""Under this width the stats view takes the whole width (the list steps aside)."""


class DatasetScreen(DatasetActions, DatasetWorkers, Screen):
    BINDINGS = [
        Binding("o", "open", "Open", id="dataset.open", tooltip="Open another dataset file"),
        Binding("colon,ctrl+g", "goto", "Line", id="dataset.goto", tooltip="Jump to line N"),
        Binding("slash", "search", "Search", id="dataset.search", tooltip="Search text across the file"),
        Binding("n", "next", "Next", show=False, id="dataset.next", tooltip="Next search hit (next error when no search)"),
        Binding("N", "previous", "Previous", show=False, id="dataset.previous", tooltip="Previous search hit (or error)"),
        Binding("right_square_bracket", "next_error", "Next error", id="dataset.next_error", tooltip="Next line with an error"),
        Binding("left_square_bracket", "previous_error", "Prev error", show=False, id="dataset.previous_error", tooltip="Previous line with an error"),
        Binding("e", "errors_only", "Errors only", id="dataset.errors_only", tooltip="Show only lines with errors (again: all)"),
        Binding("r,v", "raw", "Raw", id="dataset.raw", tooltip="Raw JSON of the example (again: conversation)"),
        Binding("t", "stats", "Stats", id="dataset.stats", tooltip="Tokens, cost and histograms (again: the example)"),
        Binding("i", "issues", "Issues", show=False, id="dataset.issues", tooltip="Move to the errors and warnings list"),
        Binding("s", "split", "Split", id="dataset.split", tooltip="Split into train and validation files"),
        Binding("w", "write_clean", "Clean copy", id="dataset.clean", tooltip="Write a copy without the invalid lines"),
        Binding("l", "launch", "Launch", id="dataset.launch", tooltip="Launch a job on this file"),
        Binding("escape", "back", "Back", id="dataset.back", tooltip="Cancel the search, leave a filter or view, then go back"),
    ]

    HELP = "Dataset: every example of a JSONL file, its errors and its figures (opens instantly at any size)."

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        auto_index: bool = True,
        validate: bool = True,
        first_batch: int = FIRST_BATCH_BYTES,
    ) -> None:
        super().__init__()
        self.initial_path = Path(path) if path else None
        self.auto_index = auto_index
        self.auto_validate = validate
        self.first_batch = first_batch
        self.path: Path | None = None
        self.index: LineIndex | None = None
        self.generation = 0
        self.stop_event = threading.Event()
        self.model: str | None = None
        """The base model chosen in the stats view (None: the engine's default for the format)."""
        self.status_text = ""
        """The status line as plain text (tests read it)."""
        self._reset_file_state()

    def _reset_file_state(self) -> None:
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
        self.written: dict[str, list[Path]] = {}
        self.view = "example"

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield AppHeader("dataset", id="header")
        with Horizontal(id="dataset-main"):
            with Vertical(id="dataset-left"):
                yield ExampleList(id="examples")
                yield IssueList(id="issues")
            with ContentSwitcher(initial="example-view", id="dataset-right"):
                yield ExampleView(id="example-view")
                yield RawView(id="raw-view")
                yield DatasetStats(id="stats")
        yield Static(id="dataset-status")
        yield Footer()

    @property
    def examples(self) -> ExampleList:
        return self.query_one(ExampleList)

    def on_mount(self) -> None:
        self.examples.mark_for = self.mark_for
        self.on_resize()
        self.examples.focus()
        if self.initial_path is not None:
            self.open_file(self.initial_path)
        else:
            self.call_after_refresh(self.action_open)
        self.refresh_status()

    def on_unmount(self) -> None:
        self._close_file()

    def on_resize(self) -> None:
        self.set_class(self.app.size.width < NARROW_BELOW, "-narrow")

    # -- opening -----------------------------------------------------------------------------

    def open_file(self, path: Path) -> bool:
        """Show `path` from its first line; index and validate it in the background."""
        try:
            index = LineIndex.open(path, self.first_batch)
        except OSError as exc:
            self.notify(f"{clean(path)}: {clean(exc.strerror or exc)}", title="cannot open", severity="error", markup=False)
            return False
        self._close_file()
        self.generation += 1
        self.stop_event = threading.Event()
        self.path, self.index = path, index
        self._reset_file_state()
        self.query_one(ContentSwitcher).current = VIEWS["example"]
        self.set_class(False, "-stats")
        self.query_one(AppHeader).set_title(Text.assemble("dataset ", one_line(path.name)))
        self.examples.set_index(index)
        self.query_one(IssueList).reset()
        self.query_one(DatasetStats).reset()
        self.examples.focus()
        if self.auto_index and not index.complete:
            self.build_index(index, self.generation)
        if self.auto_validate:
            self.validate(path, self.model, self.generation)
        self.remember(path)
        self.refresh_status()
        return True

    def _close_file(self) -> None:
        self.stop_event.set()
        self.search_cancel.set()
        if self.index is not None:
            self.index.close()

    def index_step(self, max_bytes: int) -> None:
        """Index the next `max_bytes` in this thread (tests drive the index with it)."""
        assert self.index is not None
        self.index.scan_step(max_bytes)
        self.post_message(IndexAdvanced(self.generation, self.index.complete))

    @work(group="dataset-recent", exit_on_error=False, description="remember the file")
    async def remember(self, path: Path) -> None:
        service = getattr(self.app, "service", None)
        if service is not None:
            from tunedeck.core.recent import remember_file

            try:
                await remember_file(service.cache, path)
            except Exception:  # the list of recent files is a convenience; never fail on it
                pass

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

    def refresh_status(self) -> None:
        self.status_text = status_text(self)
        self.query_one("#dataset-status", Static).update(Text(self.status_text, end=""))
        title = "examples"
        if self.index is not None:
            lines = f"{self.index.line_count:,} lines"
            if self.errors_only:
                lines = f"errors only: {len(self.error_lines):,} of {lines}"
            title += f" · {lines}" + ("" if self.index.complete else f" (indexing {self.index.fraction:.0%})")
        self.examples.border_title = title

    # -- background results ----------------------------------------------------------------------

    def on_index_advanced(self, message: IndexAdvanced) -> None:
        if message.generation != self.generation or self.index is None:
            return
        self.examples.rows_changed()
        pending = self.pending_jump
        if pending is not None and (pending <= self.index.line_count or self.index.complete):
            self.pending_jump = None
            self.goto_line(pending)
        self.refresh_status()

    def on_validation_progressed(self, message: ValidationProgressed) -> None:
        if message.generation == self.generation and message.total:
            self.validation_fraction = message.done / message.total
            self.refresh_status()

    def on_validation_finished(self, message: ValidationFinished) -> None:
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
        self.query_one(IssueList).show_report(report)
        self.query_one(DatasetStats).show_report(report)
        self.examples.refresh_marks()
        if self.examples.current_line is not None:
            self.show_line(self.examples.current_line)
        if self.index is not None:
            self.load_distributions(self.index, report, self.generation)
        self.refresh_status()

    def on_distributions_loaded(self, message: DistributionsLoaded) -> None:
        if message.generation == self.generation:
            self.query_one(DatasetStats).show_distributions(message.distributions)

    def on_dataset_task_failed(self, message: DatasetTaskFailed) -> None:
        if message.generation != self.generation:
            return
        if message.task == "validation":
            self.validation_fraction = None
        self.notify(message.message, title=f"{message.task} failed", severity="error", markup=False, timeout=10)
        self.refresh_status()

    def on_search_progressed(self, message: SearchProgressed) -> None:
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

    def on_dataset_written(self, message: DatasetWritten) -> None:
        self.written[message.kind] = message.paths
        self.notify(message.summary + " · l launches with it", title=message.kind, markup=False, timeout=8)

    def on_issue_list_chosen(self, message: IssueList.Chosen) -> None:
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

        self.model = message.model
        if self.report is not None and self.path is not None and model_info(message.model).encoding != self.report.encoding:
            self.validation_fraction = 0.0
            self.validate(self.path, self.model, self.generation)
            self.refresh_status()

    # -- navigation -------------------------------------------------------------------------------

    def goto_line(self, line: int, keep_filter: bool = False) -> None:
        """Put the cursor on `line`; wait for the index when it has not got there yet."""
        if self.index is None:
            return
        line = max(1, line)
        if self.errors_only and not keep_filter:
            self._set_errors_only(False)
        if line <= self.index.line_count:
            self.examples.go_to_line(line)
        elif not self.index.complete:
            self.pending_jump = line
            self.examples.go_to_line(self.index.line_count)
        else:
            self.notify(f"the file has {self.index.line_count:,} lines", markup=False)
            self.examples.go_to_line(self.index.line_count)
        self.refresh_status()

    def _switch_view(self, view: str) -> None:
        self.view = view
        self.query_one(ContentSwitcher).current = VIEWS[view]
        self.set_class(view == "stats", "-stats")
        if view == "stats":
            self.query_one("#dataset-right").border_title = "stats"
        elif self.examples.current_line is not None:
            self.show_line(self.examples.current_line)

    def action_raw(self) -> None:
        self._switch_view("example" if self.view == "raw" else "raw")

    def action_stats(self) -> None:
        self._switch_view("example" if self.view == "stats" else "stats")

    def action_issues(self) -> None:
        issues = self.query_one(IssueList)
        (self.examples if issues.has_focus else issues).focus()

    def action_back(self) -> None:
        if self.search is not None and not self.search.finished:
            self.search_cancel.set()
        elif self.search is not None:
            self.search = None
            self.examples.highlight = None
            self.examples.refresh_marks()
            self.show_line(self._current())
        elif self.errors_only:
            self._set_errors_only(False)
        elif self.view != "example":
            self._switch_view("example")
        else:
            self.app.pop_screen()
            return
        self.refresh_status()

    def describe(self) -> dict[str, Any]:
        """What the screen shows, as plain data (tests and the benchmark read it)."""
        return {
            "path": str(self.path) if self.path else None,
            "line": self.examples.current_line,
            "lines": self.index.line_count if self.index else 0,
            "indexed": self.index.complete if self.index else False,
            "view": self.view,
            "errors_only": self.errors_only,
            "matches": self.search.count if self.search else None,
        }
