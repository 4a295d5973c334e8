"""Copy to the user's clipboard, also over SSH: Textual's `App.copy_to_clipboard` writes
OSC 52 (the terminal, not this machine, holds the clipboard), and a toast says what was
copied, since nothing else shows it. Terminals that refuse OSC 52 (tmux without
`set -g set-clipboard on`, macOS Terminal) copy nothing: the toast then still shows the
text, to select by hand."""

from __future__ import annotations

from typing import Any

from textual.app import App

from .safe_text import clean


def copy(app: App[Any], text: str, what: str) -> None:
    """Put `text` on the clipboard and toast "copied <what>: <text>".

    The text goes as it is (OSC 52 carries it base64-encoded, so no byte of it reaches the
    terminal as a control); the toast shows it with control characters made visible."""
    app.copy_to_clipboard(text)
    app.notify(clean(text), title=f"copied {clean(what)}", markup=False)
