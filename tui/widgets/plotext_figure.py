"""What every chart widget shares: one plotext figure built to text (set-up and clean-up), and
a widget base that rebuilds it only when its data or its size changed.

plotext keeps module-global figure state, so a figure is cleared before and after each
build, and built only on the UI thread (from a widget's `render`).

Curves are told apart by their markers, so a chart reads the same in a low-colour theme
(`ansi-dark`, `ansi-light`) and under `NO_COLOR=1`; on a light theme the colours drawn for a
dark background (white, light grey) become black, or they would vanish into the page.
"""

from __future__ import annotations

from typing import Any, Callable

from rich.style import Style
from rich.text import Span, Text
from textual.widget import Widget

PALE = frozenset({7, 15})
"""The standard colours plotext draws "white" with: unreadable on a light background."""
ON_LIGHT = Style(color="black")


def for_light_background(text: Text) -> Text:
    """`text` with its pale colours (white, light grey) made black."""
    spans = []
    for span in text.spans:
        style = span.style
        if isinstance(style, str):  # the legend's own text: a style by name
            style = Style.parse(style)
        if style.color is not None and style.color.number in PALE:
            style = style + ON_LIGHT
        spans.append(Span(span.start, span.end, style))
    text.spans = spans
    return text


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
        light = not self.app.current_theme.dark
        key = (self.version, width, height, self.options_key(), light)
        if key != self._cache_key:
            built = self._build(width, height)
            self._cache = for_light_background(built.copy()) if light else built
            self._cache_key = key
        return self._cache

    def options_key(self) -> tuple[object, ...]:
        """Everything besides the data and the size that changes the drawing (hashable)."""
        return ()

    def _build(self, width: int, height: int) -> Text:
        raise NotImplementedError
