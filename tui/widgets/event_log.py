"""A job's message events: every one kept, filtered by level, following new ones live.

Metric points are not written here: a job reports one per training step, which buried the
few messages that matter ("Created fine-tuning job", warnings, the restart notice) under
thousands of lines. The Job screen folds them into one live line under this log
(`metrics_summary`) and draws them in its chart; a metric event with a warning or an error
level is still a message and lands here.

Following: the log scrolls to each new event while the reader is at the bottom, and stops
when they scroll up (back at the bottom, it follows again). The state is a flag set by the
reader's scrolling, not worked out from the scroll position when an event arrives: a resize
moves the bottom away from the position, and the log then stopped following.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from tunedeck.core.describe import local_time

from ..safe_text import one_line, safe

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobEvent
    from tunedeck.core.watch.series import MetricSeries

LEVEL_STYLES = {"error": "bold red", "warn": "yellow", "warning": "yellow", "info": "dim"}
LEVEL_RANKS = {"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3}
FILTERS = (("all", 0), ("info+", 1), ("warn+", 2), ("errors", 3))
"""The level filter's settings, in the order a key cycles them: (name, lowest rank shown)."""


def level_rank(level: str) -> int:
    """An unknown level counts as info: shown unless the reader asked for warnings only."""
    return LEVEL_RANKS.get(level.lower(), 1)


def is_folded(event: JobEvent) -> bool:
    """A metric point (folded into the metrics line), not a message for the log."""
    return event.type == "metrics" and level_rank(event.level) < 2


def event_line(event: JobEvent) -> Text:
    """`14:03:07 info  message` with the message shown literally."""
    text = Text(end="")
    text.append(local_time(event.created_at, seconds=True)[11:] or "-", style="dim")
    text.append(" ")
    text.append(one_line(f"{event.level:<5}", LEVEL_STYLES.get(event.level, "")))
    text.append(" ")
    text.append(safe(event.message))
    return text


def metrics_summary(series: MetricSeries, columns: Iterable[tuple[str, str]], folded: int) -> Text:
    """The one live line of folded metric points: 'metrics: step 240/300 · train loss 0.510 ·
    valid loss 0.630 (240 points, in the chart)'. `columns` are (label, column) pairs."""
    text = Text(end="")
    last = series.last_step()
    if last is None:
        return Text("metrics: none yet", style="dim", end="")
    text.append("metrics: ", style="bold")
    text.append(f"step {last}" + (f"/{series.total_steps}" if series.total_steps else ""))
    for label, column in columns:
        value = series.latest(column)
        if value is not None:
            text.append(f" · {label} {value:.3f}")
    text.append(f"  ({folded} point{'s' if folded != 1 else ''}, in the chart)", style="dim")
    return text


class EventLog(RichLog):
    """Every message event of one job, oldest first (nothing is dropped), `level_filter`
    choosing which are shown."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # min_width=1: wrapped at the log's own width (RichLog's default 78 overflows at 80 columns).
        super().__init__(
            id=id, classes=classes, wrap=True, markup=False, highlight=False, max_lines=None, min_width=1, auto_scroll=False
        )
        self.messages: list[JobEvent] = []
        """Every message event, in the order it came (deduplicated by id)."""
        self.filter_index = 0
        self.following = True
        """Scroll to new events (the reader is at the bottom)."""
        self._seen: set[str] = set()
        self._written_width = 0
        self._rebuilding = False

    # -- what is shown -----------------------------------------------------------------------

    @property
    def filter_name(self) -> str:
        return FILTERS[self.filter_index][0]

    def passes(self, event: JobEvent) -> bool:
        return level_rank(event.level) >= FILTERS[self.filter_index][1]

    @property
    def shown(self) -> list[JobEvent]:
        return [event for event in self.messages if self.passes(event)]

    def add(self, events: Iterable[JobEvent]) -> list[JobEvent]:
        """Keep the new messages among `events` and show those the filter passes; returns the
        new ones."""
        fresh = [e for e in events if e.id not in self._seen]
        if not fresh:
            return []
        self._seen.update(e.id for e in fresh)
        self.messages.extend(fresh)
        shown = [e for e in fresh if self.passes(e)]
        if shown:
            # One write for the whole batch: RichLog renders per write, ~0.5 ms each.
            self.write(Text("\n", end="").join(event_line(e) for e in shown), scroll_end=self.following)
            if self._size_known:  # else RichLog writes it once the size is known (on_resize)
                self._written_width = self.scrollable_content_region.width
        return fresh

    def cycle_filter(self) -> str:
        self.filter_index = (self.filter_index + 1) % len(FILTERS)
        self._rebuild()
        return self.filter_name

    def _rebuild(self) -> None:
        """Write the shown messages again (a new filter, or a new width to wrap them at)."""
        self._rebuilding = True
        self.clear()
        shown = self.shown
        if shown:
            self.write(Text("\n", end="").join(event_line(e) for e in shown), scroll_end=self.following)
        self._written_width = self.scrollable_content_region.width
        self.call_after_refresh(self._rebuilt)

    def _rebuilt(self) -> None:
        self._rebuilding = False
        if self.following:
            self.scroll_end(animate=False, immediate=True)

    # -- following -------------------------------------------------------------------------

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self._rebuilding:
            self.following = new_value >= self.max_scroll_y

    def on_resize(self, event: Resize) -> None:
        # Textual calls RichLog's own handler too: it writes what came before the size was known.
        width = self.scrollable_content_region.width
        if self._written_width and width != self._written_width and self.messages:
            self._rebuild()  # wrapped again at the new width
            return
        self._written_width = width
        if self.following:
            self.scroll_end(animate=False)

    def follow(self) -> None:
        """Back to the newest event, following from now on."""
        self.following = True
        self.scroll_end(animate=False)
