"""A list of lines to read (the rows an evaluation skipped, with their line and field); escape
closes. Every line is untrusted text, shown literally."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..safe_text import one_line, safe


class ListingScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="listing.close"),
        Binding("q", "close", "Close", show=False, id="listing.close_q"),
    ]

    def __init__(self, title: str, lines: Sequence[str], footnote: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.lines = list(lines)
        self.footnote = footnote

    def compose(self) -> ComposeResult:
        with Vertical(id="listing-box", classes="dialog"):
            yield Static(safe(self.title_text, "bold"))
            with VerticalScroll(id="listing-scroll"):
                body = Text(end="")
                for index, line in enumerate(self.lines):
                    if index:
                        body.append("\n")
                    body.append_text(one_line(line))
                yield Static(body, id="listing-lines")
            hint = f"{self.footnote} · escape closes" if self.footnote else "escape closes"
            yield Static(Text(hint, style="dim"))

    def on_mount(self) -> None:
        self.query_one("#listing-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
