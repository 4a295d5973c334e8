"""Untrusted text (job ids, model names, event messages, file names, API errors) for display.

Two dangers, both measured on Textual 8.2.8: markup in a string is parsed by most widgets
(`[@click=app.quit]` becomes a live action, `[/` crashes), and ESC sequences such as OSC 52
reach the terminal untouched. `safe()` answers both: control characters, bidi controls and
zero-width characters become visible placeholders (core's `strip_controls`) and the result
is a `rich.text.Text`, which no widget parses as markup. This module is the TUI's one funnel
for such text; plain-text helpers that need no rich live in core. Where a widget takes only
a `str` (a toast: `notify(clean(...), markup=False)`; an `Input`'s value: `PathInput`), the
string goes through `clean()`. `tests/test_tui_hostile_text.py` checks every screen by the
bytes it would write to the terminal.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from tunedeck.core.text import strip_controls


def clean(text: object) -> str:
    """`text` as a string with every terminal control character made visible."""
    return strip_controls("" if text is None else str(text))


def safe(text: object, style: str | Style = "") -> Text:
    """Literal, control-free `Text` for any untrusted value (None shows as empty)."""
    return Text(clean(text), style=style, no_wrap=False, end="")


def one_line(text: object, style: str | Style = "") -> Text:
    """Like `safe`, with newlines and tabs turned into spaces (table cells, headers)."""
    value = clean(text).replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return Text(value, style=style, end="")
