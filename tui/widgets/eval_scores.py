"""The scores of an evaluation run, one row per model: its label and id, the mean score and
the pass rate with their 95% intervals, the errors, the tokens and the cost.

Pure helpers build the cells (tests read them); `EvalScores` shows them. Model ids are
untrusted: they pass through `one_line`/`middle_ellipsis` (controls made visible).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ..formatting import middle_ellipsis, tokens_text
from ..safe_text import one_line
from .steady_table import SteadyTable

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.results import EvalSummary, ModelScore
    from tunedeck.core.evaluate.stats import Interval

SCORE_COLUMNS = ("label", "model", "score", "pass", "errors", "tokens", "cost")
HEADINGS = {
    "label": "",
    "model": "model",
    "score": "score (95% CI)",
    "pass": "pass rate (95% CI)",
    "errors": "errors",
    "tokens": "tokens in/out",
    "cost": "cost",
}
UNKNOWN = "—"


def number(value: float) -> str:
    return f"{value:.2f}"


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def interval_text(value: float | None, interval: Interval | None, shown=number) -> Text:
    """`0.83 [0.75–0.90]`; `—` without a value."""
    if value is None:
        return Text(UNKNOWN, style="dim", end="")
    text = Text(shown(value), style="bold", end="")
    if interval is not None:
        text.append(f" [{shown(interval.low)}–{shown(interval.high)}]", style="dim")
    return text


def errors_text(score: ModelScore) -> Text:
    """`0`, or `3 (2 request, 1 grader)`; missing answers (a run not finished) after a `+`."""
    if not score.errors and not score.missing:
        return Text("0", style="dim", end="")
    text = Text(end="")
    if score.errors:
        parts = []
        if score.request_errors:
            parts.append(f"{score.request_errors} request")
        if score.grader_errors:
            parts.append(f"{score.grader_errors} grader")
        text.append(f"! {score.errors}", style="bold yellow")
        if parts:
            text.append(f" ({', '.join(parts)})", style="yellow")
    if score.missing:
        if text:
            text.append(" ")
        text.append(f"+{score.missing} to ask", style="dim")
    return text


def cost_text(cost: float | None) -> Text:
    """`—` when the price is unknown, `$0` on the local backend, else dollars."""
    if cost is None:
        return Text(UNKNOWN, style="dim", end="")
    if cost == 0:
        return Text("$0", end="")
    if cost < 0.01:
        return Text(f"${cost:.4f}", end="")
    return Text(f"${cost:.2f}", end="")


def score_cells(score: ModelScore, model_width: int = 32) -> dict[str, Text]:
    pass_rate = interval_text(score.pass_rate, score.pass_interval, percent)
    if score.pass_rate is not None:
        pass_rate.append(f" {score.passes}/{score.graded}", style="dim")
    return {
        "label": one_line(score.key, "bold"),
        "model": Text(middle_ellipsis(score.model, model_width), end=""),
        "score": interval_text(score.mean, score.interval),
        "pass": pass_rate,
        "errors": errors_text(score),
        "tokens": tokens_cell(score),
        "cost": cost_text(score.cost_usd),
    }


def tokens_cell(score: ModelScore) -> Text:
    """Prompt / completion tokens of the answers, and the judge's when a judge model graded them
    (the cost column counts both)."""
    text = Text(f"{tokens_text(score.prompt_tokens)} / {tokens_text(score.completion_tokens)}", end="")
    judged = score.judge_prompt_tokens + score.judge_completion_tokens
    if judged:
        text.append(f" +{tokens_text(judged)} judge", style="dim")
    return text


def fitted_columns(summary: EvalSummary, width: int) -> tuple[tuple[str, ...], int]:
    """The columns that fit `width` cells and how wide the model ids may be: the ids are cut
    in the middle first (down to 12 cells), then the token counts go (the cost stays)."""
    columns = SCORE_COLUMNS
    probe = [score_cells(score, 0) for score in summary.scores]

    def used(keys: tuple[str, ...]) -> int:
        total = 0
        for key in keys:
            if key == "model":
                continue
            cells = [cells[key].cell_len for cells in probe]
            total += max([len(HEADINGS[key]), *cells]) + 2  # each column's padding
        return total + 2 + 2  # the model column's padding, a scrollbar

    room = width - used(columns)
    if room < 12:
        columns = tuple(key for key in columns if key != "tokens")
        room = width - used(columns)
    longest = max([len("model"), *(len(score.model) for score in summary.scores)])
    return columns, max(12, min(room, longest))


class EvalScores(SteadyTable):
    """The scores table (one row per model, base first), fitted to its width."""

    can_focus = False  # nothing to pick in it: tab goes from the examples to the answers

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "none")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self.shown_columns: tuple[str, ...] = ()

    def show(self, summary: EvalSummary, width: int) -> None:
        columns, model_width = fitted_columns(summary, width)
        rows = [score_cells(score, model_width) for score in summary.scores]
        if columns == self.shown_columns and self.row_count == len(rows):
            for index, cells in enumerate(rows):
                for key in columns:
                    if self.get_cell(f"m{index}", key) != cells[key]:  # text and spans
                        self.update_cell(f"m{index}", key, cells[key], update_width=True)
            return
        self.clear(columns=True)
        self.shown_columns = columns
        for key in columns:
            self.add_column(Text(HEADINGS[key], style="bold", end=""), key=key)
        for index, cells in enumerate(rows):
            self.add_row(*(cells[key] for key in columns), key=f"m{index}")
