"""The examples of an evaluation run, one row each: its line in the file, a mark per model
(✓ passed, ✗ failed, ! an error, · not asked yet: glyphs that read without colour) and
the reference answer cut to fit. A reload (the run moved on) keeps the cursor on the same
example.

A run holds thousands of examples and a filter or a resize shows them all anew, so this is a
virtual list (Textual's line API): it keeps the rows as data and renders only the lines on
screen. A DataTable measured every cell of every row on each change: 0.5-0.8 s per filter
and 1 s per resize on 3000 x 2 answers, all of it on the UI loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..formatting import middle_ellipsis
from ..safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalExample, ExampleResult
    from tunedeck.core.evaluate.results import ExampleRow

MARKS = {
    "pass": ("✓", "bold green"),
    "fail": ("✗", "bold red"),
    "error": ("!", "bold yellow reverse"),
    "missing": ("·", "dim"),
}
"""What each outcome looks like; the glyphs alone tell them apart (NO_COLOR)."""


def outcome(result: ExampleResult | None) -> str:
    if result is None:
        return "missing"
    if result.error is not None or (result.score is None and result.passed is None):
        return "error"
    return "pass" if result.passed else "fail"


def mark(result: ExampleResult | None, with_score: bool = True) -> Text:
    """One model's outcome on one example; a score between 0 and 1 is shown after the mark."""
    glyph, style = MARKS[outcome(result)]
    text = Text(glyph, style=style, end="")
    if with_score and result is not None and result.score is not None and result.score not in (0.0, 1.0):
        text.append(f" {result.score:.2f}")
    return text


MARK_WIDTH_MIN, MARK_WIDTH_MAX = 6, 12
"""A model's column: its label (cut to 12) over a mark and a score (6 cells)."""


def mark_width(label: str) -> int:
    return max(min(len(label), MARK_WIDTH_MAX), MARK_WIDTH_MIN)


class EvalExamples(ScrollView, can_focus=True):
    """The example rows of the current filter; `selected_index` is the example under the cursor.
    The first line is a header that stays put; the rows scroll under it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "eval-examples--header",
        "eval-examples--cursor",
        "eval-examples--even",
    }

    DEFAULT_CSS = """
    EvalExamples { background: $surface; overflow-x: hidden; }
    EvalExamples > .eval-examples--header { text-style: bold; background: $panel; }
    EvalExamples > .eval-examples--cursor { background: $block-cursor-blurred-background; }
    EvalExamples:focus > .eval-examples--cursor { background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold; }
    EvalExamples > .eval-examples--even { background: $surface-lighten-1; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True)

    @dataclass
    class RowHighlighted(Message):
        """The cursor moved onto another example (`index`: the example's, not the row's)."""

        examples: EvalExamples
        index: int | None

        @property
        def control(self) -> EvalExamples:
            return self.examples

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._labels: tuple[str, ...] = ()
        self._rows: list[ExampleRow] = []
        self._examples: dict[int, EvalExample] = {}
        self._line_width = 4
        self.shown: list[int] = []
        """The example indexes shown, in order (tests read it)."""

    # -- what is shown ----------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.shown)

    @property
    def selected_index(self) -> int | None:
        if not self.shown:
            return None
        return self.shown[min(max(self.cursor_row, 0), len(self.shown) - 1)]

    def show(
        self,
        labels: Sequence[str],
        rows: Sequence[ExampleRow],
        examples: dict[int, EvalExample],
    ) -> None:
        """Show `rows` (their models as `labels`), keeping the cursor on the same example; the
        reference takes the width the line and the marks leave (cut when drawn)."""
        selected = self.selected_index
        self._labels = tuple(labels)
        self._rows = list(rows)  # cells are made for the lines drawn, when drawn
        self._examples = examples
        last = max((example.line for example in examples.values()), default=0)
        self._line_width = max(4, len(str(last)), len(f"#{len(rows)}"))
        self.shown = [row.index for row in rows]
        self.virtual_size = Size(0, len(self.shown) + 1)  # the rows fit the width: no sideways scroll
        place = self.shown.index(selected) if selected is not None and selected in self.shown else 0
        place = min(place, max(0, len(self.shown) - 1))
        if place != self.cursor_row or selected != self.selected_index:
            self.cursor_row = place
        else:
            self._keep_cursor_in_view()
        self.refresh()

    # -- moving --------------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_first(self) -> None:
        self._move_to(0)

    def action_last(self) -> None:
        self._move_to(len(self.shown) - 1)

    def _move_to(self, row: int) -> None:
        if not self.shown:
            return
        row = min(max(row, 0), len(self.shown) - 1)
        if row != self.cursor_row:
            self.cursor_row = row

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._keep_cursor_in_view()
        self.refresh()
        self.post_message(self.RowHighlighted(self, self.selected_index))

    def _keep_cursor_in_view(self) -> None:
        if self.size.height <= 1:
            return
        # The header takes the first line, so row r shows on line r + 1 - scroll: keep that
        # line between 1 and the last one.
        row, top = self.cursor_row, self.scroll_offset.y
        wanted = min(max(top, row + 2 - self.size.height), row)
        if wanted != top:
            self.scroll_to(y=wanted, animate=False, force=True)

    def _on_click(self, event: events.Click) -> None:
        row = event.y + self.scroll_offset.y - 1
        if event.y >= 1 and 0 <= row < len(self.shown):
            self._move_to(row)

    def on_resize(self, event: events.Resize) -> None:
        self._keep_cursor_in_view()

    # -- drawing ---------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # beside the scrollbar, never under it
        base = self.rich_style
        if y == 0:
            return self._strip(self._header(), width, base + self.get_component_rich_style("eval-examples--header"))
        row = y + self.scroll_offset.y - 1
        if row >= len(self._rows):
            return Strip.blank(width, base)
        style = base
        if row == self.cursor_row:
            style = base + self.get_component_rich_style("eval-examples--cursor")
        elif row % 2:
            style = base + self.get_component_rich_style("eval-examples--even")
        return self._strip(self._cells(self._rows[row]), width, style)

    def _header(self) -> list[tuple[Text, int]]:
        cells = [(Text("line", end=""), self._line_width)]
        cells += [(one_line(middle_ellipsis(label, MARK_WIDTH_MAX)), mark_width(label)) for label in self._labels]
        cells.append((Text("reference", end=""), 0))
        return cells

    def _cells(self, row: ExampleRow) -> list[tuple[Text, int]]:
        example = self._examples.get(row.index)
        line = Text(str(example.line) if example is not None else f"#{row.index + 1}", style="dim", end="")
        cells = [(line, self._line_width)]
        cells += [(mark(row.results.get(label)), mark_width(label)) for label in self._labels]
        cells.append((_reference(example), 0))
        return cells

    def _strip(self, cells: list[tuple[Text, int]], width: int, style: Style) -> Strip:
        """The cells one after another (a fixed width each, the last taking what is left),
        one space between them and a space of padding at the left."""
        segments: list[Segment] = [Segment(" ", style)]
        used = 1
        console = self.app.console
        for index, (text, cell_width) in enumerate(cells):
            last = index == len(cells) - 1
            room = max(0, width - used - 1) if last else cell_width
            if room <= 0:
                break
            cell = text.copy()
            cell.truncate(room, overflow="ellipsis", pad=not last)
            segments.extend(Segment.apply_style(cell.render(console), style))
            used += cell.cell_len
            if not last:
                segments.append(Segment(" ", style))
                used += 1
        return Strip(segments).crop_extend(0, width, style)


def _reference(example: EvalExample | None) -> Text:
    if example is None:
        return Text("—", style="dim", end="")
    if example.reference is None:
        return Text("(no reference)", style="dim", end="")
    return one_line(example.reference[:2000])  # never more than a line shows
