"""Dataset screen: look at a JSONL file before paying for training on it.

The screen holds the keys, the dialogs and the file actions; the file itself, everything
learnt about it and the background work on it belong to the `ExampleBrowser` it shows
(`widgets/example_browser.py`). File actions (a train/validation split, a copy without the
invalid lines) run in the screen's own thread workers and post `DatasetWritten`; launching
opens the Launch screen on the file last written (or the one shown).
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker

from tunedeck.core.lineindex import FIRST_BATCH_BYTES

from ..dataset_messages import DatasetTaskFailed, DatasetWritten
from ..safe_text import clean, one_line
from ..state import pass_on_failure
from ..widgets.background_work import stopper
from ..widgets.example_browser import ExampleBrowser
from ..widgets.header import AppHeader
from .dataset_prompts import AskScreen, OpenDatasetScreen


class DatasetScreen(Screen):
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
        self.browser = ExampleBrowser(auto_index=auto_index, validate=validate, first_batch=first_batch, id="dataset-browser")
        self.written: dict[str, list[Path]] = {}
        """Files the file actions wrote from the file shown, by kind ("split", "clean"); launch uses them."""

    def compose(self) -> ComposeResult:
        yield AppHeader("dataset", id="header")
        yield self.browser
        yield Footer()

    def on_mount(self) -> None:
        self.browser.examples.focus()
        if self.initial_path is not None:
            self.open_file(self.initial_path)
        else:
            self.call_after_refresh(self.action_open)

    def open_file(self, path: Path) -> bool:
        """Show `path` from its first line (the browser indexes and validates it)."""
        if not self.browser.open_file(path):
            return False
        self.written = {}
        self.query_one(AppHeader).set_title(Text.assemble("dataset ", one_line(path.name)))
        self.remember(path)
        return True

    @work(group="dataset-recent", exit_on_error=False, description="remember the file")
    async def remember(self, path: Path) -> None:
        service = getattr(self.app, "service", None)
        if service is not None:
            from tunedeck.core.recent import remember_file

            try:
                await remember_file(service.cache, path)
            except Exception:  # the list of recent files is a convenience; never fail on it
                pass

    # -- keys that move through the file ----------------------------------------------------------

    def action_next(self) -> None:
        self.browser.step(forward=True)

    def action_previous(self) -> None:
        self.browser.step(forward=False)

    def action_next_error(self) -> None:
        self.browser.jump_to_error(forward=True)

    def action_previous_error(self) -> None:
        self.browser.jump_to_error(forward=False)

    def action_errors_only(self) -> None:
        self.browser.toggle_errors_only()

    def action_raw(self) -> None:
        self.browser.toggle_view("raw")

    def action_stats(self) -> None:
        self.browser.toggle_view("stats")

    def action_issues(self) -> None:
        self.browser.toggle_issues_focus()

    def action_back(self) -> None:
        if not self.browser.step_back():
            self.app.pop_screen()

    # -- dialogs ------------------------------------------------------------------------------------

    async def action_open(self) -> None:
        recent: list[str] = []
        service = getattr(self.app, "service", None)
        if service is not None:
            from tunedeck.core.recent import recent_files

            try:
                recent = await recent_files(service.cache)
            except Exception:  # a convenience: an unreadable cache just lists nothing
                recent = []
        start = self.browser.path.parent if self.browser.path is not None else None

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.open_file(path)
            elif self.browser.path is None:
                self.app.pop_screen()  # opened without a file and none chosen: back

        self.app.push_screen(OpenDatasetScreen(recent, start), chosen)

    def action_goto(self) -> None:
        if self.browser.index is None:
            return

        def answered(value: str | None) -> None:
            if value and value.lstrip("-").isdigit():
                self.browser.goto_line(int(value))

        self.app.push_screen(AskScreen("Go to line", placeholder="line number", input_type="integer"), answered)

    def action_search(self) -> None:
        if self.browser.index is None:
            return
        last = self.browser.search.text if self.browser.search is not None else ""

        def answered(value: str | None) -> None:
            if value:
                self.browser.start_search(value)

        self.app.push_screen(AskScreen("Search the file (literal text; case-sensitive only with capitals)", value=last), answered)

    # -- file actions: split, clean copy, launch ---------------------------------------------------

    def action_split(self) -> None:
        path = self.browser.path
        if path is None:
            return
        generation = self.browser.generation

        def answered(value: str | None) -> None:
            try:
                share = float(value) if value else None
            except ValueError:
                share = None
            if share is None or not 0 < share < 1:
                if value:
                    self.notify("the validation share is a number between 0 and 1, e.g. 0.1", markup=False)
                return
            self.notify(f"splitting {clean(path.name)}…", markup=False)
            self.split(path, share, generation)

        self.app.push_screen(AskScreen("Share of examples held out for validation", value="0.1", input_type="number"), answered)

    def action_write_clean(self) -> None:
        path, report = self.browser.path, self.browser.report
        if path is None:
            return
        if report is None:
            self.notify("which lines are invalid is known once validation finishes", markup=False)
            return
        if report.error_count == 0:
            self.notify("no invalid lines: the file is its own clean copy", markup=False)
            return
        # A complete error list lets the copy skip lines by number; a cut one means checking each line again.
        bad = None if report.errors_truncated else sorted({i.line for i in report.errors if i.line is not None})
        self.notify(f"writing a copy of {clean(path.name)} without its invalid lines…", markup=False)
        self.write_clean(path, report.checked_as, bad, self.browser.generation, self.browser.stop_event)

    def action_launch(self) -> None:
        from dataclasses import replace

        from tunedeck.core.launch.request import FORMAT_METHODS

        from .launch import LaunchScreen

        if self.browser.path is None:
            return
        split = self.written.get("split")
        training = split[0] if split else (self.written.get("clean") or [self.browser.path])[0]
        validation = str(split[1]) if split else ""
        # What the browser found (its format picks the method; its errors warn in the form)
        # describes the file shown: a split or a clean copy written from it is a new file,
        # checked afresh by the pre-flight.
        report = self.browser.report if training == self.browser.path else None
        method = None
        if report is None and self.browser.report is not None:
            method = FORMAT_METHODS.get(self.browser.report.format or self.browser.report.checked_as)
        screen = LaunchScreen(training_path=str(training), validation_path=validation, report=report)
        if method is not None:
            screen.initial = replace(screen.initial, method=method)
        self.app.push_screen(screen)

    @work(thread=True, group="dataset-write", exit_on_error=False, description="write a cleaned copy")
    def write_clean(self, path: Path, fmt: str, bad_lines: list[int] | None, generation: int, file_closed: threading.Event) -> None:
        from tunedeck.core.cleancopy import CleanCopyError, write_clean_copy

        try:
            result = write_clean_copy(path, fmt, bad_lines=bad_lines, cancelled=stopper(file_closed))
        except CleanCopyError as exc:
            self.post_message(DatasetTaskFailed(generation, "cleaned copy", str(exc)))
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
            self.post_message(DatasetTaskFailed(generation, "split", f"{exc}{hint}"))
            return
        by = f", stratified by {result.stratified_by}" if result.stratified_by else ""
        summary = (
            f"{result.train_path.name}: {result.train_examples:,} · "
            f"{result.validation_path.name}: {result.validation_examples:,}{by}"
        )
        self.post_message(DatasetWritten("split", summary, [result.train_path, result.validation_path]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        pass_on_failure(self, event)  # the file actions leave nothing showing as under way

    def on_dataset_task_failed(self, message: DatasetTaskFailed) -> None:
        if message.generation == self.browser.generation:
            failed = f"{message.task} failed"
            self.notify(clean(message.message), title=failed, severity="error", markup=False, timeout=10)

    def on_dataset_written(self, message: DatasetWritten) -> None:
        self.written[message.kind] = message.paths
        self.notify(clean(message.summary) + " · l launches with it", title=message.kind, markup=False, timeout=8)
