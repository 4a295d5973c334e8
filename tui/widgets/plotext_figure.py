"""One plotext figure built to text: the set-up and clean-up every chart widget shares.

plotext keeps module-global figure state, so a figure is cleared before and after each
build, and built only on the UI thread (from a widget's `render`).
"""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text


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
