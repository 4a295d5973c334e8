"""Metric chart: one job's metrics against step, one pane at a time, drawn with plotext.

The job's metrics are a `MetricSeries` (every numeric column of its metric events). A pane
groups the columns that belong on one y axis: loss (train, validation, full validation),
token accuracy, RFT reward and completion length, DPO reward margin and reward accuracy,
and whatever else the job reports. Only panes with data are offered.

How a curve is told apart without colour (NO_COLOR=1, or colour-blind eyes): train values
are braille dots (faint when smoothed), their EMA quarter blocks, validation `•`, full
validation `+`, a spread `·`; epoch ends are `┆` columns and the cursor a `│`. The legend is
a line of text above the plot, never over the data; x ticks are whole steps.

plotext keeps module-global figure state, so the chart is built only in `render()` (the UI
thread) and the built text is cached on (data version, size, options); repaints that
change none of them reuse it. The cursor is one of the options, so a cursor key rebuilds the
figure: everything before plotext is cached too (the EMA over the whole series, extended
as points are added rather than worked out again; the pane's steps; the points in view),
and the readout reads values by bisection. Series are thinned to about two points per
column (braille dots are two wide); the EMA is always taken over every point first.
"""

from __future__ import annotations

import io
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from rich.text import Text

from tunedeck.core.watch.series import MetricSeries, metric_family

from ..safe_text import clean
from .plotext_figure import CachedChart, build_figure

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobEvent

MIN_WIDTH = 24
MIN_HEIGHT = 5
LEGEND_FROM_HEIGHT = 14
"""Below this height the legend line is dropped: the readout names every series with its
glyph too, and a small chart needs the rows for data."""
READOUT_TWO_LINES_FROM = 9
"""From this height a long readout may take a second line instead of being cut."""
STRENGTHS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DEFAULT_STRENGTH = 0.6
FIGURES_KEPT = 4
"""Plots kept without the cursor: a readout that takes one line at one step and two at the
next changes the plot's height, and moving the cursor back and forth must not rebuild."""
MIN_SPAN = 4
"""Zooming in stops at this many steps across."""

# How each kind of curve looks: (marker, colour, legend glyph).
RAW_LOOK = ("braille", "gray", "⠿")
TRAIN_LOOK = ("braille", "cyan", "⠿")
SMOOTH_LOOK = ("hd", "cyan", "▞")
VALID_LOOK = ("•", "magenta", "•")
FULL_LOOK = ("+", "yellow", "+")
SPREAD_LOOK = ("·", "gray", "·")
OTHER_LOOKS = (("braille", "cyan", "⠿"), ("•", "magenta", "•"), ("+", "yellow", "+"), ("x", "green", "x"))
EPOCH_LOOK = ("┆", "gray")
DOTS_ACROSS = {"braille": 2, "hd": 2}
"""Points a marker can tell apart in one column (others draw one character a point): more
would only cost plotext time (it draws every segment)."""
CURSOR_COLOR = "orange"
RICH_STYLES = {"gray": "bright_black", "orange": "dark_orange"}
"""plotext's colour names that rich spells otherwise (the legend and readout use rich)."""


def rich_style(color: str) -> str:
    return RICH_STYLES.get(color, color)


@dataclass(frozen=True)
class CurveSpec:
    label: str
    candidates: tuple[str, ...]
    """Column names in order of preference (providers spell some metrics two ways)."""
    kind: str
    """"train" (raw, plus its EMA when smoothing), "valid" (a line), "full" (points), "other"."""


@dataclass(frozen=True)
class PaneSpec:
    key: str
    title: str
    curves: tuple[CurveSpec, ...]
    aliases: tuple[tuple[str, str], ...] = ()
    """(label, label) pairs of curves a provider may report as one metric under two names
    (RFT's `valid_reward_mean` and `full_valid_mean_reward`): the second is drawn only when
    its values differ from the first's. Other curves are always drawn, even when their
    values happen to match another's."""


def _trio(train: str, valid: str, full: str) -> tuple[CurveSpec, ...]:
    return (
        CurveSpec("train", (train,), "train"),
        CurveSpec("valid", (valid,), "valid"),
        CurveSpec("full valid", (full,), "full"),
    )


PANES = (
    PaneSpec("loss", "loss", _trio("train_loss", "valid_loss", "full_valid_loss")),
    PaneSpec(
        "reward",
        "reward",
        (
            CurveSpec("train", ("train_reward_mean", "train_mean_reward", "scores.train_reward_mean"), "train"),
            CurveSpec("valid", ("valid_reward_mean", "valid_mean_reward", "scores.valid_reward_mean"), "valid"),
            CurveSpec("full valid", ("full_valid_reward_mean", "full_valid_mean_reward"), "full"),
        ),
        aliases=(("valid", "full valid"),),
    ),
    PaneSpec(
        "accuracy",
        "token accuracy",
        _trio("train_mean_token_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy"),
    ),
    PaneSpec(
        "margin",
        "reward margin",
        _trio("train_mean_reward_margin", "valid_mean_reward_margin", "full_valid_mean_reward_margin"),
    ),
    PaneSpec(
        "reward_accuracy",
        "reward accuracy",
        _trio("train_reward_accuracy", "valid_reward_accuracy", "full_valid_reward_accuracy"),
    ),
    PaneSpec(
        "completion",
        "completion length",
        (
            CurveSpec("train", ("completion_tokens_mean", "train_completion_tokens_mean", "mean_completion_length"), "train"),
            CurveSpec("valid", ("valid_completion_tokens_mean",), "valid"),
        ),
    ),
)
PANE_ORDER = {
    "loss": ("loss", "accuracy", "margin", "reward_accuracy", "reward", "completion", "other"),
    "reward": ("reward", "completion", "loss", "accuracy", "margin", "reward_accuracy", "other"),
}
OTHER_LIMIT = 4
"""The "other" pane draws at most this many of the columns no pane claims."""


@dataclass(frozen=True)
class Curve:
    """One column of the current pane, resolved against the job's columns."""

    label: str
    column: str
    kind: str
    look: tuple[str, str, str]
    mean: str | None = None
    """A spread's mean column: the band is drawn around it."""
    alias_of: str | None = None
    """The column this one may repeat under another name (see `PaneSpec.aliases`)."""


@dataclass(frozen=True)
class Pane:
    key: str
    title: str
    curves: tuple[Curve, ...]


@dataclass(frozen=True)
class Plotted:
    """What is drawn for one curve: its (step, value) points in view, how, and its legend."""

    label: str
    points: list[tuple[int, float]]
    marker: str
    color: str
    glyph: str
    scatter: bool = False
    kind: str = "other"
    """The curve's kind ("train", "valid", "full", "other", "spread"), or "ema" for a train EMA."""
    spread: list[tuple[int, float]] | None = None
    """A spread band's upper line: the standard deviation by step (the readout shows it)."""


def thin(points: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most about `limit` points, evenly spaced, always keeping the last one."""
    if limit < 2 or len(points) <= limit:
        return points
    stride = -(-len(points) // limit)
    kept = points[::stride]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept


def spread_column(column: str, columns: Iterable[str]) -> str | None:
    """The standard deviation reported beside a mean column, if the job reports one."""
    present = set(columns)
    for candidate in (column.replace("_mean", "_std"), column.replace("mean", "std"), f"{column}_std"):
        if candidate != column and candidate in present:
            return candidate
    return None


def available_panes(series: MetricSeries, method: str) -> list[Pane]:
    """The panes with data, in the order that suits the job (RFT: reward first)."""
    columns = series.columns
    present = set(columns)
    claimed: set[str] = set()
    panes: dict[str, Pane] = {}
    for spec in PANES:
        curves = []
        resolved: dict[str, str] = {}  # label -> column
        aliases = dict((second, first) for first, second in spec.aliases)
        for curve in spec.curves:
            claimed.update(curve.candidates)
            column = next((c for c in curve.candidates if c in present), None)
            if column is None:
                continue
            resolved[curve.label] = column
            look = {"train": TRAIN_LOOK, "valid": VALID_LOOK, "full": FULL_LOOK}[curve.kind]
            alias_of = resolved.get(aliases.get(curve.label, ""))
            curves.append(Curve(curve.label, column, curve.kind, look, alias_of=alias_of))
            spread = spread_column(column, columns)
            if spread is not None:
                claimed.add(spread)
                curves.append(Curve(f"{curve.label} ±sd", spread, "spread", SPREAD_LOOK, mean=column))
        if curves:
            panes[spec.key] = Pane(spec.key, spec.title, tuple(curves))
    # Whatever no pane claims (a provider's new metric); nested blocks repeat top-level ones.
    others = [c for c in columns if c not in claimed and "." not in c and not c.endswith("_std")]
    if others:
        curves = tuple(
            Curve(clean(column), column, "other", OTHER_LOOKS[i % len(OTHER_LOOKS)])  # a provider's name: shown literally
            for i, column in enumerate(others[:OTHER_LIMIT])
        )
        panes["other"] = Pane("other", "other", curves)
    order = PANE_ORDER[metric_family(series, method)]
    return [panes[key] for key in order if key in panes]


def nice_step(raw: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `raw`."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def step_ticks(lo: int, hi: int, target: int) -> list[int]:
    """Whole-step x ticks from `lo` to `hi`, about `target` of them."""
    step = max(1, int(nice_step(max(1.0, (hi - lo) / max(1, target)))))
    if step % 1:
        step = int(step) + 1
    first = -(-lo // step) * step
    ticks = list(range(first, hi + 1, step))
    return ticks or [lo]


def value_ticks(lo: float, hi: float, target: int) -> tuple[list[float], list[str]]:
    """About `target` round y ticks in [lo, hi] with labels just precise enough to differ."""
    step = nice_step((hi - lo) / max(1, target))
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    decimals = max(0, -math.floor(math.log10(step)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0))
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


def log_ticks(lo: float, hi: float, target: int) -> tuple[list[float], list[str]]:
    """Ticks for a log10 axis spanning exponents [lo, hi]: 1, 2, 5 × 10^k where at least two
    fit, else round values of the narrow range; labelled with the values themselves."""
    ticks: list[float] = []
    for power in range(math.floor(lo) - 1, math.ceil(hi) + 1):
        for factor in (1, 2, 5):
            position = math.log10(factor) + power
            if lo <= position <= hi:
                ticks.append(position)
    if len(ticks) > max(2, target):
        ticks = [t for t in ticks if abs(t - round(t)) < 1e-9] or ticks[:: max(1, len(ticks) // target)]
    if len(ticks) >= 2:
        return ticks, [f"{10**t:.3g}" for t in ticks]
    values, labels = value_ticks(10**lo, 10**hi, target)
    kept = [(math.log10(v), label) for v, label in zip(values, labels) if v > 0]
    return [t for t, _ in kept], [label for _, label in kept]


def format_value(value: float | None) -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.2e}"
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 10 else f"{value:.2f}"


def value_at(points: list[tuple[int, float]], step: int) -> tuple[int, float] | None:
    """The point at `step`, else the last one before it (validation is measured sparsely)."""
    index = bisect_right(points, (step, math.inf)) - 1
    return points[index] if index >= 0 else None


def cursor_overlay(lines: list[Text], cursor: int, bounds: tuple[int, int]) -> list[Text]:
    """`lines` (a plotext figure spanning steps `bounds`) with a `│` at `cursor`'s column on
    every empty cell of the canvas, the column worked out as plotext places an x value: the
    canvas is inside the frame's `┌...┐`."""
    top = next((i for i, line in enumerate(lines) if "┌" in line.plain), None)
    if top is None:
        return lines
    frame = lines[top].plain
    start, end = frame.index("┌") + 1, frame.find("┐")
    lo, hi = bounds
    if end < start or hi <= lo:
        return lines
    columns = end - start
    column = start + math.floor(round(0.5 + (columns - 1) * (cursor - lo) / (hi - lo), 8))
    out = list(lines)
    style = rich_style(CURSOR_COLOR)
    for row in range(top, len(lines)):
        plain = lines[row].plain
        bottom = "└" in plain
        if column < len(plain):
            # The frame marks where the line meets it, as plotext does; data cells stay on top.
            mark = {"─": "┬"}.get(plain[column]) if row == top else {"─": "┴", "┬": "┴"}.get(plain[column]) if bottom else "│" if plain[column] == " " else None
            if mark is not None:
                line = lines[row]
                out[row] = Text.assemble(line[:column], Text(mark, style=style), line[column + 1 :], end="")
        if bottom:
            break
    return out


class MetricChart(CachedChart):
    """One pane of a job's metrics. Keys live on the Job screen; this widget holds the view
    state (pane, smoothing, log scale, zoom, cursor) and draws it."""

    DEFAULT_CSS = """
    MetricChart {
        height: 1fr;
        min-height: 3;
    }
    """

    can_focus = True

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.series = MetricSeries()
        self.method = "supervised"
        self.n_epochs: int | None = None
        self.pane_key: str | None = None
        """The pane the user chose (None: the first one the job has)."""
        self.smoothing = True
        self.strength = DEFAULT_STRENGTH
        self.log_scale = False
        self.view: tuple[int, int] | None = None
        """The zoomed step range (inclusive); None shows every step."""
        self.cursor: int | None = None
        """The step the readout reads; None follows the newest step."""
        self.empty_text = "no metrics yet"
        self._panes_cache: tuple[tuple[object, ...], list[Pane]] | None = None
        self._steps_cache: tuple[tuple[object, ...], list[int]] | None = None
        self._plotted_cache: tuple[tuple[object, ...], list[Plotted]] | None = None
        self._view_cache: tuple[tuple[object, ...], tuple[list[tuple[Plotted, list[tuple[int, float]]]], int]] | None = None
        self._ema_cache: dict[str, _Smoothed] = {}
        self._figures: dict[tuple[object, ...], tuple[Text, tuple[int, int] | None]] = {}

    # -- data ------------------------------------------------------------------------------

    def add_events(self, events: Iterable[JobEvent]) -> int:
        """Add the metric events among `events` (any order, repeats ignored); returns how many
        values changed."""
        changed = self.series.add_events(events)
        if changed:
            self._data_changed()
        return changed

    def add_data(self, data: dict) -> int:
        changed = self.series.add_data(data)
        if changed:
            self._data_changed()
        return changed

    def set_series(self, series: MetricSeries) -> None:
        """Show `series` (built off the UI thread: a long job's take seconds) in place of
        what the chart holds; later events are added to it."""
        if series is not self.series:
            self.series = series
            self._ema_cache.clear()
            self._data_changed()

    def set_job(self, method: str, n_epochs: int | None) -> None:
        if (method, n_epochs) != (self.method, self.n_epochs):
            self.method, self.n_epochs = method, n_epochs
            self._data_changed()

    def set_empty_text(self, text: str) -> None:
        if text != self.empty_text:
            self.empty_text = text
            self._data_changed()

    def _data_changed(self) -> None:
        self.version += 1
        self._update_title()
        self.refresh()

    def points(self, column: str) -> list[tuple[int, float]]:
        """One column as (step, value), by step."""
        return self.series.values(column)

    @property
    def train_points(self) -> list[tuple[int, float]]:
        return self.points("train_loss")

    @property
    def valid_points(self) -> list[tuple[int, float]]:
        return self.points("valid_loss")

    @property
    def full_valid_points(self) -> list[tuple[int, float]]:
        return self.points("full_valid_loss")

    # -- panes -----------------------------------------------------------------------------

    @property
    def panes(self) -> list[Pane]:
        key = self._data_key()
        if self._panes_cache is None or self._panes_cache[0] != key:
            self._panes_cache = (key, available_panes(self.series, self.method))
        return self._panes_cache[1]

    def _data_key(self) -> tuple[object, ...]:
        """What the caches below are keyed on besides the options: which series, and its version."""
        return (id(self.series), self.series.version, self.method)

    @property
    def pane(self) -> Pane | None:
        panes = self.panes
        if not panes:
            return None
        return next((p for p in panes if p.key == self.pane_key), panes[0])

    @property
    def metric_name(self) -> str:
        pane = self.pane
        return pane.title if pane is not None else "loss"

    def cycle_pane(self, delta: int = 1) -> str | None:
        panes = self.panes
        pane = self.pane
        if pane is None:
            return None
        index = (panes.index(pane) + delta) % len(panes)
        self.pane_key = panes[index].key
        self.view = None  # another metric: its own range
        self._options_changed()
        return self.pane_key

    # -- options ---------------------------------------------------------------------------

    def options_key(self) -> tuple[object, ...]:
        return (self.pane_key, self.smoothing, self.strength, self.log_scale, self.view, self.cursor)

    def _options_changed(self) -> None:
        self._update_title()
        self.refresh()

    def toggle_smoothing(self) -> None:
        self.smoothing = not self.smoothing
        self._options_changed()

    def change_strength(self, delta: int) -> float:
        """One notch stronger (+1) or weaker (-1) smoothing; turns smoothing on."""
        index = min(range(len(STRENGTHS)), key=lambda i: abs(STRENGTHS[i] - self.strength))
        self.strength = STRENGTHS[max(0, min(len(STRENGTHS) - 1, index + delta))]
        self.smoothing = True
        self._options_changed()
        return self.strength

    def toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._options_changed()

    # -- steps, zoom and cursor ------------------------------------------------------------

    def pane_steps(self) -> list[int]:
        """Every step at which the current pane has a value (cached: do not change it)."""
        pane = self.pane
        if pane is None:
            return []
        key = (*self._data_key(), pane.key)
        if self._steps_cache is None or self._steps_cache[0] != key:
            steps: set[int] = set()
            for curve in pane.curves:
                steps.update(s for s, _ in self.series.values(curve.column))
            self._steps_cache = (key, sorted(steps))
        return self._steps_cache[1]

    def full_range(self) -> tuple[int, int] | None:
        steps = self.pane_steps()
        if not steps:
            return None
        return steps[0], steps[-1]

    def view_range(self) -> tuple[int, int] | None:
        full = self.full_range()
        if full is None:
            return None
        if self.view is None:
            return full
        return self.view

    def zoom(self, factor: float) -> tuple[int, int] | None:
        """Zoom in (factor < 1) or out (> 1) around the cursor (or the middle of the view)."""
        full = self.full_range()
        current = self.view_range()
        if full is None or current is None:
            return None
        lo, hi = current
        span = max(MIN_SPAN, round((hi - lo) * factor))
        if span >= full[1] - full[0]:
            self.view = None
        else:
            centre = self.cursor if self.cursor is not None and lo <= self.cursor <= hi else (lo + hi) // 2
            new_lo = max(full[0], centre - span // 2)
            new_hi = min(full[1], new_lo + span)
            new_lo = max(full[0], new_hi - span)
            self.view = (new_lo, new_hi)
        self._options_changed()
        return self.view

    def reset_zoom(self) -> None:
        self.view = None
        self._options_changed()

    def move_cursor(self, delta: int) -> int | None:
        """Move the cursor `delta` steps with data (from the newest step when there is none)."""
        steps = self.pane_steps()
        if not steps:
            return None
        if self.cursor is None:
            index = len(steps) - 1 + min(delta, 0)
        else:
            index = bisect_left(steps, self.cursor) + delta
        self.cursor = steps[max(0, min(len(steps) - 1, index))]
        self._keep_cursor_in_view()
        self._options_changed()
        return self.cursor

    def cursor_to(self, where: str) -> int | None:
        """"first": the first step; "last": back to following the newest step."""
        steps = self.pane_steps()
        self.cursor = steps[0] if where == "first" and steps else None
        self._keep_cursor_in_view()
        self._options_changed()
        return self.cursor

    def _keep_cursor_in_view(self) -> None:
        if self.view is None or self.cursor is None:
            return
        lo, hi = self.view
        span = hi - lo
        if self.cursor < lo:
            self.view = (self.cursor, self.cursor + span)
        elif self.cursor > hi:
            self.view = (self.cursor - span, self.cursor)

    # -- what is drawn ---------------------------------------------------------------------

    def plotted(self) -> list[Plotted]:
        """Every line of the current pane over every step, raw (the readout's values); cached
        on the data and the smoothing."""
        pane = self.pane
        if pane is None:
            return []
        key = (*self._data_key(), pane.key, self.smoothing, self.strength)
        if self._plotted_cache is None or self._plotted_cache[0] != key:
            self._plotted_cache = (key, self._plotted(pane))
        return list(self._plotted_cache[1])

    def _plotted(self, pane: Pane) -> list[Plotted]:
        out: list[Plotted] = []
        skipped: set[str] = set()
        for curve in pane.curves:
            points = self.series.values(curve.column)
            if not points:
                continue
            if curve.alias_of is not None and points == self.series.values(curve.alias_of):
                skipped.add(curve.column)  # the same metric under a second name: drawn once
                continue
            marker, color, glyph = curve.look
            if curve.kind == "train" and self.smoothing:
                out.append(Plotted(curve.label, points, RAW_LOOK[0], RAW_LOOK[1], RAW_LOOK[2], kind="train"))
                out.append(Plotted(f"{curve.label} EMA", self._ema(curve.column, points), *SMOOTH_LOOK, kind="ema"))
            elif curve.kind == "spread":
                if curve.mean is None or curve.mean in skipped:
                    continue
                means = dict(self.series.values(curve.mean))
                spread = [(s, v) for s, v in points if s in means]
                upper = [(s, means[s] + v) for s, v in spread]
                lower = [(s, means[s] - v) for s, v in spread]
                out.append(Plotted(curve.label, upper, marker, color, glyph, kind="spread", spread=spread))
                out.append(Plotted("", lower, marker, color, glyph, kind="spread"))
            else:
                out.append(Plotted(curve.label, points, marker, color, glyph, scatter=curve.kind == "full", kind=curve.kind))
        return out

    def _ema(self, column: str, points: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """`ema(points, strength)`, extended from the last one worked out when the points only
        grew at the end (a poll adds a few steps to a long job)."""
        smoothed = self._ema_cache.get(column)
        if smoothed is None or smoothed.strength != self.strength or not smoothed.extends(points):
            smoothed = self._ema_cache[column] = _Smoothed(self.strength)
        return smoothed.extend(points)

    def points_in_view(self) -> tuple[list[tuple[Plotted, list[tuple[int, float]]]], int]:
        """Each plotted line's points in the zoomed range (log10 of them on a log scale), and
        how many values the log scale hides (≤ 0; spread bands and EMAs not counted).
        Cached on the data and the options, the cursor aside."""
        bounds = self.view_range()
        if bounds is None:
            return [], 0
        lo, hi = bounds
        plotted = self.plotted()
        key = (self._plotted_cache[0] if self._plotted_cache else None, lo, hi, self.log_scale)
        if self._view_cache is None or self._view_cache[0] != key:
            lines = []
            hidden = 0
            for line in plotted:
                points = line.points[bisect_left(line.points, (lo, -math.inf)) : bisect_right(line.points, (hi, math.inf))]
                if self.log_scale:
                    shown = [(s, math.log10(v)) for s, v in points if v > 0]
                    if line.kind not in ("spread", "ema"):
                        hidden += len(points) - len(shown)
                    points = shown
                lines.append((line, points))
            self._view_cache = (key, (lines, hidden))
        return self._view_cache[1]

    def hidden_count(self) -> int:
        """How many values in view the log scale cannot show (≤ 0); 0 on a linear scale."""
        return self.points_in_view()[1] if self.log_scale else 0

    def readout_step(self) -> int | None:
        if self.cursor is not None:
            return self.cursor
        steps = self.pane_steps()
        return steps[-1] if steps else None

    def readout_parts(self) -> list[Text]:
        """The readout's pieces: the step, its epoch, then each shown series' value there."""
        step = self.readout_step()
        if step is None:
            return [Text(self.empty_text, style="dim", end="")]
        head = Text(end="")
        if self.cursor is not None:
            head.append("cursor ", style="bold")
        head.append(f"step {step}" + (f"/{self.series.total_steps}" if self.series.total_steps else ""))
        parts = [head]
        epoch = self.series.epoch_of(step, self.n_epochs)
        if epoch is not None:
            parts.append(Text(f"epoch {epoch:.2f}/{self.n_epochs}", end=""))
        for line in self.plotted():
            if not line.label:
                continue
            spread = line.spread is not None
            found = value_at(line.spread if spread else line.points, step)
            part = Text(end="")
            label = line.label.removesuffix(" ±sd") if spread else line.label
            part.append(f"{line.glyph} {label}", style=rich_style(line.color))
            if found is None:
                part.append(" ±—" if spread else " —")
            else:
                part.append(f" {'±' if spread else ''}{format_value(found[1])}")  # a spread: the sd itself
                if found[0] != step:
                    part.append(f"@{found[0]}", style="dim")  # measured at an earlier step
            parts.append(part)
        return parts

    def readout(self, width: int | None = None, max_lines: int = 1) -> Text:
        """Every shown series' value at the cursor (or the newest step) and its epoch, e.g.
        'step 40/120 · epoch 1.00/3 · ⠿ train 0.512 · ▞ train EMA 0.530 · • valid 0.634@30',
        wrapped at " · " into at most `max_lines` lines of `width`."""
        lines: list[Text] = [Text(end="")]
        for part in self.readout_parts():
            line = lines[-1]
            if line and width is not None and line.cell_len + 3 + part.cell_len > width and len(lines) < max_lines:
                lines.append(Text(end=""))
                line = lines[-1]
            if line:
                line.append(" · ", style="dim")
            line.append_text(part)
        return Text("\n", end="").join(lines)

    def legend(self) -> Text:
        text = Text(end="")
        for line in self.plotted():
            if not line.label:
                continue
            if text:
                text.append("  ")
            text.append(line.glyph, style=rich_style(line.color))
            text.append(f" {line.label}")
        if self.series.epoch_boundaries(self.n_epochs):
            text.append("  ")
            text.append(EPOCH_LOOK[0], style=rich_style(EPOCH_LOOK[1]))
            text.append(" epoch end")
        if self.cursor is not None:
            text.append("  ")
            text.append("│", style=rich_style(CURSOR_COLOR))
            text.append(" cursor")
        return text

    def title(self) -> str:
        pane = self.pane
        if pane is None:
            return "metrics"
        parts = [pane.title]
        panes = self.panes
        if len(panes) > 1:
            parts[0] += f" {panes.index(pane) + 1}/{len(panes)}"
        if any(c.kind == "train" for c in pane.curves):
            parts.append(f"EMA {self.strength:g}" if self.smoothing else "EMA off")
        if self.log_scale:
            hidden = self.hidden_count()
            parts.append(f"log ({hidden} point{'s' if hidden != 1 else ''} ≤ 0 hidden)" if hidden else "log")
        if self.view is not None:
            parts.append(f"steps {self.view[0]}–{self.view[1]}")
        return " · ".join(parts)

    def _update_title(self) -> None:
        self.border_title = self.title()

    def latest_text(self) -> Text:
        """The newest value of each series, e.g. 'step 40/120 · ⠿ train 0.512 · • valid 0.634'."""
        saved, self.cursor = self.cursor, None
        try:
            return self.readout()
        finally:
            self.cursor = saved

    # -- drawing ---------------------------------------------------------------------------

    def _build(self, width: int, height: int) -> Text:
        if self.pane is None:
            return Text(self.empty_text, style="dim", end="")
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            text = self.readout()
            text.no_wrap = True
            return text
        self.build_count += 1
        return self.draw(width, height)

    def draw(self, width: int, height: int) -> Text:
        """The legend, the plot and the readout in `width` x `height` (also the SVG export)."""
        legend = self.legend() if height >= LEGEND_FROM_HEIGHT else None
        readout = self.readout(width, max_lines=2 if height >= READOUT_TWO_LINES_FROM else 1).split("\n")
        plot_height = height - len(readout) - (1 if legend is not None else 0)
        plot = self._plot_lines(width, plot_height)
        lines = [*([legend] if legend is not None else []), *plot, *readout]
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        out = Text("\n", end="").join(lines)
        out.no_wrap = True
        return out

    def _plot_lines(self, width: int, height: int) -> list[Text]:
        """The plot's lines: the figure without the cursor (cached: a cursor key costs no plotext
        build), then the cursor's `│` on its column's empty cells, below the data as plotext
        would draw it."""
        key = (self.version, self._data_key(), width, height, self.options_key()[:-1])
        cached = self._figures.get(key)
        if cached is None:
            if len(self._figures) >= FIGURES_KEPT:
                self._figures.clear()
            cached = self._figures[key] = self._figure(width, height)
        figure, bounds = cached
        lines = figure.split("\n")
        cursor = self.cursor
        if bounds is None or cursor is None or not bounds[0] <= cursor <= bounds[1]:
            return lines
        return cursor_overlay(lines, cursor, bounds)

    def _plot(self, width: int, height: int) -> Text:
        return Text("\n", end="").join(self._plot_lines(width, height))

    def _figure(self, width: int, height: int) -> tuple[Text, tuple[int, int] | None]:
        """The plot without the cursor, and the x range it spans (None: nothing drawn)."""
        bounds = self.view_range()
        assert bounds is not None
        lo, hi = bounds
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        columns = max(MIN_WIDTH, width - 8)  # the plot's columns, less the y labels and the frame (about)
        lines = [(line, thin(points, columns * DOTS_ACROSS.get(line.marker, 1))) for line, points in self.points_in_view()[0] if points]
        values = [v for _, pts in lines for _, v in pts]
        if not values:
            text = Text("nothing to draw in this range" + (" (log scale: no values above 0)" if self.log_scale else ""), style="dim")
            return text, None
        low, high = min(values), max(values)
        pad = (high - low) * 0.05 or max(abs(high) * 0.05, 0.05)
        low, high = low - pad, high + pad
        plot_rows = max(1, height - 2)
        y_ticks, y_labels = (log_ticks if self.log_scale else value_ticks)(low, high, max(2, min(6, plot_rows // 2)))
        y_label_width = max((len(label) for label in y_labels), default=1)
        x_ticks = step_ticks(lo, hi, max(2, (width - y_label_width - 2) // 9))
        boundaries = [b for b in self.series.epoch_boundaries(self.n_epochs) if lo < b < hi]

        def draw(plt) -> None:
            plt.xlim(lo, hi)
            plt.ylim(low, high)
            for boundary in boundaries:
                plt.plot([boundary, boundary], [low, high], marker=EPOCH_LOOK[0], color=EPOCH_LOOK[1])
            for line, points in lines:
                steps, ys = zip(*points)
                draw_line = plt.scatter if line.scatter else plt.plot
                draw_line(list(steps), list(ys), marker=line.marker, color=line.color)
            plt.xticks(x_ticks, [str(t) for t in x_ticks])
            plt.yticks(y_ticks, y_labels)

        return build_figure(width, height, draw), (lo, hi)

    # -- export ----------------------------------------------------------------------------

    def export_svg(self, title: str, width: int = 100, height: int = 30) -> str:
        """The chart as an SVG document, drawn at least `width` x `height` cells."""
        from rich.console import Console

        width, height = max(width, self.content_size.width), max(height, self.content_size.height)
        body = self.draw(width, height) if self.pane is not None else Text(self.empty_text)
        console = Console(record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor")
        heading = Text(self.title(), style="bold", end="")
        console.print(heading)
        console.print(body)
        return console.export_svg(title=title)


class _Smoothed:
    """One column's EMA, kept so that points added at the end extend it (the same arithmetic
    as `ema`, so the result is the same) instead of working it out over every step again."""

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.raw: list[tuple[int, float]] = []
        self.out: list[tuple[int, float]] = []
        self.last = 0.0
        self.weight = 1.0

    def extends(self, points: list[tuple[int, float]]) -> bool:
        """Whether `points` are the ones smoothed so far plus some after them."""
        n = len(self.raw)
        return len(points) >= n and (n == 0 or (points[n - 1] == self.raw[-1] and points[:n] == self.raw))

    def extend(self, points: list[tuple[int, float]]) -> list[tuple[int, float]]:
        fresh = points[len(self.raw) :]
        if fresh:
            if self.strength == 0.0:
                self.out.extend(fresh)
            else:
                strength, last, weight = self.strength, self.last, self.weight
                for step, value in fresh:
                    last = last * strength + (1.0 - strength) * value
                    weight *= strength
                    self.out.append((step, last / (1.0 - weight)))
                self.last, self.weight = last, weight
            self.raw.extend(fresh)
        return list(self.out)
