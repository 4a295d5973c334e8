"""A text field for a file path that the app offers (prefilled, or suggested from recent files).

An `Input` draws its value and its suggestion as they are, so a file name holding an escape
sequence would reach the terminal from the field. This field shows offered paths with their
control characters made visible (`safe_text.clean`) and hands back the real path while the
field still shows one of them; what the user types is taken as typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.suggester import SuggestFromList

from ..safe_text import clean
from .ordered_input import OrderedInput


class PathInput(OrderedInput):
    """Tab completes the path typed as a shell does (the longest shared name; a second Tab
    with nothing more to complete moves on to the next field)."""

    BINDINGS = [Binding("tab", "complete_path", "Complete", show=False, id="path.complete")]

    def __init__(self, value: str = "", *, offered: Iterable[str] = (), **options: Any) -> None:
        offered = list(offered)
        self._real = {clean(path): path for path in [value, *offered] if path}
        """Each offered path as shown -> the path itself."""
        if offered:
            options.setdefault("suggester", SuggestFromList([clean(path) for path in offered], case_sensitive=True))
        super().__init__(clean(value), **options)
        self.completions: list[str] = []
        """The names that matched the last Tab, for a hint."""

    def offer(self, paths: Iterable[str]) -> None:
        """Suggest these paths as the user types (recent datasets, loaded after mounting)."""
        paths = [p for p in paths if p]
        self._real.update({clean(path): path for path in paths})
        self.suggester = SuggestFromList([clean(path) for path in paths], case_sensitive=True) if paths else None

    @property
    def path_text(self) -> str:
        """The path the field names: the real one behind an offered path shown, else the text typed."""
        return self._real.get(self.value, self.value)

    def action_complete_path(self) -> None:
        from tunedeck.core.pathcomplete import complete_path

        typed = self.value
        if not typed or typed in self._real:  # an offered path is already whole
            self.screen.focus_next()
            return
        completed, matches = complete_path(typed)
        if completed != typed:
            self.value = completed
            self.cursor_position = len(completed)
            self.completions = matches
        elif len(matches) > 1:
            self.completions = matches  # shown by the owner when it cares (a hint line)
            self.app.bell()
        else:
            self.screen.focus_next()
