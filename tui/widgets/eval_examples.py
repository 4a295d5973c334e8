"""The examples of an evaluation run, one row each: its line in the file, a mark per model
(✓ passed, ✗ failed, ! an error, · not asked yet: glyphs that read without colour) and
the reference answer cut to fit. Rows are keyed by the example's index, so a reload (the
run moved on) keeps the cursor on the same example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.text import Text
from textual.widgets.data_table import RowDoesNotExist

from ..formatting import middle_ellipsis
from ..safe_text import one_line
from .steady_table import SteadyTable

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


def reference_cell(example: EvalExample | None, width: int) -> Text:
    if example is None:
        return Text("—", style="dim", end="")
    if example.reference is None:
        return Text("(no reference)", style="dim", end="")
    text = one_line(example.reference)
    if text.cell_len > width:
        text.truncate(max(1, width), overflow="ellipsis")
    return text


class EvalExamples(SteadyTable):
    """The example rows of the current filter; `selected_index` is the example under the cursor."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._labels: tuple[str, ...] = ()
        self._reference_width = 0
        self.shown: list[int] = []
        """The example indexes shown, in order (tests read it)."""

    @property
    def selected_index(self) -> int | None:
        if not self.shown or self.row_count == 0:
            return None
        row = min(max(self.cursor_row, 0), len(self.shown) - 1)
        return self.shown[row]

    def show(
        self,
        labels: Sequence[str],
        rows: Sequence[ExampleRow],
        examples: dict[int, EvalExample],
        reference_width: int = 40,
    ) -> None:
        """Show `rows` (their models as `labels`), keeping the cursor on the same example."""
        labels = tuple(labels)
        keys = ["line", *(f"m{i}" for i in range(len(labels))), "reference"]
        content = []
        for row in rows:
            example = examples.get(row.index)
            line = Text(str(example.line) if example is not None else f"#{row.index + 1}", style="dim", end="")
            cells = [line, *(mark(row.results.get(label)) for label in labels), reference_cell(example, reference_width)]
            content.append((str(row.index), cells))
        selected = self.selected_index
        same_rows = [key for key, _ in content] == [str(i) for i in self.shown]
        if labels != self._labels or not same_rows or reference_width != self._reference_width:
            self._reference_width = reference_width  # a resize changes every reference: anew
            self._rebuild(labels, keys, content, selected)
            return
        for key, cells in content:  # the same rows: change only what changed
            for column, cell in zip(keys, cells):
                if self.get_cell(key, column) != cell:
                    self.update_cell(key, column, cell, update_width=True)

    def _rebuild(self, labels: tuple[str, ...], keys: list[str], content: list[tuple[str, list[Text]]], selected: int | None) -> None:
        scroll_x = self.scroll_x
        self.clear(columns=labels != self._labels)
        if labels != self._labels:
            self.add_column(Text("line", style="bold", end=""), key="line")
            for index, label in enumerate(labels):
                self.add_column(one_line(middle_ellipsis(label, 12), "bold"), key=keys[index + 1])
            self.add_column(Text("reference", style="bold", end=""), key="reference")
            self._labels = labels
        for key, cells in content:
            self.add_row(*cells, key=key)
        self.shown = [int(key) for key, _ in content]
        if selected is not None and selected in self.shown:
            try:
                self.move_cursor(row=self.get_row_index(str(selected)), animate=False)
            except RowDoesNotExist:  # pragma: no cover - just added
                pass
        self.scroll_x = scroll_x
