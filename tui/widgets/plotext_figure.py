"""What every chart widget shares: one plotext figure built to text (set-up and clean-up), and
a widget base that rebuilds it only when its data or its size changed.

plotext keeps module-global figure state, so a figure is cleared before and after each
build, and built only on the UI thread (from a widget's `render`).
"""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.widget import Widget


def build_figure(width: int, height: int, draw: Callable[[Any], None]) -> Text:
    """Call `draw(plotext)` on a clean `width` x `height` figure and return it as Text."""
    import plotext as plt  # ~40 ms; loaded the first time a chart is drawn

    plt.clear_figure()
    try:
        plt.limit_size(False, False)
        plt.theme("clear")
        plt.plot_size(width, height)
        draw(plt)
        built = plt.build()
    finally:
        plt.clear_figure()
    text = Text.from_ansi(built, no_wrap=True, end="")
    text.rstrip()
    return text


class CachedChart(Widget):
    """A chart drawn by `_build(width, height)`, cached until `version` (bumped by the subclass
    whenever its data changes), the size or `options_key()` (what the user chose to see)
    changes: plotext builds cost milliseconds."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.version = 0
        """Bumped whenever the data changes (part of the render cache key)."""
        self.build_count = 0
        """How many times plotext built the chart (tests check caching with it)."""
        self._cache_key: tuple[object, ...] | None = None
        self._cache = Text()

    def render(self) -> Text:
        width, height = self.content_size
        key = (self.version, width, height, self.options_key())
        if key != self._cache_key:
            self._cache = self._build(width, height)
            self._cache_key = key
        return self._cache

    def options_key(self) -> tuple[object, ...]:
        """Everything besides the data and the size that changes the drawing (hashable)."""
        return ()

    def _build(self, width: int, height: int) -> Text:
        raise NotImplementedError
