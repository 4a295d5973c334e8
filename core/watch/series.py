"""Every numeric metric of one job, by step, from its `metrics` events.

Metric events carry a `data` dict (`step`, `total_steps`, then whatever the method reports:
`train_loss`, `valid_loss`, `full_valid_loss`, token accuracies; DPO's reward margins and
accuracies; RFT's rewards, completion lengths and the nested `scores`, `errors`, `usage`,
`timing` blocks). `MetricSeries` keeps every numeric value of every step without knowing
the keys in advance, so a provider's new metric shows up as a new column:

- nested dicts are flattened with "." (`scores.valid_reward_mean`); lists are skipped (the
  per-grader lists have no stable key to name a column by);
- booleans, strings, NaN and infinities are skipped: a chart or a rule cannot use them;
- events arrive in any order and more than once (pages overlap, a resumed job reports a
  step again): a step's values are keyed by step, a repeated value changes nothing, and a
  different value for a step already seen replaces it (the newest report wins).

`version` grows whenever a value changes, so a chart can cache what it drew on it.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Iterable
from typing import Any, TextIO

from tunedeck.core.records import JobEvent

RESERVED = ("step", "total_steps")
LOSS_COLUMNS = ("train_loss", "valid_loss", "full_valid_loss")
REWARD_METHODS = ("reinforcement", "rft")


class MetricSeries:
    """Every numeric metric of one job by step, from its `metrics` events (any order, duplicates ignored)."""

    def __init__(self) -> None:
        self.version = 0
        self.total_steps: int | None = None
        self._by_step: dict[int, dict[str, float]] = {}
        self._columns: dict[str, None] = {}  # first-seen order
        self._sorted_steps: list[int] | None = []
        self._column_cache: dict[str, list[tuple[int, float]]] = {}
        self._total_steps_from: int = -1  # the step whose event last set total_steps

    # -- feeding ---------------------------------------------------------------------------

    @classmethod
    def from_events(cls, events: Iterable[JobEvent]) -> MetricSeries:
        series = cls()
        series.add_events(events)
        return series

    def add_events(self, events: Iterable[JobEvent]) -> int:
        """Add the `metrics` events among `events`; returns how many values changed."""
        return sum(self.add_data(event.data) for event in events if event.type == "metrics")

    def add_data(self, data: dict) -> int:
        """Add one metrics event's `data`; returns how many values changed (0: nothing new)."""
        if not isinstance(data, dict):
            return 0
        step = _as_step(data.get("step"))
        if step is None:
            return 0
        changed = 0
        total = _as_step(data.get("total_steps"))
        # The newest step's total wins: a job that is resumed with other settings may report another.
        if total is not None and step >= self._total_steps_from and total != self.total_steps:
            self.total_steps = total
            changed += 1
        if total is not None:
            self._total_steps_from = max(self._total_steps_from, step)
        values = self._by_step.get(step)
        if values is None:
            values = self._by_step[step] = {}
            self._sorted_steps = None
        for column, value in _flatten(data):
            if values.get(column) == value:
                continue
            values[column] = value
            self._columns.setdefault(column, None)
            self._column_cache.pop(column, None)
            changed += 1
        if changed:
            self.version += 1
        return changed

    # -- reading ---------------------------------------------------------------------------

    @property
    def steps(self) -> list[int]:
        """Every step with a metrics event, ascending."""
        if self._sorted_steps is None:
            self._sorted_steps = sorted(self._by_step)
        return list(self._sorted_steps)

    @property
    def columns(self) -> list[str]:
        """Every numeric column seen, in first-seen order ("step" and "total_steps" excluded)."""
        return list(self._columns)

    def has(self, column: str) -> bool:
        return column in self._columns

    def values(self, column: str) -> list[tuple[int, float]]:
        """(step, value) of every step that reported `column`, by step."""
        cached = self._column_cache.get(column)
        if cached is None:
            if column not in self._columns:
                return []
            if self._sorted_steps is None:
                self._sorted_steps = sorted(self._by_step)
            cached = [(s, self._by_step[s][column]) for s in self._sorted_steps if column in self._by_step[s]]
            self._column_cache[column] = cached
        return list(cached)

    def latest(self, column: str) -> float | None:
        """The value of `column` at the last step that reported it."""
        points = self._column_cache.get(column) or self.values(column)
        return points[-1][1] if points else None

    def last_step(self) -> int | None:
        if not self._by_step:
            return None
        return max(self._by_step)

    def __len__(self) -> int:
        return len(self._by_step)

    # -- epochs ----------------------------------------------------------------------------

    def steps_per_epoch(self, n_epochs: int | None) -> float | None:
        """total_steps / n_epochs (one step per batch, the same batches every epoch)."""
        if not n_epochs or n_epochs < 1 or not self.total_steps:
            return None
        return self.total_steps / n_epochs

    def epoch_boundaries(self, n_epochs: int | None) -> list[int]:
        """The steps at which epochs 1..n-1 end (the last epoch ends at total_steps)."""
        per_epoch = self.steps_per_epoch(n_epochs)
        if per_epoch is None or n_epochs is None:
            return []
        return [round(per_epoch * i) for i in range(1, n_epochs)]

    def epoch_of(self, step: int, n_epochs: int | None) -> float | None:
        """Epochs done at `step` (1.5: half way through the second), when known."""
        per_epoch = self.steps_per_epoch(n_epochs)
        if per_epoch is None:
            return None
        return step / per_epoch

    # -- export ----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, float | int | None]]:
        """One dict per step: {"step": s, column: value or None, ...} with every column."""
        columns = self.columns
        out: list[dict[str, float | int | None]] = []
        for step in self.steps:
            values = self._by_step[step]
            row: dict[str, float | int | None] = {"step": step}
            row.update({c: values.get(c) for c in columns})
            out.append(row)
        return out

    def write_csv(self, out: TextIO) -> None:
        """Header "step,<columns...>", then one row per step; a missing value is an empty cell."""
        writer = csv.writer(out, lineterminator="\n")
        columns = self.columns
        writer.writerow(["step", *columns])
        for step in self.steps:
            values = self._by_step[step]
            writer.writerow([step, *(_cell(values.get(c)) for c in columns)])


def metric_family(series: MetricSeries, method: str) -> str:
    """The job's kind of curve: "reward" for RFT (or a job that reports no loss at all), else "loss"."""
    if method.lower() in REWARD_METHODS:
        return "reward"
    if any(series.has(c) for c in LOSS_COLUMNS):
        return "loss"
    if any("reward" in c for c in series.columns):
        return "reward"
    return "loss"


def ema(points: list[tuple[int, float]], strength: float) -> list[tuple[int, float]]:
    """Exponential moving average, debiased as TensorBoard's smoothing slider is.

    `strength` is the weight of the past, in [0, 1): 0 gives the points back, 0.6 smooths
    lightly, 0.9 heavily. Debiasing divides by 1 - strength**n, so the curve starts at the
    first value instead of creeping up from zero."""
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"smoothing strength must be in [0, 1), not {strength!r}")
    if strength == 0.0:
        return list(points)
    out: list[tuple[int, float]] = []
    last = 0.0
    weight = 1.0  # strength ** n
    for step, value in points:
        last = last * strength + (1.0 - strength) * value
        weight *= strength
        out.append((step, last / (1.0 - weight)))
    return out


def value_at(points: list[tuple[int, float]], step: int) -> float | None:
    """The value of the last point at or before `step` (points sorted by step), by bisection."""
    index = bisect.bisect_right(points, step, key=lambda point: point[0])
    return points[index - 1][1] if index else None


# -- helpers ------------------------------------------------------------------------------


def _as_step(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _flatten(data: dict, prefix: str = "") -> Iterable[tuple[str, float]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if not prefix and name in RESERVED:
            continue
        if isinstance(value, dict):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                yield name, number


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
