"""Edit one JSON object (RFT's answer format) with its parse error shown as you type."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from ..safe_text import safe


def parse_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """(the object, "") or (None, what is wrong with its line and column)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if not isinstance(value, dict):
        return None, "expected a JSON object ({...})"
    return value, ""


class JsonEditorScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the object (empty {} means "none"), or None on escape."""

    BINDINGS = [
        Binding("ctrl+s", "use", "Use", id="json.use"),
        Binding("escape", "cancel", "Cancel", id="json.cancel"),
    ]

    def __init__(self, title: str, value: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.start = json.dumps(value, indent=2, ensure_ascii=False)
        self.error_text = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="json-box", classes="dialog"):
            yield Static(safe(self.title_text, "bold"))
            yield TextArea(self.start, language="json", id="json-text", show_line_numbers=True)
            yield Static(id="json-error")
            yield Static(Text("ctrl+s uses it · escape cancels", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#json-text", TextArea).focus()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        _, self.error_text = parse_object(event.text_area.text)
        self.query_one("#json-error", Static).update(safe(self.error_text, "red") if self.error_text else "")

    def action_use(self) -> None:
        value, self.error_text = parse_object(self.query_one("#json-text", TextArea).text)
        if value is None:
            self.query_one("#json-error", Static).update(safe(self.error_text, "red"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
