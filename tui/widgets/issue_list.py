"""The validator's errors and warnings, one row each; enter (or a click) jumps to the line.

A line-API list: only visible rows are drawn, so the engine's few thousand issues cost
nothing to show (an OptionList lays out every option: ~140 ms for 2,300).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..safe_text import one_line
from .row_view import row_strip, scroll_row_into_view

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import Issue, ValidationReport

SEVERITY_LOOK = {"error": ("✖", "bold red"), "warning": ("!", "bold yellow")}


def issue_text(issue: Issue) -> Text:
    mark, style = SEVERITY_LOOK.get(issue.severity, ("?", ""))
    text = Text(f"{mark} ", style=style, end="", no_wrap=True, overflow="ellipsis")
    text.append(f"line {issue.line:,}" if issue.line is not None else "file", style="bold")
    if issue.field:
        text.append(" ")
        text.append_text(one_line(issue.field, "cyan"))
    text.append(" ")
    text.append_text(one_line(issue.code, style))
    text.append(" ")
    text.append_text(one_line(issue.message))
    return text


class IssueList(ScrollView, can_focus=True):
    """Errors first (file-level ones on top), then warnings, each in line order."""

    BINDINGS = [
        Binding("down,j", "move(1)", "Next issue", show=False),
        Binding("up,k", "move(-1)", "Previous issue", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("home,g", "move_to(0)", "First issue", show=False),
        Binding("end,G", "move_to(-1)", "Last issue", show=False),
        Binding("enter", "choose", "Go to line", tooltip="Jump to the issue's line and mark its field"),
    ]

    COMPONENT_CLASSES = {"issue-list--cursor"}

    DEFAULT_CSS = """
    IssueList {
        overflow-x: hidden;
        overflow-y: auto;
    }
    IssueList > .issue-list--cursor {
        background: $accent 30%;
    }
    IssueList:focus > .issue-list--cursor {
        background: $accent;
    }
    """

    class Chosen(Message):
        def __init__(self, issue: Issue) -> None:
            super().__init__()
            self.issue = issue

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "issues"
        self.issues: list[Issue] = []
        self.cursor = 0
        self.loaded = False
        """A report is shown (before: "validating…")."""
        self.file_open = False
        """A file is shown (before: nothing is being validated)."""
        self.unavailable: str | None = None
        """Why no report will come (shown instead of "validating…")."""
        self._texts: dict[int, Text] = {}

    def reset(self) -> None:
        """Another file: nothing listed until its report comes."""
        self.issues, self.loaded, self.cursor = [], False, 0
        self.file_open = True
        self.unavailable = None
        self._texts.clear()
        self.virtual_size = Size(self.size.width, 1)
        self.border_title = "issues"
        self.refresh()

    def show_unavailable(self, why: str) -> None:
        """No report will come for this file (the validation failed): say so instead of waiting."""
        if not self.loaded:
            self.unavailable = why
            self.refresh()

    def show_report(self, report: ValidationReport) -> None:
        self.issues = [*report.errors, *report.warnings]
        self.loaded = True
        self.unavailable = None
        self._texts.clear()
        self.cursor = 0
        self.virtual_size = Size(self.size.width, len(self.issues) or 1)
        self.scroll_to(y=0, animate=False, immediate=True)
        title = f"issues: {report.error_count:,} errors · {report.warning_count:,} warnings"
        if report.errors_truncated or report.warnings_truncated:
            title += f" (first {len(self.issues):,} listed)"
        self.border_title = title
        self.refresh()

    # -- cursor ------------------------------------------------------------------------------

    def action_move_to(self, row: int) -> None:
        if not self.issues:
            return
        row = len(self.issues) - 1 if row < 0 else row
        old, self.cursor = self.cursor, max(0, min(row, len(self.issues) - 1))
        scroll_row_into_view(self, self.cursor)
        self.refresh_line(old)
        self.refresh_line(self.cursor)

    def action_move(self, delta: int) -> None:
        self.action_move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.action_move_to(self.cursor + direction * max(1, self.scrollable_content_region.height))

    def point_at(self, issue: Issue) -> None:
        """Put the cursor on `issue` (the screen shows its line)."""
        for row, listed in enumerate(self.issues):
            if listed is issue:
                self.action_move_to(row)
                return

    def action_choose(self) -> None:
        if self.issues:
            self.post_message(self.Chosen(self.issues[self.cursor]))

    def on_resize(self) -> None:
        # A smaller view may have left the cursor's row below its bottom edge. The row is read
        # when the callback runs: one read at the resize would scroll the list away from a
        # move made in between.
        self.call_after_refresh(self._keep_cursor_in_view)

    def _keep_cursor_in_view(self) -> None:
        scroll_row_into_view(self, self.cursor)

    def on_click(self, event: Click) -> None:
        row = int(self.scroll_y) + event.y
        if 0 <= row < len(self.issues):
            self.action_move_to(row)
            self.action_choose()

    # -- drawing -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if not self.issues:
            if y != 0:
                return Strip.blank(width, base)
            if self.loaded:
                text = Text("no errors, no warnings", style="green")
            elif self.unavailable is not None:
                text = one_line(self.unavailable, "red")
            elif not self.file_open:
                text = Text("no file open", style="dim")
            else:
                text = Text("validating…", style="dim")
        elif row >= len(self.issues):
            return Strip.blank(width, base)
        else:
            text = self._texts.get(row) or self._texts.setdefault(row, issue_text(self.issues[row]))
        line = text.copy()
        line.truncate(width, overflow="ellipsis", pad=True)
        style = base + self.get_component_rich_style("issue-list--cursor") if self.issues and row == self.cursor else base
        return row_strip(line, width, style, self.app.console)
