"""Stats panel: examples, tokens, roles, cost and epochs for a base model, two histograms,
and the label distribution when the answers look like labels.

Figures come from the dataset engine's report; histograms and labels from `Distributions`
(the report's own, or a sample of the first examples, which the panel says). Changing the
base model re-prices at once when its tokenizer is the same; otherwise the screen asks the
engine again (`ModelChosen`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Label, Select, Static

from ..safe_text import one_line
from .bar_chart import BarChart

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasample import Distributions
    from tunedeck.core.datasets import ValidationReport

LABEL_BAR = 16


def count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def estimate_for(report: ValidationReport, model: str) -> dict[str, Any]:
    """Epochs, trained tokens and cost of training on the report's file with `model`."""
    from tunedeck.core.datasets.models import auto_epochs, model_info

    info = model_info(model)
    examples = report.tokens.get("examples_counted") or 0
    billed = report.tokens.get("billed") or 0
    epochs = auto_epochs(examples)
    price = info.usd_per_1m_training_tokens if report.checked_as in info.methods or not info.known else None
    if report.checked_as == "rft":
        price = None
    trained = epochs * billed
    return {
        "model": info.name if info.known else model,
        "epochs": epochs,
        "trained_tokens": trained,
        "price": price,
        "cost_usd": trained / 1e6 * price if price is not None else None,
        "note": info.note if price is not None else "no per-token price for this model and method",
        "same_tokenizer": info.encoding == report.encoding,
    }


def summary_table(report: ValidationReport, model: str, recount_failed: bool = False) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value")
    t = report.tokens
    table.add_row("examples", f"{report.examples:,} ({report.valid_examples:,} valid) · {report.lines:,} lines")
    table.add_row("checked as", Text.assemble(one_line(report.checked_as), " · ", one_line(report.encoding)))
    if t.get("examples_counted"):
        table.add_row("tokens", f"total {count(t['total'])} · billed {count(t['billed'])} per epoch")
        table.add_row("per example", f"p50 {count(t['p50'])} · p95 {count(t['p95'])} · max {count(t['max_example'])} (line {count(t['max_example_line'])})")
        roles = Text(" · ").join(Text.assemble(one_line(role), f" {n:,}") for role, n in t.get("by_role", {}).items())
        table.add_row("by role", roles)
        if t.get("too_long"):
            table.add_row("too long", Text(f"{t['too_long']:,} examples exceed the {report.context:,}-token context", style="yellow"))
    messages = report.messages_per_example
    if messages.get("n"):
        table.add_row("messages", f"per example p50 {count(messages['p50'])} · p95 {count(messages['p95'])} · max {count(messages['max'])}")
    e = estimate_for(report, model)
    line = Text(f"{e['epochs']} epochs × {count(t.get('billed'))} = {count(e['trained_tokens'])} trained tokens")
    if e["cost_usd"] is not None:
        line.append(f" ≈ ${e['cost_usd']:,.2f}", style="bold")
        line.append(f" at ${e['price']:.2f}/1M")
    else:
        line.append_text(one_line(f"; {e['note']}", "dim"))
    if not e["same_tokenizer"]:
        if recount_failed:
            line.append_text(one_line(f" (counted with {report.encoding}: recounting failed)", "yellow"))
        else:
            line.append(" (recounting with its tokenizer…)", style="dim italic")
    table.add_row("estimate", line)
    return table


def labels_text(distributions: Distributions) -> Text:
    if not distributions.labels:
        return Text("answers do not look like labels", style="dim", end="")
    total = sum(distributions.labels.values())
    text = Text(end="")
    width = max(len(label) for label in distributions.labels)
    for label, n in list(distributions.labels.items())[:12]:
        share = n / total
        text.append_text(one_line(label.ljust(min(width, 24))[:24], "bold"))
        text.append(" " + "█" * max(1, round(share * LABEL_BAR)), style="green")
        text.append(f" {share:.0%} ({n:,})\n")
    if len(distributions.labels) > 12:
        text.append(f"… {len(distributions.labels) - 12} more", style="dim")
    text.rstrip()
    return text


class DatasetStats(VerticalScroll):
    """The panel; `show_report` and `show_distributions` fill it (both may come late)."""

    class ModelChosen(Message):
        def __init__(self, model: str) -> None:
            super().__init__()
            self.model = model

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.report: ValidationReport | None = None
        self.model = ""
        self.recount_failed = False
        """Counting again with the chosen model's tokenizer failed: the report's counts stay."""

    def compose(self) -> ComposeResult:
        yield Static(Text("validating…", style="dim"), id="stats-summary")
        with Horizontal(id="stats-model-row"):
            yield Label("base model", id="stats-model-label")
            yield Select[str]([], prompt="model", id="stats-model", allow_blank=True)
        yield Static(Text("tokens per example", style="bold"), classes="stats-title")
        yield BarChart(color="cyan", id="tokens-chart")
        yield Static(Text("messages per example", style="bold"), classes="stats-title")
        yield BarChart(color="magenta", id="messages-chart")
        yield Static(Text("labels", style="bold"), classes="stats-title", id="labels-title")
        yield Static(Text("", end=""), id="stats-labels")

    def reset(self) -> None:
        """Another file: figures come with its report."""
        self.report = None
        self.query_one("#stats-summary", Static).update(Text("validating…", style="dim"))
        self.query_one("#tokens-chart", BarChart).set_counts({})
        self.query_one("#messages-chart", BarChart).set_counts({})
        self.query_one("#stats-labels", Static).update(Text("", end=""))

    def show_report(self, report: ValidationReport) -> None:
        from tunedeck.core.datasets.models import MODELS

        self.report = report
        self.recount_failed = False
        self.model = self.model or report.model
        names = [name for name, info in MODELS.items() if report.checked_as in info.methods] or list(MODELS)
        if self.model not in names:
            names.insert(0, self.model)
        select = self.query_one("#stats-model", Select)
        with self.prevent(Select.Changed):
            select.set_options([(one_line(name), name) for name in names])
            select.value = self.model
        self._show_summary()

    def show_progress(self, text: Text) -> None:
        if self.report is None:
            self.query_one("#stats-summary", Static).update(text)

    def _show_summary(self) -> None:
        if self.report is not None:
            self.query_one("#stats-summary", Static).update(summary_table(self.report, self.model, self.recount_failed))

    def show_recount_failed(self) -> None:
        """The engine could not count again for the chosen model: stop saying it is recounting."""
        self.recount_failed = True
        self._show_summary()

    def show_distributions(self, distributions: Distributions) -> None:
        self.query_one("#tokens-chart", BarChart).set_counts(distributions.token_histogram)
        self.query_one("#messages-chart", BarChart).set_counts(distributions.messages_histogram)
        title = "labels" + (f" (from {distributions.labels_from})" if distributions.labels_from else "")
        if distributions.sampled:
            title += f" · first {distributions.examples:,} examples"
        self.query_one("#labels-title", Static).update(one_line(title, "bold"))
        self.query_one("#stats-labels", Static).update(labels_text(distributions))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if isinstance(event.value, str) and event.value != self.model:
            self.model = event.value
            self.recount_failed = False
            self._show_summary()
            self.post_message(self.ModelChosen(event.value))
