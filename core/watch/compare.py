"""Several jobs side by side: their settings and results as rows, and curves aligned for overlays.

`compare` lays out one row per setting (model, method, every hyperparameter any of the jobs
has, suffix, seed, files) and per result (status, steps, the final and best value of each
loss, reward and accuracy column, the overfitting verdict, trained tokens), each value as
text in the jobs' order, and flags the rows whose values differ. `aligned` puts one job's
curve on a common axis (step or epoch, raw or divided by its first value), so runs of
different lengths or starting losses can be drawn on one chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunedeck.core.records import Job

from .overfit import Verdict
from .series import MetricSeries

MISSING = "-"
RESULT_WORDS = ("loss", "reward", "accuracy")
LOWER_IS_BETTER = ("loss", "error")


@dataclass(frozen=True)
class CompareRow:
    label: str
    values: tuple[str, ...]  # one per job, in the comparison's order
    differs: bool

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "values": list(self.values), "differs": self.differs}


@dataclass(frozen=True)
class Comparison:
    job_ids: tuple[str, ...]
    settings: tuple[CompareRow, ...]  # model, method, every hyperparameter, suffix, seed, training/validation file
    results: tuple[CompareRow, ...]  # status, steps, final + best of each loss/reward/accuracy column, verdict, tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "job_ids": list(self.job_ids),
            "settings": [row.to_json() for row in self.settings],
            "results": [row.to_json() for row in self.results],
        }


def compare(
    jobs: Sequence[Job], series: Mapping[str, MetricSeries], verdicts: Mapping[str, Verdict] | None = None
) -> Comparison:
    """The jobs side by side; `series` and `verdicts` are keyed by job id (a job missing from
    them shows "-")."""
    verdicts = verdicts or {}
    empty = MetricSeries()
    all_series = [series.get(job.id, empty) for job in jobs]

    settings = [
        _row("model", [job.model for job in jobs]),
        _row("method", [job.method_label for job in jobs]),
    ]
    names: dict[str, None] = {}
    for job in jobs:
        names.update(dict.fromkeys(job.hyperparameters))
    settings += [_row(name, [_text(job.hyperparameters.get(name)) for job in jobs]) for name in names]
    settings += [
        _row("suffix", [_text(job.raw.get("user_provided_suffix")) for job in jobs]),
        _row("seed", [_text(job.raw.get("seed")) for job in jobs]),
        _row("training file", [job.training_file or MISSING for job in jobs]),
        _row("validation file", [job.validation_file or MISSING for job in jobs]),
    ]

    results = [
        _row("status", [job.status for job in jobs]),
        _row("steps", [_steps(s) for s in all_series]),
    ]
    columns: dict[str, None] = {}
    for s in all_series:
        columns.update(dict.fromkeys(c for c in s.columns if _is_result(c)))
    for column in columns:
        results.append(_row(f"final {column}", [_number(s.latest(column)) for s in all_series]))
        results.append(_row(f"best {column}", [_best(s, column) for s in all_series]))
    results += [
        _row("overfitting", [_verdict(verdicts.get(job.id)) for job in jobs]),
        _row("trained tokens", [_text(job.trained_tokens) for job in jobs]),
    ]
    return Comparison(tuple(job.id for job in jobs), tuple(settings), tuple(results))


def aligned(
    series: MetricSeries, column: str, *, by: str = "step", n_epochs: int | None = None, normalise: bool = False
) -> list[tuple[float, float]]:
    """`column`'s points against step (`by="step"`) or epoch (`by="epoch"`: 1.0 is the end of
    the first; needs `n_epochs` and the job's total steps, else no points). `normalise`
    divides every value by the first non-zero one, so curves that start apart can be compared
    by shape."""
    if by not in ("step", "epoch"):
        raise ValueError(f"align by 'step' or 'epoch', not {by!r}")
    points = series.values(column)
    if by == "epoch":
        per_epoch = series.steps_per_epoch(n_epochs)
        if per_epoch is None:
            return []
        xs = [step / per_epoch for step, _ in points]
    else:
        xs = [float(step) for step, _ in points]
    ys = [value for _, value in points]
    if normalise:
        first = next((v for v in ys if v != 0), None)
        if first is not None:
            ys = [v / first for v in ys]
    return list(zip(xs, ys))


# -- cells ----------------------------------------------------------------------------------------


def _row(label: str, values: Sequence[str]) -> CompareRow:
    return CompareRow(label, tuple(values), len(set(values)) > 1)


def _text(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.4g}"


def _steps(series: MetricSeries) -> str:
    last = series.last_step()
    if last is None:
        return MISSING
    return f"{last}/{series.total_steps}" if series.total_steps else str(last)


def _is_result(column: str) -> bool:
    """Top-level loss, reward and accuracy columns (the nested `scores.*` repeat them)."""
    return "." not in column and any(word in column for word in RESULT_WORDS)


def _best(series: MetricSeries, column: str) -> str:
    points = series.values(column)
    if not points:
        return MISSING
    lower = any(word in column for word in LOWER_IS_BETTER)
    step, value = min(points, key=lambda p: (p[1] if lower else -p[1], p[0]))
    return f"{_number(value)} (step {step})"


def _verdict(verdict: Verdict | None) -> str:
    if verdict is None:
        return MISSING
    if verdict.alarm and verdict.fired_at_step is not None:
        return f"{verdict.state} (from step {verdict.fired_at_step})"
    return verdict.state.replace("_", " ")
