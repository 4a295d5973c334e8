"""The dataset screen's dialogs and file actions: open, jump to a line, search, split,
write a cleaned copy, launch; and the status line. A mixin of `DatasetScreen`."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import TYPE_CHECKING

from tunedeck.core.linesearch import SearchMatches

from ..widgets.issue_list import IssueList
from .dataset_prompts import AskScreen, OpenDatasetScreen

if TYPE_CHECKING:  # pragma: no cover
    from textual.screen import Screen

    from tunedeck.core.datasets import Issue, ValidationReport
    from tunedeck.core.lineindex import LineIndex

    from ..widgets.example_list import ExampleList
    from .dataset import DatasetScreen

    _Base = Screen
else:
    _Base = object


def status_text(screen: DatasetScreen) -> str:
    """The status line: file, index, validation, search, filter (plain text)."""
    if screen.path is None or screen.index is None:
        return "no file open · o opens one"
    index = screen.index
    parts = [screen.path.name, f"{index.line_count:,} lines" + ("" if index.complete else f" (indexing {index.fraction:.0%})")]
    if screen.pending_jump is not None:
        parts.append(f"line {screen.pending_jump:,}: waiting for the index")
    if screen.validation_fraction is not None:
        parts.append(f"validating {screen.validation_fraction:.0%}")
    elif screen.report is not None:
        report = screen.report
        parts.append(f"{report.error_count:,} errors · {report.warning_count:,} warnings" if report.error_count or report.warning_count else "valid")
    search = screen.search
    if search is not None:
        found = f"/{search.text}: {search.count:,} match{'es' if search.count != 1 else ''}"
        if not search.finished:
            found += f" ({search.scanned_bytes / max(1, search.total_bytes):.0%}, esc cancels)"
        elif search.cancelled:
            found += " (cancelled)"
        parts.append(found)
    if screen.errors_only:
        parts.append("errors only")
    return " · ".join(parts)


class DatasetActions(_Base):
    path: Path | None
    index: LineIndex | None
    report: ValidationReport | None
    search: SearchMatches | None
    search_cancel: threading.Event
    search_id: int
    generation: int
    written: dict[str, list[Path]]

    examples: ExampleList
    error_lines: list[int]
    issues_by_line: dict[int, list[Issue]]
    chosen_issue: Issue | None
    errors_only: bool
    _search_jumped: bool

    if TYPE_CHECKING:  # pragma: no cover  (the screen's own methods)

        def goto_line(self, line: int, keep_filter: bool = False) -> None: ...
        def show_line(self, line: int) -> None: ...
        def refresh_status(self) -> None: ...
        def open_file(self, path: Path) -> bool: ...
        def run_search(self, index: LineIndex, text: str, start: int, search_id: int, cancel: threading.Event, generation: int) -> None: ...
        def split(self, path: Path, share: float, generation: int) -> None: ...
        def write_clean(self, path: Path, fmt: str, bad: list[int] | None, generation: int) -> None: ...

    # -- errors and search hits ---------------------------------------------------------------

    def _current(self) -> int:
        return self.examples.current_line or 1

    def _neighbour_error(self, forward: bool) -> int | None:
        lines = self.error_lines
        if not lines:
            return None
        here = self._current()
        if forward:
            at = bisect_right(lines, here)
            return lines[at] if at < len(lines) else lines[0]
        at = bisect_left(lines, here)
        return lines[at - 1] if at > 0 else lines[-1]

    def _jump_to_error(self, forward: bool) -> None:
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
        self.query_one(IssueList).point_at(self.chosen_issue)

    def action_next_error(self) -> None:
        self._jump_to_error(True)

    def action_previous_error(self) -> None:
        self._jump_to_error(False)

    def action_next(self) -> None:
        self._step(forward=True)

    def action_previous(self) -> None:
        self._step(forward=False)

    def _step(self, forward: bool) -> None:
        """To the next (previous) search hit while a search has hits, else to the next error."""
        if self.search is None or not self.search.count:
            self._jump_to_error(forward)
            return
        current = self._current()
        line = self.search.next_after(current) if forward else self.search.previous_before(current)
        if line is not None:
            self.goto_line(line, keep_filter=True)

    def _set_errors_only(self, on: bool) -> None:
        self.errors_only = on
        self.examples.set_filter(self.error_lines if on else None)
        self.refresh_status()

    def action_errors_only(self) -> None:
        if not self.errors_only and self.report is None:
            self.notify("the errors show once validation finishes", markup=False)
        elif not self.errors_only and not self.error_lines:
            self.notify("no lines with errors", markup=False)
        else:
            self._set_errors_only(not self.errors_only)

    # -- dialogs and file actions --------------------------------------------------------------

    async def action_open(self) -> None:
        recent: list[str] = []
        service = getattr(self.app, "service", None)
        if service is not None:
            from tunedeck.core.recent import recent_files

            try:
                recent = await recent_files(service.cache)
            except Exception:  # a convenience: an unreadable cache just lists nothing
                recent = []
        start = self.path.parent if self.path is not None else None

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.open_file(path)
            elif self.path is None:
                self.app.pop_screen()  # opened without a file and none chosen: back

        self.app.push_screen(OpenDatasetScreen(recent, start), chosen)

    def action_goto(self) -> None:
        if self.index is None:
            return

        def answered(value: str | None) -> None:
            if value and value.lstrip("-").isdigit():
                self.goto_line(int(value))

        self.app.push_screen(AskScreen("Go to line", placeholder="line number", input_type="integer"), answered)

    def action_search(self) -> None:
        if self.index is None:
            return
        last = self.search.text if self.search is not None else ""

        def answered(value: str | None) -> None:
            if value:
                self.start_search(value)

        self.app.push_screen(AskScreen("Search the file (literal text; case-sensitive only with capitals)", value=last), answered)

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
        self.run_search(self.index, text, start, self.search_id, self.search_cancel, self.generation)
        self.refresh_status()

    def action_split(self) -> None:
        if self.path is None:
            return
        path = self.path

        def answered(value: str | None) -> None:
            try:
                share = float(value) if value else None
            except ValueError:
                share = None
            if share is None or not 0 < share < 1:
                if value:
                    self.notify("the validation share is a number between 0 and 1, e.g. 0.1", markup=False)
                return
            self.notify(f"splitting {path.name}…", markup=False)
            self.split(path, share, self.generation)

        self.app.push_screen(AskScreen("Share of examples held out for validation", value="0.1", input_type="number"), answered)

    def action_write_clean(self) -> None:
        report = self.report
        if self.path is None:
            return
        if report is None:
            self.notify("which lines are invalid is known once validation finishes", markup=False)
            return
        if report.error_count == 0:
            self.notify("no invalid lines: the file is its own clean copy", markup=False)
            return
        # A complete error list lets the copy skip lines by number; a cut one means checking each line again.
        bad = None if report.errors_truncated else sorted({i.line for i in report.errors if i.line is not None})
        self.notify(f"writing a copy of {self.path.name} without its invalid lines…", markup=False)
        self.write_clean(self.path, report.checked_as, bad, self.generation)

    def action_launch(self) -> None:
        from .launch import LaunchScreen

        if self.path is None:
            return
        split = self.written.get("split")
        training = split[0] if split else (self.written.get("clean") or [self.path])[0]
        validation = str(split[1]) if split else ""
        self.app.push_screen(LaunchScreen(training_path=str(training), validation_path=validation))
