"""The right-hand views of one line: as a conversation, and as raw (pretty) JSON.

Both read the line through the index when asked to show it, so only the example on screen
is ever parsed. The conversation reads at most `DISPLAY_BYTES` of a line; the raw view up to
`RAW_BYTES`, hard-wrapped into a line-API `Log` so even a multi-megabyte line scrolls
smoothly (only visible rows are drawn).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Log, Static

from tunedeck.core.describe import byte_size

from ..safe_text import clean, safe
from .conversation import render_example
from .example_parts import Mark
from .issue_list import issue_text

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasets import Issue
    from tunedeck.core.lineindex import LineIndex

RAW_BYTES = 2 * 1024 * 1024
PRETTY_BYTES = 1024 * 1024
"""Lines up to this size are parsed and pretty-printed in the raw view; longer ones are shown as they are."""
MATCH_STYLE = "black on yellow"


def highlight_all(renderable: Any, words: list[str], case_sensitive: bool) -> None:
    """Highlight `words` in every Text inside a Group / Padding / Table tree, in place."""
    if isinstance(renderable, Text):
        renderable.highlight_words(words, MATCH_STYLE, case_sensitive=case_sensitive)
    elif isinstance(renderable, Group):
        for child in renderable.renderables:
            highlight_all(child, words, case_sensitive)
    elif isinstance(renderable, Padding):
        highlight_all(renderable.renderable, words, case_sensitive)
    elif isinstance(renderable, Table):
        for column in renderable.columns:
            for cell in column._cells:
                highlight_all(cell, words, case_sensitive)


def example_renderable(
    index: LineIndex, number: int, fmt: str | None, issues: Iterable[Issue], chosen: Issue | None, search: str | None
) -> RenderableType:
    """Line `number` as a conversation, under its issues; `chosen`'s field is marked."""
    line = index.display(number)
    issues = list(issues)
    head = Text(f"line {number:,} · {byte_size(line.length)}", style="bold", end="\n")
    pieces: list[RenderableType] = [head, *(issue_text(i) for i in issues)]
    for piece in pieces[1:]:
        assert isinstance(piece, Text)
        piece.end = "\n"
    mark_issue = chosen if chosen is not None and chosen.line == number else (issues[0] if issues else None)
    mark = Mark(mark_issue.field, mark_issue.message) if mark_issue is not None else None
    if line.truncated:
        pieces.append(Text(f"a long line: its first {byte_size(len(line.text))} shown as text (r: raw view)", style="yellow"))
        pieces.append(safe(line.text))
    elif not line.text.strip():
        pieces.append(Text("(blank line)", style="dim italic"))
    else:
        try:
            obj = json.loads(line.text)
        except (ValueError, RecursionError):
            pieces.append(safe(line.text, "red"))
        else:
            pieces.append(render_example(obj, fmt, mark))
    body = Group(*pieces)
    if search:
        highlight_all(body, [search], case_sensitive=any(ch.isupper() for ch in search))
    return body


def raw_lines(index: LineIndex, number: int, width: int) -> list[str]:
    """The line as pretty JSON (or as it is), control characters made visible, wrapped at `width`."""
    raw = index.raw(number, RAW_BYTES)
    length = index.length(number)
    text = raw.decode("utf-8", "replace")
    lines: list[str]
    if length <= PRETTY_BYTES:
        try:
            lines = json.dumps(json.loads(text), indent=2, ensure_ascii=False).split("\n")
        except (ValueError, RecursionError):
            lines = [text]
    else:
        lines = [text]
    width = max(8, width)
    out = [piece for line in lines for piece in wrap(clean(line), width)]
    if length > len(raw):
        out.append(f"… {byte_size(length - len(raw))} more not shown (the line is {byte_size(length)})")
    return out


def wrap(line: str, width: int) -> list[str]:
    """Hard-wrap at `width` characters, continuing lines indented like the first."""
    if len(line) <= width:
        return [line]
    indent = " " * min(len(line) - len(line.lstrip(" ")), width // 2)
    room = width - len(indent)
    pieces = [line[:width]]
    pieces.extend(indent + line[at : at + room] for at in range(width, len(line), room))
    return pieces


class ExampleView(VerticalScroll):
    """The conversation view: one Static holding the rendered example."""

    def compose(self):
        yield Static(Text("no file open", style="dim"), id="example-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#example-body", Static).update(renderable)
        self.scroll_home(animate=False)


class RawView(Log):
    """The raw view: the line as pretty JSON, in a line-API log (only visible rows drawn)."""

    DEFAULT_CSS = """
    RawView {
        overflow-x: hidden;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, highlight=True, auto_scroll=False)
        self.highlighter = JSONHighlighter()
        self.wanted: tuple[LineIndex, int] | None = None
        self.shown: tuple[int, int] | None = None
        """(line, width) shown now: showing it again is free."""

    def show(self, index: LineIndex, number: int) -> None:
        self.wanted = (index, number)
        if self.scrollable_content_region.width:
            self._fill()
        else:  # just switched in: wrap once the layout has given it a width
            self.call_after_refresh(self._fill)

    def on_resize(self) -> None:
        self._fill()

    def _fill(self) -> None:
        width = self.scrollable_content_region.width
        if self.wanted is None or width <= 0:
            return
        index, number = self.wanted
        if self.shown == (number, width) or index.closed:
            return
        self.shown = (number, width)
        self.clear()
        self.write_lines(raw_lines(index, number, width))
        self.scroll_home(animate=False)
