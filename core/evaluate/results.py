"""From stored results to what an evaluation says: each model's score with its uncertainty,
the first model paired against each other one on the same examples, and the per-example
rows the results screen lists (with its filters).

A result's score is its grade; it passes when the score reaches the grader's pass threshold
(`graders.pass_threshold`), worked out here from the score so every view agrees. A result
with no score (the request or the grader failed) has no pass/fail: it counts as an error,
never as a failure, and is left out of means, pass rates and the paired test.

Pure functions of records: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .graders import pass_threshold
from .prices import cost_usd
from .records import EvalSettings, ExampleResult, ModelSpec
from .stats import Interval, mcnemar_p, mean_interval, paired_difference, paired_proportion_difference, wilson_interval

FILTERS = ("all", "failures", "disagreements", "flipped")
SCORE_RANGE = (0.0, 1.0)
DIFFERENCE_RANGE = (-1.0, 1.0)


@dataclass(frozen=True)
class ModelScore:
    key: str
    """The model's label (results are keyed by it)."""
    model: str
    kind: str
    graded: int
    """Results with a score."""
    mean: float | None
    interval: Interval | None
    """The t interval of the mean (95%)."""
    passes: int
    pass_rate: float | None
    pass_interval: Interval | None
    """The Wilson interval of the pass rate (95%)."""
    errors: int
    """Results with a request or a grader error."""
    request_errors: int
    grader_errors: int
    missing: int
    """Examples with no result yet."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """The answers and their judging together; None when the model (or the judge) has no known price."""
    judge_prompt_tokens: int = 0
    """The judge model's tokens spent grading this model's answers (a model grader only)."""
    judge_completion_tokens: int = 0
    judge_cost_usd: float | None = 0.0


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the examples both have a pass/fail for: `a_only` passed by `a` alone,
    `b_only` by `b` alone (McNemar's discordant pairs), and the mean score difference b - a."""

    a: str
    b: str
    n: int
    both: int
    a_only: int
    b_only: int
    neither: int
    p_value: float
    mean_diff: float | None
    diff_interval: Interval | None

    def sentence(self) -> str:
        """E.g. "fine-tuned passes 31 examples base fails; base passes 2 fine-tuned fails
        (McNemar exact p = 0.0001, n = 60)"."""
        if self.n == 0:
            return f"{self.a} and {self.b} have no example both were graded on"
        b_wins = f"{self.b} passes {_examples(self.b_only)} {self.a} fails"
        a_wins = f"{self.a} passes {self.a_only} {self.b} fails"
        return f"{b_wins}; {a_wins} (McNemar exact {format_p(self.p_value)}, n = {self.n})"


def _examples(count: int) -> str:
    return f"{count} example" if count == 1 else f"{count} examples"


def format_p(p: float) -> str:
    """A p-value as read: "p = 0.049", "p = 1", "p < 0.0001"."""
    if p < 0.0001:
        return "p < 0.0001"
    return f"p = {p:.2g}" if p < 0.001 else f"p = {p:.3g}"


@dataclass(frozen=True)
class EvalSummary:
    scores: list[ModelScore]
    pairs: list[PairedComparison]


@dataclass(frozen=True)
class ExampleRow:
    index: int
    results: dict[str, ExampleResult]
    """By model key; a model with no result yet is absent."""


# -- scores -----------------------------------------------------------------------------------


def passed(result: ExampleResult, threshold: float) -> bool | None:
    """Whether the result passes; None when it has no score."""
    return None if result.score is None else result.score >= threshold


def by_model(results: Sequence[ExampleResult], n_examples: int) -> dict[str, dict[int, ExampleResult]]:
    """Results by model key, then example index (the last stored one wins; indices outside
    the examples are left out)."""
    table: dict[str, dict[int, ExampleResult]] = {}
    for result in results:
        if 0 <= result.example_index < n_examples:
            table.setdefault(result.model_key, {})[result.example_index] = result
    return table


def summarise(settings: EvalSettings, results: Sequence[ExampleResult], n_examples: int, *, local: bool) -> EvalSummary:
    """Each model's score, and the first model paired against each other one."""
    threshold = pass_threshold(settings.grader)
    table = by_model(results, n_examples)
    judge = settings.grader.judge_model if settings.grader.kind == "model" else None
    scores = [
        _model_score(spec, table.get(spec.label, {}), n_examples, threshold, local, judge) for spec in settings.models
    ]
    pairs = []
    if settings.models:
        first = settings.models[0].label
        for other in settings.models[1:]:
            pairs.append(_pair(first, other.label, table.get(first, {}), table.get(other.label, {}), threshold))
    return EvalSummary(scores, pairs)


def _model_score(
    spec: ModelSpec,
    results: dict[int, ExampleResult],
    n_examples: int,
    threshold: float,
    local: bool,
    judge: str | None = None,
) -> ModelScore:
    scored = [r.score for r in results.values() if r.score is not None]
    passes = sum(1 for r in results.values() if passed(r, threshold))
    prompt_tokens = sum(r.prompt_tokens or 0 for r in results.values())
    completion_tokens = sum(r.completion_tokens or 0 for r in results.values())
    judge_prompt = sum(r.judge_prompt_tokens or 0 for r in results.values())
    judge_completion = sum(r.judge_completion_tokens or 0 for r in results.values())
    answers_cost = cost_usd(spec.model, prompt_tokens, completion_tokens, local=local)
    judge_cost = (
        cost_usd(judge, judge_prompt, judge_completion, local=local)
        if judge and (judge_prompt or judge_completion)
        else 0.0
    )
    graded = len(scored)
    return ModelScore(
        key=spec.label,
        model=spec.model,
        kind=spec.kind,
        graded=graded,
        mean=sum(scored) / graded if graded else None,
        interval=_score_interval(scored) if graded else None,
        passes=passes,
        pass_rate=passes / graded if graded else None,
        pass_interval=wilson_interval(passes, graded) if graded else None,
        errors=sum(1 for r in results.values() if r.error is not None),
        request_errors=sum(1 for r in results.values() if r.error_kind == "request"),
        grader_errors=sum(1 for r in results.values() if r.error_kind == "grader"),
        missing=max(0, n_examples - len(results)),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=None if answers_cost is None or judge_cost is None else answers_cost + judge_cost,
        judge_prompt_tokens=judge_prompt,
        judge_completion_tokens=judge_completion,
        judge_cost_usd=judge_cost,
    )


def _pair(
    a: str, b: str, a_results: dict[int, ExampleResult], b_results: dict[int, ExampleResult], threshold: float
) -> PairedComparison:
    scored_a = {i: r.score for i, r in a_results.items() if r.score is not None}
    scored_b = {i: r.score for i, r in b_results.items() if r.score is not None}
    shared = sorted(scored_a.keys() & scored_b.keys())
    outcomes = [(scored_a[i] >= threshold, scored_b[i] >= threshold) for i in shared]
    both = sum(1 for x, y in outcomes if x and y)
    a_only = sum(1 for x, y in outcomes if x and not y)
    b_only = sum(1 for x, y in outcomes if y and not x)
    mean_diff, interval = None, None
    if shared:
        a_scores, b_scores = [scored_a[i] for i in shared], [scored_b[i] for i in shared]
        mean_diff, interval = paired_difference(a_scores, b_scores)
        if _binary(a_scores) and _binary(b_scores):
            lost = sum(1 for x, y in zip(a_scores, b_scores) if x > y)
            gained = sum(1 for x, y in zip(a_scores, b_scores) if y > x)
            interval = paired_proportion_difference(lost, gained, len(shared))
        else:
            interval = _bounded(interval, [y - x for x, y in zip(a_scores, b_scores)], DIFFERENCE_RANGE)
    return PairedComparison(
        a=a,
        b=b,
        n=len(shared),
        both=both,
        a_only=a_only,
        b_only=b_only,
        neither=len(shared) - both - a_only - b_only,
        p_value=mcnemar_p(a_only, b_only),
        mean_diff=mean_diff,
        diff_interval=interval,
    )


def _binary(scores: Sequence[float]) -> bool:
    return all(score in (0.0, 1.0) for score in scores)


def _score_interval(scored: Sequence[float]) -> Interval:
    """Scores that are all 0 or 1 (exact match, string checks) are a proportion: its Wilson
    interval, which a t interval would collapse to a point at 0% or 100%."""
    if _binary(scored):
        return wilson_interval(sum(1 for score in scored if score == 1.0), len(scored))
    return _bounded(mean_interval(scored), scored, SCORE_RANGE)


def _bounded(interval: Interval, values: Sequence[float], bounds: tuple[float, float]) -> Interval:
    """`interval` cut to the values' possible range: grader rewards lie in 0..1, so a t
    interval reaching past it (a high pass rate, few examples) says no more beyond it. The
    range widens to hold any value seen outside it (a custom formula may score so)."""
    low, high = min(bounds[0], min(values)), max(bounds[1], max(values))
    return Interval(max(low, interval.low), min(high, interval.high))


# -- rows ---------------------------------------------------------------------------------------


def example_rows(
    settings: EvalSettings, results: Sequence[ExampleResult], n_examples: int, filter: str = "all"
) -> list[ExampleRow]:
    """One row per example (in order) with each model's result, kept by `filter`:
    `failures` (some model did not pass, or erred), `disagreements` (the graded models differ
    on pass), `flipped` (the first model and some other differ on pass)."""
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}: expected one of {', '.join(FILTERS)}")
    threshold = pass_threshold(settings.grader)
    table = by_model(results, n_examples)
    keys = [spec.label for spec in settings.models]
    rows = []
    for index in range(n_examples):
        row = ExampleRow(index, {key: table[key][index] for key in keys if index in table.get(key, {})})
        if _kept(row, filter, keys, threshold):
            rows.append(row)
    return rows


def _kept(row: ExampleRow, filter: str, keys: list[str], threshold: float) -> bool:
    if filter == "all":
        return True
    if filter == "failures":
        return any(r.error is not None or passed(r, threshold) is False for r in row.results.values())
    outcomes = {key: passed(r, threshold) for key, r in row.results.items()}
    graded = {key: value for key, value in outcomes.items() if value is not None}
    if filter == "disagreements":
        return len(set(graded.values())) > 1
    first = keys[0] if keys else None
    if first not in graded:
        return False
    return any(value != graded[first] for key, value in graded.items() if key != first)
