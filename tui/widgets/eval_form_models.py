"""The models of a new evaluation: one row each (its label, the model, its system prompt), in
the order they are compared (the first is what every other is compared with: the base).

Labels key the results, so they are short and unique within a run: `base`, `fine-tuned`,
`step 40`, or the model's own name; a base model with a system prompt is the prompted
baseline (`base + prompt`). `delete` or `backspace` takes the highlighted row off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import ModelSpec
    from tunedeck.core.records import Checkpoint, Job

CHECKPOINT_MARK = ":ckpt-step-"


def kind_of(model: str) -> str:
    """What a typed model id is: a checkpoint, a fine-tuned model or a base model."""
    if CHECKPOINT_MARK in model:
        return "checkpoint"
    return "fine_tuned" if model.startswith("ft:") else "base"


def default_label(model: str, system_prompt: str | None, taken: Iterable[str] = ()) -> str:
    """A short label for a typed model, unique among `taken`: `step 40` for a checkpoint,
    the last part of a fine-tuned model's name, the id of a base one; `+ prompt` with a
    system prompt."""
    kind = kind_of(model)
    if kind == "checkpoint":
        step = model.rsplit(CHECKPOINT_MARK, 1)[1]
        label = f"step {step}" if step.isdigit() else model
    elif kind == "fine_tuned":
        parts = [p for p in model.split(":") if p]
        label = parts[-1] if len(parts) > 1 else model
    else:
        label = model
    if system_prompt:
        label += " + prompt"
    return unique_label(label, taken)


def unique_label(label: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if label not in taken:
        return label
    number = 2
    while f"{label} {number}" in taken:
        number += 1
    return f"{label} {number}"


def job_models(job: Job, checkpoints: Sequence[Checkpoint] = ()) -> list[ModelSpec]:
    """A job's models as its one-key evaluation compares them: the base, the fine-tuned model
    (when named), each kept checkpoint oldest first (the final one's twin left out)."""
    from tunedeck.core.evaluate.records import ModelSpec

    specs = [ModelSpec(job.model, "base", "base")] if job.model else []
    if job.fine_tuned_model:
        specs.append(ModelSpec(job.fine_tuned_model, "fine-tuned", "fine_tuned"))
    for checkpoint in sorted(checkpoints, key=lambda c: c.step):
        if checkpoint.model and checkpoint.model != job.fine_tuned_model:
            label = unique_label(f"step {checkpoint.step}", (s.label for s in specs))
            specs.append(ModelSpec(checkpoint.model, label, "checkpoint"))
    return specs


def model_row(spec: ModelSpec) -> Text:
    """`base  tunedeck-ngram  · system: You are…` (untrusted parts made safe)."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append_text(one_line(spec.label, "bold"))
    text.append("  ")
    text.append_text(one_line(spec.model))
    if spec.system_prompt:
        text.append("  · system: ", style="dim")
        text.append_text(one_line(spec.system_prompt, "italic"))
    return text


class EvalModelList(OptionList):
    """The models to evaluate, in order (the first is the one compared with)."""

    BINDINGS = [Binding("delete,backspace", "remove", "Remove model", id="eval.remove_model")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        self.specs: list[ModelSpec] = []

    def set_specs(self, specs: Iterable[ModelSpec]) -> None:
        self.specs = list(specs)
        self._redraw()

    def add_spec(self, spec: ModelSpec) -> None:
        self.specs.append(spec)
        self._redraw()
        self.highlighted = len(self.specs) - 1

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.specs]

    def _redraw(self) -> None:
        highlighted = self.highlighted
        self.clear_options()
        if not self.specs:
            self.add_option(Option(Text("none yet: add one below (the first is the baseline)", style="dim"), disabled=True))
            return
        self.add_options([Option(model_row(spec)) for spec in self.specs])
        if highlighted is not None:
            self.highlighted = min(highlighted, len(self.specs) - 1)

    def on_mount(self) -> None:
        self._redraw()

    def action_remove(self) -> None:
        index = self.highlighted
        if index is None or not self.specs or index >= len(self.specs):
            return
        del self.specs[index]
        self._redraw()
        self.post_message(self.Removed())

    class Removed(Message):
        """A row was taken off the list."""
