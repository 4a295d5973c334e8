"""One example of an evaluation run in detail: the prompt's last user message, the reference,
and every model's answer with its score, sub-scores and error: side by side in columns when
the pane is wide enough, one under another when it is not (the renderable measures the
width it is given, so a resize lays it out again by itself).

Answers, references and prompts are untrusted text: they enter only through `safe`/`one_line`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ..safe_text import clean, one_line, safe
from .conversation import last_text
from .eval_examples import mark, outcome

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalExample, ExampleResult, ModelSpec

COLUMNS_FROM = 96
"""The pane's width from which answers stand side by side (a 100-column terminal)."""
PROMPT_LINES = 4
"""The prompt's lines shown before the answers (the rest: `y` copies it)."""
OUTCOME_WORDS = {"pass": "passed", "fail": "failed", "error": "error", "missing": "not asked yet"}


def prompt_text(example: EvalExample) -> str:
    """The prompt's last user message (what the example asks)."""
    return last_text(example.prompt, "user") or last_text(example.prompt, "system")


def model_heading(spec: ModelSpec, result: ExampleResult | None) -> Text:
    text = mark(result, with_score=False)
    text.append(" ")
    text.append_text(one_line(spec.label, "bold"))
    if result is not None and result.score is not None:
        text.append(f"  score {result.score:.2f}")
    else:
        text.append(f"  {OUTCOME_WORDS[outcome(result)]}", style="dim")
    return text


def answer_block(spec: ModelSpec, result: ExampleResult | None) -> Group:
    """One model's answer, then its sub-scores and its error."""
    pieces: list[RenderableType] = []
    if result is None:
        pieces.append(Text("not asked yet", style="dim italic"))
    elif result.answer is None:
        pieces.append(Text("(no answer)", style="dim italic"))
    elif result.answer == "":
        pieces.append(Text("(empty answer)", style="dim italic"))
    else:
        pieces.append(safe(result.answer))
    if result is not None and result.sub_scores:
        subs = Text("", style="dim")
        for index, (name, value) in enumerate(result.sub_scores.items()):
            if index:
                subs.append(" · ")
            subs.append_text(one_line(name))
            subs.append(f" {value:.2f}")
        pieces.append(subs)
    if result is not None and result.error is not None:
        error = Text(f"{result.error_kind or 'error'} error: ", style="bold red")
        error.append_text(safe(result.error, "red"))
        pieces.append(error)
    if spec.system_prompt:
        note = Text("asked with its own system prompt: ", style="dim italic")
        note.append_text(one_line(spec.system_prompt[:120], "dim"))
        pieces.append(note)
    for piece in pieces:
        if isinstance(piece, Text):
            piece.end = "\n"
    return Group(*pieces)


@dataclass
class AnswersView:
    """A Rich renderable: lays the answers out for the width it is given."""

    example: EvalExample | None
    models: Sequence[ModelSpec]
    results: dict[str, ExampleResult]
    index: int = 0
    columns_from: int = COLUMNS_FROM

    def side_by_side(self, width: int) -> bool:
        return len(self.models) > 1 and width >= self.columns_from

    def prompt_lines(self, console: Console, width: int) -> Text:
        """The prompt's last user message, at most `PROMPT_LINES` lines of `width` (the
        answers are what is compared: they stay in view; `y` copies the whole prompt)."""
        assert self.example is not None
        text = safe(prompt_text(self.example))
        lines = text.wrap(console, max(width, 10))
        if len(lines) <= PROMPT_LINES:
            return text
        shown = Text("\n", end="").join(lines[:PROMPT_LINES])
        shown.append(f"\n… {len(lines) - PROMPT_LINES} more lines (y copies the whole example)", style="dim italic")
        return shown

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        example = self.example
        heading = Text(f"line {example.line}" if example is not None else f"example #{self.index + 1}", style="bold")
        yield heading
        if example is None:
            yield Text("the run's data could not be read again: its prompt and reference are not shown", style="dim")
        else:
            yield Text("prompt", style="bold underline")
            yield Padding(self.prompt_lines(console, options.max_width - 2), (0, 0, 0, 2))
            yield Text("reference", style="bold underline")
            reference = safe(example.reference) if example.reference is not None else Text("(none)", style="dim")
            yield Padding(reference, (0, 0, 0, 2))
        yield Text("")
        if self.side_by_side(options.max_width):
            table = Table(box=box.SQUARE, expand=True, show_edge=False, padding=(0, 1))
            for spec in self.models:
                table.add_column(model_heading(spec, self.results.get(spec.label)), ratio=1, overflow="fold")
            table.add_row(*(answer_block(spec, self.results.get(spec.label)) for spec in self.models))
            yield table
            return
        for spec in self.models:
            heading = model_heading(spec, self.results.get(spec.label))
            heading.end = "\n"
            yield heading
            yield Padding(answer_block(spec, self.results.get(spec.label)), (0, 0, 0, 2))


def answers_for_clipboard(example: EvalExample | None, models: Sequence[ModelSpec], results: dict[str, ExampleResult]) -> str:
    """The example's answers as plain text (what `y` copies), the reference first."""
    lines = []
    if example is not None:
        lines.append(f"line {example.line}")
        lines.append(f"prompt: {prompt_text(example)}")
        lines.append(f"reference: {example.reference if example.reference is not None else '(none)'}")
    for spec in models:
        result = results.get(spec.label)
        if result is None:
            answer = "(not asked yet)"
        elif result.answer is None:
            answer = f"(no answer: {result.error})"
        else:
            answer = result.answer
        score = f" [{result.score:.2f}]" if result is not None and result.score is not None else ""
        lines.append(f"{spec.label} ({spec.model}){score}: {answer}")
    return "\n".join(lines)


class EvalAnswers(Static):
    """The selected example in detail (see `AnswersView`)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.view: AnswersView | None = None

    def show(self, view: AnswersView | None, note: str = "") -> None:
        self.view = view
        self.update(view if view is not None else Text(clean(note), style="dim"))
