"""Loss chart: train and validation loss against step, drawn with plotext's public API.

plotext keeps module-global figure state, so the chart is built only in `render()` (the
UI thread), and the built text is cached on (data version, size): repaints that change
neither reuse it. Series are thinned to about two points per column (braille dots are two
wide). Too small to draw, it shows the latest numbers instead.
"""

from __future__ import annotations

from typing import Iterable

from rich.text import Text

from tunedeck.core.records import MetricPoint

from .plotext_figure import CachedChart, build_figure

MIN_WIDTH = 24
MIN_HEIGHT = 6
SMOOTH_FROM = 20
"""From this many train points on, raw train loss is drawn grey under its moving average."""
LOSS_SERIES = (
    ("train", "train_loss", "cyan"),
    ("valid", "valid_loss", "magenta"),
    ("full valid", "full_valid_loss", "yellow"),
)
REWARD_SERIES = (
    ("train reward", "train_reward", "cyan"),
    ("valid reward", "valid_reward", "magenta"),
)
"""RFT jobs have no loss: the chart then draws their mean rewards instead."""
SERIES = LOSS_SERIES + REWARD_SERIES


def smooth(points: list[tuple[int, float]], span: int) -> list[tuple[int, float]]:
    """Exponential moving average (the trend under noisy per-step training loss)."""
    alpha = 2.0 / (span + 1)
    out: list[tuple[int, float]] = []
    average: float | None = None
    for step, value in points:
        average = value if average is None else alpha * value + (1 - alpha) * average
        out.append((step, average))
    return out


def thin(points: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most about `limit` points, evenly spaced, always keeping the last one."""
    if limit < 2 or len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    kept = points[::stride]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


class LossChart(CachedChart):
    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 3;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._series: dict[str, dict[int, float]] = {field: {} for _, field, _ in SERIES}
        self.total_steps: int | None = None

    # -- data ------------------------------------------------------------------------------

    def add_points(self, points: Iterable[MetricPoint]) -> int:
        """Add metric points (any order, duplicates ignored); returns how many values changed."""
        changed = 0
        for point in points:
            if point.total_steps:
                self.total_steps = int(point.total_steps)
            for _, field, _ in SERIES:
                value = getattr(point, field)
                if value is None:
                    continue
                series = self._series[field]
                value = float(value)
                if series.get(point.step) != value:
                    series[point.step] = value
                    changed += 1
        if changed:
            self.version += 1
            self._update_title()
            self.refresh()
        return changed

    def clear(self) -> None:
        for series in self._series.values():
            series.clear()
        self.total_steps = None
        self.version += 1
        self._update_title()
        self.refresh()

    def points(self, field: str = "train_loss") -> list[tuple[int, float]]:
        """One series as (step, value), by step."""
        return sorted(self._series[field].items())

    @property
    def train_points(self) -> list[tuple[int, float]]:
        return self.points("train_loss")

    @property
    def valid_points(self) -> list[tuple[int, float]]:
        return self.points("valid_loss")

    @property
    def full_valid_points(self) -> list[tuple[int, float]]:
        return self.points("full_valid_loss")

    def latest_text(self) -> Text:
        """The newest value of each series, e.g. 'step 40/120  train 0.512  valid 0.634'."""
        text = Text(end="")
        steps = [max(s) for s in self._series.values() if s]
        if not steps:
            return Text("no metrics yet", style="dim", end="")
        step = max(steps)
        text.append(f"step {step}" + (f"/{self.total_steps}" if self.total_steps else ""))
        for label, field, color in self.shown_series():
            series = self._series[field]
            if series:
                text.append("  ")
                text.append(label, style=color)
                text.append(f" {series[max(series)]:.3f}")
        return text

    def _update_title(self) -> None:
        self.border_subtitle = self.latest_text().plain if any(self._series.values()) else ""

    # -- drawing ---------------------------------------------------------------------------

    def shown_series(self) -> tuple[tuple[str, str, str], ...]:
        """Losses when the job reports any, else rewards (RFT)."""
        if any(self._series[field] for _, field, _ in LOSS_SERIES):
            return LOSS_SERIES
        return REWARD_SERIES if any(self._series[field] for _, field, _ in REWARD_SERIES) else LOSS_SERIES

    @property
    def metric_name(self) -> str:
        return "reward" if self.shown_series() is REWARD_SERIES else "loss"

    def _plotted_series(self) -> list[tuple[str, list[tuple[int, float]], str]]:
        plotted = []
        for label, field, color in self.shown_series():
            points = self.points(field)
            if field in ("train_loss", "train_reward") and len(points) >= SMOOTH_FROM:
                plotted.append((label, points, "gray"))
                plotted.append((f"{label} avg", smooth(points, max(5, len(points) // 20)), color))
            else:
                plotted.append((label, points, color))
        return plotted

    def _build(self, width: int, height: int) -> Text:
        if not any(self._series.values()):
            return Text("no metrics yet", style="dim", end="")
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            text = self.latest_text()
            text.no_wrap = True
            return text
        self.build_count += 1

        def draw(plt) -> None:
            for label, series, color in self._plotted_series():
                series = thin(series, 2 * width)
                if series:
                    steps, values = zip(*series)
                    plt.plot(list(steps), list(values), label=label, color=color, marker="braille")
            if height >= 10:
                plt.xlabel("step")

        return build_figure(width, height, draw)
