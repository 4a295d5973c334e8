"""Pick one of a few named things (presets, saved graders); escape picks nothing."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import one_line, safe


class PickScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, title: str, labels: dict[str, str]) -> None:
        """`labels`: each name -> the line shown for it."""
        super().__init__()
        self.title_text = title
        self.names = list(labels)
        self.labels = labels

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box", classes="dialog"):
            yield Static(safe(self.title_text, "bold"))
            yield OptionList(*(Option(one_line(self.labels[n]), id=str(i)) for i, n in enumerate(self.names)), id="pick-list")
            yield Static(Text("enter picks · escape cancels", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#pick-list", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.dismiss(self.names[int(event.option.id)])

    def action_cancel(self) -> None:
        self.dismiss(None)
