"""Dataset screen: look at a JSONL file before paying for training on it.

The screen holds the keys, the dialogs and the file actions; the file itself, everything
learnt about it and the background work on it belong to the `ExampleBrowser` it shows
(`widgets/example_browser.py`). File actions (a train/validation split, a copy without the
invalid lines, or that copy split in one step) ask where to write (next to the source by
default), ask again before replacing a file, run in the screen's own thread workers and post
`DatasetWritten`. The line a file is left at is kept with the recent files (core `recent`),
so opening it again returns there. Launching opens the Launch screen on the file last
written (or the one shown).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Input
from textual.widgets._select import SelectOverlay
from textual.worker import Worker

from tunedeck.core.lineindex import FIRST_BATCH_BYTES

from ..dataset_messages import DatasetTaskFailed, DatasetWritten
from ..safe_text import clean, one_line
from ..state import pass_on_failure
from ..widgets.background_work import stopper
from ..widgets.example_browser import ExampleBrowser
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter
from .confirm import ConfirmScreen
from .dataset_prompts import AskScreen, OpenDatasetScreen, WriteFilesScreen, WritePlan


class LineRecalled(Message):
    """The line a file opened again was left at (read from the recent files)."""

    def __init__(self, generation: int, line: int) -> None:
        super().__init__()
        self.generation = generation
        self.line = line


class DatasetScreen(Screen):
    # The keys that open a prompt are priority bindings: they run when the app reads the key,
    # and the action waits until the prompt is mounted and its field focused, so the keys
    # queued behind (`:177⏎` typed in one burst, a paste over SSH) land in the field.
    BINDINGS = [
        Binding("o", "open", "Open", id="dataset.open", priority=True, tooltip="Open another dataset file"),
        Binding("colon,ctrl+g", "goto", "Line", id="dataset.goto", priority=True, tooltip="Jump to line N"),
        Binding("slash", "search", "Search", id="dataset.search", priority=True, tooltip="Search text across the file"),
        Binding("n", "next", "Next", show=False, id="dataset.next", tooltip="Next search hit (next error when no search)"),
        Binding("N", "previous", "Previous", show=False, id="dataset.previous", tooltip="Previous search hit (or error)"),
        Binding("right_square_bracket", "next_error", "Next error", id="dataset.next_error", tooltip="Next line with an error"),
        Binding("left_square_bracket", "previous_error", "Prev error", show=False, id="dataset.previous_error", tooltip="Previous line with an error"),
        Binding("e", "errors_only", "Errors only", id="dataset.errors_only", tooltip="Show only lines with errors (again: all)"),
        Binding("r,v", "raw", "Raw", id="dataset.raw", tooltip="Raw JSON of the example (again: conversation)"),
        Binding("t", "stats", "Stats", id="dataset.stats", tooltip="Tokens, cost and histograms (again: the example)"),
        Binding("i", "issues", "Issues", show=False, id="dataset.issues", tooltip="Move to the errors and warnings list"),
        Binding("s", "split", "Split", id="dataset.split", priority=True, tooltip="Split into train and validation files"),
        Binding("w", "write_clean", "Clean copy", id="dataset.clean", priority=True, tooltip="Write a copy without the invalid lines"),
        Binding("l", "launch", "Launch", id="dataset.launch", tooltip="Launch a job on this file"),
        Binding("escape", "back", "Back", id="dataset.back", tooltip="Cancel the search, leave a filter or view, then go back"),
        Binding("y", "copy_path", "Copy path", show=False, id="dataset.copy_path", tooltip="Copy the file's full path"),
    ]

    HELP = "Dataset: every example of a JSONL file, its errors and its figures (opens instantly at any size)."

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        auto_index: bool = True,
        validate: bool = True,
        first_batch: int = FIRST_BATCH_BYTES,
        ask_for_file: bool = True,
    ) -> None:
        """`ask_for_file`: with no `path`, open the file prompt once shown (the app's `d` opens it
        itself, before the next key is read)."""
        super().__init__()
        self.initial_path = Path(path) if path else None
        self.ask_for_file = ask_for_file
        self.browser = ExampleBrowser(auto_index=auto_index, validate=validate, first_batch=first_batch, id="dataset-browser")
        self.written: dict[str, list[Path]] = {}
        """Files the file actions wrote from the file shown, by kind ("split", "clean"); launch uses them."""

    def compose(self) -> ComposeResult:
        yield AppHeader("dataset", id="header")
        yield self.browser
        yield KeyFooter()

    def on_mount(self) -> None:
        self.browser.examples.focus()
        if self.initial_path is not None:
            self.open_file(self.initial_path)
        elif self.ask_for_file:
            self.call_after_refresh(self.action_open)

    def open_file(self, path: Path) -> bool:
        """Show `path` (the browser indexes and validates it), back at the line it was left at."""
        left = self.left_at()
        if not self.browser.open_file(path):
            return False
        self.written = {}
        self.query_one(AppHeader).set_title(Text.assemble("dataset ", one_line(path.name)))
        self.remember(path, left, self.browser.generation)
        return True

    def left_at(self) -> tuple[Path, int] | None:
        """The file shown and its line, to come back to when it is opened again."""
        line = self.browser.examples.current_line
        return (self.browser.path, line) if self.browser.path is not None and line is not None else None

    @work(group="dataset-recent", exit_on_error=False, description="remember the file")
    async def remember(self, path: Path, left: tuple[Path, int] | None, generation: int) -> None:
        """Record the file left and its line, put `path` first in the recent files, and return to its line."""
        service = getattr(self.app, "service", None)
        if service is None:
            return
        from tunedeck.core.recent import last_line, remember_file, remember_line

        try:
            if left is not None:  # first: `path` may be the file left (opened again)
                await remember_line(service.cache, *left)
            line = await last_line(service.cache, path)
            await remember_file(service.cache, path)
        except Exception:  # the list of recent files is a convenience; never fail on it
            return
        if line is not None:
            self.post_message(LineRecalled(generation, line))

    def on_line_recalled(self, message: LineRecalled) -> None:
        browser = self.browser
        # Not when the user has moved already (keys typed while the cache was read win).
        if message.generation == browser.generation and message.line > 1 and (browser.examples.current_line or 1) == 1:
            browser.goto_line(message.line)

    def on_unmount(self) -> None:
        left = self.left_at()
        service = getattr(self.app, "service", None)
        if left is None or service is None:
            return
        from tunedeck.core.recent import remember_line

        async def save() -> None:
            try:
                await remember_line(service.cache, *left)
            except Exception:  # a convenience, as above
                pass

        # An app worker: the screen's own are cancelled as it goes.
        self.app.run_worker(save(), group="dataset-recent", exit_on_error=False, description="remember the line")

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

    def action_copy_path(self) -> None:
        from ..clipboard import copy

        if self.browser.path is None:
            self.notify("no file open", markup=False)
            return
        copy(self.app, str(self.browser.path.resolve()), "the file's path")

    def action_back(self) -> None:
        if not self.browser.step_back():
            self.app.pop_screen()

    # -- dialogs ------------------------------------------------------------------------------------

    PROMPT_ACTIONS = frozenset({"open", "goto", "search", "split", "write_clean"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.PROMPT_ACTIONS and isinstance(self.focused, (Input, SelectOverlay)):
            return False  # typed into a field of the screen (the stats view's model): a character
        return True

    async def prompt(self, screen: ModalScreen[Any], answered: Callable[[Any], None]) -> None:
        """Open `screen` and focus its field before the next key is read (see BINDINGS)."""
        await self.app.push_screen(screen, answered)
        take_focus = getattr(screen, "take_focus", None)
        if take_focus is not None:
            take_focus()

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

        await self.prompt(OpenDatasetScreen(recent, start), chosen)

    async def action_goto(self) -> None:
        if self.browser.index is None:
            return

        def answered(value: str | None) -> None:
            if value and value.lstrip("-").isdigit():
                self.browser.goto_line(int(value))

        await self.prompt(AskScreen("Go to line", placeholder="line number", input_type="integer"), answered)

    async def action_search(self) -> None:
        if self.browser.index is None:
            return
        last = self.browser.search.text if self.browser.search is not None else ""

        def answered(value: str | None) -> None:
            if value:
                self.browser.start_search(value)

        await self.prompt(AskScreen("Search the file (literal text; case-sensitive only with capitals)", value=last), answered)

    # -- file actions: split, clean copy, launch ---------------------------------------------------

    async def action_split(self) -> None:
        from tunedeck.core.cleancopy import clean_copy_path
        from tunedeck.core.datasets.split import default_outputs

        path, report = self.browser.path, self.browser.report
        if path is None:
            return
        generation = self.browser.generation
        train, validation = default_outputs(path)
        # Invalid lines stop a split: offer the clean copy and its split as one step.
        with_clean = clean_copy_path(path) if report is not None and report.error_count else None
        screen = WriteFilesScreen(
            path, "split", train=train, validation=validation,
            clean_default=with_clean, clean_outputs=default_outputs(with_clean) if with_clean is not None else None,
        )
        await self.prompt(screen, lambda plan: self.confirm_writing(path, plan, generation))

    async def action_write_clean(self) -> None:
        from tunedeck.core.cleancopy import clean_copy_path

        path, report = self.browser.path, self.browser.report
        if path is None:
            return
        if report is None:
            self.notify("which lines are invalid is known once validation finishes", markup=False)
            return
        if report.error_count == 0:
            self.notify("no invalid lines: the file is its own clean copy", markup=False)
            return
        generation = self.browser.generation
        screen = WriteFilesScreen(path, "clean", clean_default=clean_copy_path(path))
        await self.prompt(screen, lambda plan: self.confirm_writing(path, plan, generation))

    def confirm_writing(self, path: Path, plan: WritePlan | None, generation: int) -> None:
        """Write what `plan` names, asking first when that replaces a file that exists."""
        if plan is None or generation != self.browser.generation:
            return
        existing = [target for target in plan.targets if target.exists()]
        if not existing:
            self.write_plan(path, plan, generation, overwrite=False)
            return
        names = ", ".join(clean(target) for target in existing)

        def answered(yes: bool | None) -> None:
            if yes and generation == self.browser.generation:
                self.write_plan(path, plan, generation, overwrite=True)
            elif not yes:
                self.notify("nothing written", markup=False)

        question = f"{names} {'exists' if len(existing) == 1 else 'exist'}. Overwrite?"
        self.app.push_screen(ConfirmScreen(question, yes_label="Overwrite", no_label="Keep"), answered)

    def write_plan(self, path: Path, plan: WritePlan, generation: int, *, overwrite: bool) -> None:
        report = self.browser.report
        bad: list[int] | None = None
        fmt = "sft"
        if plan.clean is not None:
            assert report is not None
            fmt = report.checked_as
            # A complete error list lets the copy skip lines by number; a cut one means checking each line again.
            bad = None if report.errors_truncated else sorted({i.line for i in report.errors if i.line is not None})
        doing = f"splitting {clean(path.name)}…"
        if plan.clean is not None:
            doing = f"writing a copy of {clean(path.name)} without its invalid lines" + (", then splitting it…" if plan.share else "…")
        self.notify(doing, markup=False)
        self.write_files(path, plan, fmt, bad, overwrite, generation, self.browser.stop_event)

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

    @work(thread=True, group="dataset-write", exit_on_error=False, description="write a clean copy or a split")
    def write_files(
        self, path: Path, plan: WritePlan, fmt: str, bad_lines: list[int] | None, overwrite: bool, generation: int, file_closed: threading.Event
    ) -> None:
        from tunedeck.core.cleancopy import CleanCopyError, write_clean_copy
        from tunedeck.core.datasets.split import SplitError, split_file

        source = path
        if plan.clean is not None:
            try:
                result = write_clean_copy(
                    path, fmt, bad_lines=bad_lines, target=plan.clean, overwrite=overwrite, cancelled=stopper(file_closed)
                )
            except CleanCopyError as exc:
                self.post_message(DatasetTaskFailed(generation, "clean copy", str(exc)))
                return
            summary = f"wrote {result.target.name}: {result.kept:,} lines kept, {result.dropped:,} invalid left out"
            self.post_message(DatasetWritten("clean", summary, [result.target]))
            source = result.target
        if plan.share is None:
            return
        try:
            split = split_file(source, plan.share, train_out=plan.train, validation_out=plan.validation, overwrite=overwrite)
        except (SplitError, ValueError, OSError) as exc:
            hint = " (split the clean lines: s, with the box ticked)" if getattr(exc, "data_error", False) else ""
            self.post_message(DatasetTaskFailed(generation, "split", f"{exc}{hint}"))
            return
        by = f", stratified by {split.stratified_by}" if split.stratified_by else ""
        summary = (
            f"{split.train_path.name}: {split.train_examples:,} · "
            f"{split.validation_path.name}: {split.validation_examples:,}{by}"
        )
        self.post_message(DatasetWritten("split", summary, [split.train_path, split.validation_path]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        pass_on_failure(self, event)  # the file actions leave nothing showing as under way

    def on_dataset_task_failed(self, message: DatasetTaskFailed) -> None:
        if message.generation == self.browser.generation:
            failed = f"{message.task} failed"
            self.notify(clean(message.message), title=failed, severity="error", markup=False, timeout=10)

    def on_dataset_written(self, message: DatasetWritten) -> None:
        self.written[message.kind] = message.paths
        self.notify(clean(message.summary) + " · l launches with it", title=message.kind, markup=False, timeout=8)
