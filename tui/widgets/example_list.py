"""The example list: one row per line of the file, drawn only where visible (line API).

A million rows cost nothing until seen: `render_line` reads and summarises only the rows on
screen (through the line index and a bounded cache of summaries), so scrolling a 1 GB file
is as cheap as scrolling a small one. Rows are either every indexed line, or a filter (a
sorted list of line numbers, e.g. the lines with errors).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Sequence

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..safe_text import one_line
from .conversation import summary_text
from .row_view import row_strip, scroll_row_into_view

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.lineindex import LineIndex

SUMMARY_BYTES = 64 * 1024
"""Lines longer than this are summarised from their raw start (never parsed whole here)."""
CACHED_SUMMARIES = 2048
MARKS = {"error": ("✖", "bold red"), "warning": ("!", "bold yellow"), "match": ("•", "bold cyan")}

MarkFor = Callable[[int], "str | None"]


def line_summary(index: LineIndex, number: int) -> Text:
    """One line of the file as a one-line summary (its JSON parsed when short enough)."""
    line = index.display(number, SUMMARY_BYTES)
    if not line.text.strip():
        return Text("(blank line)", style="dim italic", end="")
    if not line.truncated:
        try:
            return summary_text(json.loads(line.text))
        except (ValueError, RecursionError):
            pass
    return one_line(line.text[:300], "red" if not line.truncated else "")


class ExampleList(ScrollView, can_focus=True):
    """Rows of examples with a cursor; posts `Highlighted` when the cursor moves."""

    BINDINGS = [
        Binding("down,j", "move(1)", "Next example", show=False),
        Binding("up,k", "move(-1)", "Previous example", show=False),
        Binding("pagedown,space", "page(1)", "Page down", show=False),
        Binding("pageup,b", "page(-1)", "Page up", show=False),
        Binding("home,g", "first", "First example", show=False),
        Binding("end,G", "last", "Last example", show=False),
    ]

    COMPONENT_CLASSES = {"example-list--cursor", "example-list--number"}

    DEFAULT_CSS = """
    ExampleList {
        overflow-x: hidden;
        overflow-y: scroll;
    }
    ExampleList > .example-list--cursor {
        background: $accent 40%;
        text-style: bold;
    }
    ExampleList:focus > .example-list--cursor {
        background: $accent;
    }
    ExampleList > .example-list--number {
        color: $text-muted;
    }
    """

    class Highlighted(Message):
        """The cursor is on line `line` (1-based) of the file."""

        def __init__(self, line: int) -> None:
            super().__init__()
            self.line = line

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index: LineIndex | None = None
        self.filter: Sequence[int] | None = None
        self.cursor = 0
        self.mark_for: MarkFor = lambda line: None
        self.highlight: str | None = None
        """Search text highlighted in the rows."""
        self.follow_end = False
        """G pressed before the index finished: stay on the last line as the index grows."""
        self.first_paint_at: float | None = None
        """When rows of the current file were first drawn (perf_counter; the benchmark reads it)."""
        self.cursor_painted: tuple[int, float] | None = None
        """(line, perf_counter) of the last time the cursor row was drawn (the benchmark reads it)."""
        self._summaries: OrderedDict[int, Text] = OrderedDict()
        self._rows = 0
        self._shown_line: int | None = None

    def set_index(self, index: LineIndex) -> None:
        """Show another file from its first line."""
        self.index = index
        self.filter = None
        self.cursor = 0
        self.follow_end = False
        self.first_paint_at = None
        self._summaries.clear()
        self._shown_line = None
        self._rows = -1
        self.scroll_to(y=0, animate=False, immediate=True)
        self.rows_changed()

    # -- rows --------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        if self.filter is not None:
            return len(self.filter)
        return self.index.line_count if self.index is not None else 0

    def line_of(self, row: int) -> int:
        return self.filter[row] if self.filter is not None else row + 1

    def row_of(self, line: int) -> int:
        """The row showing `line`, or the row of the next line shown after it."""
        if self.filter is None:
            return line - 1
        return min(bisect_left(self.filter, line), max(0, len(self.filter) - 1))

    @property
    def current_line(self) -> int | None:
        return self.line_of(self.cursor) if self.row_count else None

    def _sync_size(self) -> int:
        """Make the scrollable height match the rows (the index may know more than we drew)."""
        rows = self.row_count
        if rows != self._rows:
            self._rows = rows
            self.virtual_size = Size(self.size.width, rows)
        return rows

    def rows_changed(self) -> None:
        """The index grew (or the filter changed): resize, keep the cursor, announce it."""
        rows = self._sync_size()
        self.cursor = max(0, min(self.cursor, rows - 1))
        if self.follow_end and rows:
            self.follow_end = self.index is not None and not self.index.complete
            self.move_to(rows - 1)
            return
        self.refresh()
        self._announce()

    def set_filter(self, lines: Sequence[int] | None) -> None:
        """Show only `lines` (sorted), keeping the cursor near the line it was on."""
        current = self.current_line
        self.filter = lines
        self._rows = -1
        self.rows_changed()
        if current is not None and self.row_count:
            self.go_to_line(current)

    def refresh_marks(self) -> None:
        self.refresh()

    # -- cursor ------------------------------------------------------------------------------

    def go_to_line(self, line: int) -> None:
        if self.row_count:
            self.move_to(self.row_of(line))

    def move_to(self, row: int) -> None:
        rows = self._sync_size()  # else a jump past the last known size would scroll short
        if not rows:
            return
        old, self.cursor = self.cursor, max(0, min(row, rows - 1))
        scroll_row_into_view(self, self.cursor)
        self.refresh_line(old)
        self.refresh_line(self.cursor)
        self._announce()

    def _announce(self) -> None:
        line = self.current_line
        if line is not None and line != self._shown_line:
            self._shown_line = line
            self.post_message(self.Highlighted(line))

    def action_move(self, delta: int) -> None:
        self.follow_end = False
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.follow_end = False
        height = max(1, self.scrollable_content_region.height)
        self.scroll_to(y=self.scroll_y + direction * height, animate=False, immediate=True)
        self.move_to(self.cursor + direction * height)

    def action_first(self) -> None:
        self.follow_end = False
        self.move_to(0)

    def action_last(self) -> None:
        self.follow_end = self.filter is None and self.index is not None and not self.index.complete
        self.move_to(self.row_count - 1)

    def on_resize(self) -> None:
        # A smaller view may have left the cursor's row below its bottom edge. The row is read
        # when the callback runs: one read at the resize scrolled the list away from a jump
        # made in between (a jump waiting for the index lands while the list grows).
        self.call_after_refresh(self._keep_cursor_in_view)

    def _keep_cursor_in_view(self) -> None:
        scroll_row_into_view(self, self.cursor)

    def on_click(self, event) -> None:
        self.move_to(int(self.scroll_y) + event.y)

    # -- drawing -----------------------------------------------------------------------------

    def summary(self, line: int) -> Text:
        assert self.index is not None
        cached = self._summaries.get(line)
        if cached is None:
            cached = line_summary(self.index, line)
            self._summaries[line] = cached
            if len(self._summaries) > CACHED_SUMMARIES:
                self._summaries.popitem(last=False)
        else:
            self._summaries.move_to_end(line)
        return cached

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if row >= self.row_count or width <= 0:
            return Strip.blank(width, base)
        if self.first_paint_at is None:
            self.first_paint_at = time.perf_counter()
        line = self.line_of(row)
        assert self.index is not None
        digits = max(4, len(str(self.index.line_count)))
        number_style = self.get_component_rich_style("example-list--number")
        text = Text(no_wrap=True, end="")
        text.append(f"{line:>{digits}} ", style=number_style)
        mark = MARKS.get(self.mark_for(line) or "")
        text.append(f"{mark[0]} " if mark else "  ", style=mark[1] if mark else "")
        summary = self.summary(line)
        if self.highlight:
            summary = summary.copy()
            summary.highlight_words([self.highlight], "black on yellow", case_sensitive=any(c.isupper() for c in self.highlight))
        text.append_text(summary)
        text.truncate(width, overflow="ellipsis", pad=True)
        style: Style = base
        if row == self.cursor:
            style = base + self.get_component_rich_style("example-list--cursor")
            self.cursor_painted = (line, time.perf_counter())
        return row_strip(text, width, style, self.app.console)
