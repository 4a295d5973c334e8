"""One-line header: app name, profile and where it points, connection state, screen title."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..safe_text import one_line
from ..state import AppState, host

CONNECTION_LOOK = {
    "online": ("●", "bold green"),
    "connecting": ("◌", "bold yellow"),
    "offline": ("○", "dim"),
    "error": ("✖", "bold red"),
    "consent": ("?", "bold yellow"),  # a built-in profile waits for the user to agree to send its key
}


def connection_text(state: str, detail: str = "") -> Text:
    mark, style = CONNECTION_LOOK.get(state, ("?", ""))
    text = Text(f"{mark} {state}", style=style, end="")
    if detail and state in ("error", "offline"):  # why: what failed, or why nothing was sent
        text.append(": ")
        text.append(one_line(detail, "red" if state == "error" else "dim"))
    return text


class AppHeader(Widget):
    """Reads the app's state (`AppState`); repaints when it announces a change (no polling)."""

    DEFAULT_CSS = """
    AppHeader {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def __init__(self, title: Text | str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = title if isinstance(title, Text) else Text(title, end="")

    @property
    def state(self) -> AppState:
        return host(self).state

    def on_mount(self) -> None:
        self.state.changed.subscribe(self, lambda _: self.refresh())

    def set_title(self, title: Text | str) -> None:
        self._title = title if isinstance(title, Text) else Text(title, end="")
        self.refresh()

    def header_text(self) -> Text:
        """The header as plain `Text` (tests read it; `render` fits it to the width)."""
        state = self.state
        text = Text(" tunedeck", style="bold", end="")
        text.append("  ")
        if state.profile_name:
            text.append(one_line(state.profile_name, "bold"))
            text.append(" · ")
            text.append(one_line(state.profile_detail))
        else:
            text.append("opening cache…", style="dim")
        text.append(" · ")
        text.append(connection_text(state.connection_state, state.connection_detail))
        return text

    def render(self) -> Text:
        left = self.header_text()
        width = self.size.width
        right = self._title.copy()
        room = width - left.cell_len - 1
        if right.plain and room > 4:
            right.truncate(room - 2, overflow="ellipsis")
            gap = max(2, width - left.cell_len - right.cell_len - 1)
            left.append(" " * gap)
            left.append_text(right)
        left.truncate(width, overflow="ellipsis")
        left.no_wrap = True
        return left
