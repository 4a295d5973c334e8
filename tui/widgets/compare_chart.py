"""Several jobs' curves of one metric on one plot (the Compare screen's chart).

Each series has its own marker character as well as its own colour, so the curves stay
apart under `NO_COLOR=1`; the legend is a line of its own outside the plot (`legend_text`),
so it never covers data. Ticks on the x axis are whole steps or whole epochs (fractions of one while a
run compared by epoch is still in its first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text

from ..safe_text import clean, one_line
from .plotext_figure import CachedChart, build_figure

MIN_WIDTH = 24
MIN_HEIGHT = 6
SERIES_LOOKS = (
    ("•", "cyan"),
    ("x", "magenta"),
    ("+", "yellow"),
    ("o", "green"),
    ("*", "red"),
    ("#", "blue"),
    ("%", "orange"),
    ("@", "white"),
)
"""(marker, colour) per series, in order: the marker alone tells them apart."""
RICH_COLOURS = {"orange": "dark_orange"}


@dataclass(frozen=True)
class Curve:
    label: str
    points: tuple[tuple[float, float], ...]
    marker: str
    colour: str


def look(index: int) -> tuple[str, str]:
    return SERIES_LOOKS[index % len(SERIES_LOOKS)]


def integer_ticks(low: float, high: float, count: int) -> list[int]:
    """About `count` whole-number ticks from `low` to `high`, on a 1/2/5 × 10^k stride."""
    return [int(t) for t in axis_ticks(low, high, count, whole=True)]


def _tidy(value: float) -> int | float:
    """A tick as it reads: 3 not 3.0, 0.3 not 0.30000000000000004."""
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


def axis_ticks(low: float, high: float, count: int, *, whole: bool | None = None) -> list[int | float]:
    """About `count` ticks that all fall inside `low`..`high`, on a 1/2/5 × 10^k stride.

    Whole numbers (steps, whole epochs) while the range spans at least one unit; under one
    unit (the first epoch of a run compared by epoch) quarters, tenths and finer, so
    there is always a tick on the axis rather than a "0" drawn left of it.
    """
    if whole is None:
        whole = high - low >= 1
    if high <= low:
        return [_tidy(round(low) if whole else low)]
    span = high - low
    count = max(1, count)
    factors = (1, 2, 5) if whole else (1, 2, 2.5, 5)
    power = 0 if whole else math.floor(math.log10(span / count)) - 1
    previous: list[int | float] | None = None
    while True:
        for factor in factors:
            stride = factor * 10**power
            first, last = math.ceil(low / stride - 1e-9), math.floor(high / stride + 1e-9)
            ticks = [_tidy(k * stride) for k in range(first, last + 1)]
            if len(ticks) <= count:
                # A stride wider than the range has no tick inside it: the one before it had
                # a few more than asked (at most three), which reads better than none.
                return ticks or previous or [_tidy(round(low) if whole else low)]
            previous = ticks
        power += 1


def thin(points: tuple[tuple[float, float], ...], limit: int) -> tuple[tuple[float, float], ...]:
    """At most about `limit` points, evenly spaced, always keeping the last one."""
    if limit < 2 or len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    kept = points[::stride]
    if kept[-1] != points[-1]:
        kept = (*kept, points[-1])
    return kept


def legend_text(curves: list[Curve]) -> Text:
    text = Text(end="")
    for index, curve in enumerate(curves):
        if index:
            text.append("   ")
        text.append(curve.marker, style=f"bold {RICH_COLOURS.get(curve.colour, curve.colour)}")
        text.append(" ")
        text.append_text(one_line(curve.label))
        if not curve.points:
            text.append(" (no points)", style="dim")
    return text


class CompareChart(CachedChart):
    DEFAULT_CSS = """
    CompareChart {
        height: 1fr;
        min-height: 3;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.curves: list[Curve] = []
        self.x_label = "step"
        self.y_label = ""
        self.empty_note = "loading…"

    def set_curves(self, curves: list[Curve], *, x_label: str, y_label: str, empty_note: str = "") -> None:
        if (curves, x_label, y_label, empty_note) == (self.curves, self.x_label, self.y_label, self.empty_note):
            return
        self.curves, self.x_label, self.y_label, self.empty_note = curves, x_label, y_label, empty_note
        self.version += 1
        self.refresh()

    def _build(self, width: int, height: int) -> Text:
        drawn = [curve for curve in self.curves if curve.points]
        if not drawn:
            return Text(self.empty_note or "nothing to draw", style="dim", end="")
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            return Text("too small to draw: make the terminal larger", style="dim", end="")
        self.build_count += 1
        xs = [x for curve in drawn for x, _ in curve.points]
        low, high = min(xs), max(xs)
        ticks = axis_ticks(low, high, max(2, width // 12))

        def draw(plt) -> None:
            for curve in drawn:
                points = thin(curve.points, 2 * width)
                plt.plot([x for x, _ in points], [y for _, y in points], marker=curve.marker, color=curve.colour)
            plt.xticks(ticks, [str(t) for t in ticks])
            if height >= 10:  # labels reach plotext's ANSI output: no control characters in them
                plt.xlabel(clean(self.x_label))
                if self.y_label:
                    plt.ylabel(clean(self.y_label))

        return build_figure(width, height, draw)
