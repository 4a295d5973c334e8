"""A text field that acts on each key in the order it was typed.

Textual hands every key to the focused field's own queue, but runs bindings (Enter submits,
Tab moves on) only once the key has bubbled up to the app, by which time the field has
already taken the keys queued behind it. Typed in one burst, or pasted over SSH, `model⏎next`
submits "modelnext", and `a⇥b` puts "ab" in the first field. This field runs those bindings
as it meets them, and passes keys that reach it after focus has moved on to where focus is
now, so a burst lands as if typed slowly.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widgets import Input

ORDERED_KEYS = frozenset({"enter", "tab", "shift+tab"})
"""Keys whose bindings change where the next keys belong: run them before the next key."""


class OrderedInput(Input):
    """An `Input` whose Enter and Tab act before the keys typed after them.

    `clear_on_submit`: a field that takes one entry at a time: Enter hands its text on and
    empties it at once, so what is typed next starts a new entry (whoever takes the entry
    puts it back when it is refused)."""

    def __init__(self, value: str | None = None, *, clear_on_submit: bool = False, **options: Any) -> None:
        super().__init__(value, **options)
        self.clear_on_submit = clear_on_submit

    async def action_submit(self) -> None:
        await super().action_submit()
        if self.clear_on_submit:
            self.value = ""

    async def _on_key(self, event: events.Key) -> None:
        # Not `has_focus`: that changes only when the Blur queued behind these keys is read.
        focused = self.app.focused
        if focused is not self:
            # Typed before focus left this field: the key belongs where focus is now (the
            # screen itself when nothing there has focus).
            event.stop()
            event.prevent_default()
            (focused or self.app.screen).post_message(events.Key(event.key, event.character))
            return
        if event.key in ORDERED_KEYS:
            # The same lookup the app would make once the key had bubbled up, made now.
            check_bindings = getattr(self.app, "_check_bindings", None)
            if check_bindings is not None and await check_bindings(event.key):
                event.stop()
                event.prevent_default()
                return
        # Otherwise Textual goes on to `Input._on_key` (it walks the handlers of each base class).
