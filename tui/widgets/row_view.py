"""What the line-API lists (example_list.py, issue_list.py) share: keeping the cursor's row
in view, and drawing one row's Text as a Strip in the row's style."""

from __future__ import annotations

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.scroll_view import ScrollView
from textual.strip import Strip


def scroll_row_into_view(view: ScrollView, row: int) -> None:
    """Scroll as little as needed for `row` to be visible."""
    height = max(1, view.scrollable_content_region.height)
    top = int(view.scroll_y)
    if row < top:
        view.scroll_to(y=row, animate=False, immediate=True)
    elif row >= top + height:
        view.scroll_to(y=row - height + 1, animate=False, immediate=True)


def row_strip(text: Text, width: int, style: Style, console: Console) -> Strip:
    """`text` (truncated or padded to `width` already) on the row's `style`, its own styles on top."""
    segments = [Segment(seg.text, style + seg.style if seg.style else style) for seg in text.render(console)]
    return Strip(segments, width).crop_extend(0, width, style)
