"""A text field for a file path that the app offers (prefilled, or suggested from recent files).

An `Input` draws its value and its suggestion as they are, so a file name holding an escape
sequence would reach the terminal from the field. This field shows offered paths with their
control characters made visible (`safe_text.clean`) and hands back the real path while the
field still shows one of them; what the user types is taken as typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.suggester import SuggestFromList
from textual.widgets import Input

from ..safe_text import clean


class PathInput(Input):
    def __init__(self, value: str = "", *, offered: Iterable[str] = (), **options: Any) -> None:
        offered = list(offered)
        self._real = {clean(path): path for path in [value, *offered] if path}
        """Each offered path as shown -> the path itself."""
        if offered:
            options.setdefault("suggester", SuggestFromList([clean(path) for path in offered], case_sensitive=True))
        super().__init__(clean(value), **options)

    @property
    def path_text(self) -> str:
        """The path the field names: the real one behind an offered path shown, else the text typed."""
        return self._real.get(self.value, self.value)
