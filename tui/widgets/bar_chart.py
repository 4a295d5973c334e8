"""A histogram drawn with plotext's public API (tokens or messages per example).

Like the loss chart: plotext keeps module-global state, so the chart is built only in
`render()` (the UI thread) and cached on (data version, size). Values are binned to fit the
width; the last bin holds everything from the 99th percentile up, so one huge example does
not squash the rest into a single column.
"""

from __future__ import annotations

from rich.text import Text

from .plotext_figure import CachedChart, build_figure

MIN_WIDTH = 20
MIN_HEIGHT = 5
MAX_BINS = 24


def percentile(counts: dict[int, int], fraction: float) -> int:
    total = sum(counts.values())
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= total * fraction:
            return value
    return max(counts)


def bins(counts: dict[int, int], max_bins: int) -> tuple[list[str], list[int]]:
    """(labels, counts) of up to `max_bins` equal-width bins; the last one open-ended."""
    if not counts:
        return [], []
    low, high = min(counts), max(counts)
    top = percentile(counts, 0.99) if high - low + 1 > max_bins else high
    step = max(1, -(-(top - low + 1) // max_bins))
    starts = list(range(low, top + 1, step))
    sums = [0] * len(starts)
    for value, times in counts.items():
        sums[min((value - low) // step, len(starts) - 1)] += times
    labels = [str(s) if step == 1 else f"{s}-{s + step - 1}" for s in starts]
    if top < high:
        labels[-1] = f"{starts[-1]}+"
    return labels, sums


class BarChart(CachedChart):
    DEFAULT_CSS = """
    BarChart {
        height: 10;
    }
    """

    def __init__(self, *, color: str = "cyan", id: str | None = None) -> None:
        super().__init__(id=id)
        self.color = color
        self.counts: dict[int, int] = {}

    def set_counts(self, counts: dict[int, int]) -> None:
        if counts != self.counts:
            self.counts = dict(counts)
            self.version += 1
            self.refresh()

    def _build(self, width: int, height: int) -> Text:
        if not self.counts:
            return Text("no data yet", style="dim", end="")
        labels, sums = bins(self.counts, min(MAX_BINS, max(2, (width - 8) // 3)))
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            return Text(" ".join(f"{label}:{n}" for label, n in zip(labels, sums)), no_wrap=True, end="")
        self.build_count += 1

        def draw(plt) -> None:
            positions = list(range(1, len(sums) + 1))
            filled = [(p, n) for p, n in zip(positions, sums) if n]  # empty bins would still paint their base row
            plt.bar([p for p, _ in filled], [n for _, n in filled], marker="sd", color=self.color, width=0.8)
            plt.xlim(0.5, len(sums) + 0.5)
            every = max(1, -(-len(positions) * 8 // max(8, width - 6)))
            shown = positions[::every]
            plt.xticks(shown, [labels[p - 1] for p in shown])
            plt.yfrequency(min(3, max(2, height // 4)))

        return build_figure(width, height, draw)
