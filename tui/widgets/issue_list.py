"""The validator's errors and warnings, one option each; choosing one jumps to its line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..safe_text import one_line

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


class IssueList(OptionList):
    """Errors first (file-level ones on top), then warnings, each list in line order."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    class Chosen(Message):
        def __init__(self, issue: Issue) -> None:
            super().__init__()
            self.issue = issue

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.issues: list[Issue] = []

    def show_report(self, report: ValidationReport) -> None:
        self.issues = [*report.errors, *report.warnings]
        self.clear_options()
        self.add_options([Option(issue_text(issue), id=str(n)) for n, issue in enumerate(self.issues)])
        if not self.issues:
            self.add_option(Option(Text("no errors, no warnings", style="green"), disabled=True))
        title = f"issues: {report.error_count:,} errors · {report.warning_count:,} warnings"
        if report.errors_truncated or report.warnings_truncated:
            title += f" (first {len(self.issues):,} listed)"
        self.border_title = title

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Chosen(self.issues[int(event.option.id)]))
