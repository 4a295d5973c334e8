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
from ..state import host
from .bar_chart import BarChart

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.datasample import Distributions
    from tunedeck.core.datasets import ValidationReport

LABEL_BAR = 16


def count(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def summary_table(report: ValidationReport, model: str, recount_failed: bool = False, *, local: bool = False) -> Table:
    """The figures and the estimate for `model` on the profile: money on a provider (with the
    price table's date and source), no charge and the steps on the local backend."""
    from tunedeck.core.datasets.models import model_info
    from tunedeck.core.datasets.pricing import training_estimate

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
    estimate = training_estimate(report, model, local=local)
    line = one_line(estimate.tokens_text())
    cost = estimate.cost_text()
    if estimate.cost_usd is not None:
        line.append(" " + cost, style="bold")
    elif cost:
        line.append_text(one_line(f"; {cost}", "dim"))
    if estimate.none_because is None and model_info(model).encoding != report.encoding:
        if recount_failed:
            line.append_text(one_line(f" (counted with {report.encoding}: recounting failed)", "yellow"))
        else:
            line.append(" (recounting with its tokenizer…)", style="dim italic")
    table.add_row("estimate", line)
    if estimate.usd_per_1m is not None:
        table.add_row("prices", one_line(estimate.table + (f"; {estimate.note}" if estimate.note else ""), "dim"))
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
        self.local = False
        """The profile trains on the local backend: no charge, its own models."""
        self._models_asked = False
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

    def on_mount(self) -> None:
        state = self._state()
        if state is not None:  # the profile's models, once listed, are the ones offered
            state.models_listed.subscribe(self, lambda _: self._offer_models())
            state.changed.subscribe(self, lambda _: self._offer_models())

    def _state(self) -> Any:
        """The app's state when the app has one (a bare app in a test has none)."""
        return getattr(self.app, "state", None)

    def _profile_models(self, method: str) -> tuple[bool, list[str] | None]:
        """(local, the profile's base models for `method` as last listed, None when not listed yet)."""
        state = self._state()
        service = getattr(state, "service", None)
        local = service is not None and service.profile.backend == "local"
        choices = getattr(state, "model_choices", None)
        if choices is None:
            if state is not None and getattr(state, "connected", False) and not self._models_asked:
                self._models_asked = True
                host(self).requests.load_models()  # the answer comes back through models_listed
            return local, None
        ids = [
            choice if isinstance(choice, str) else choice.id
            for choice in choices
            if isinstance(choice, str) or (not choice.fine_tuned and choice.trains(method) is not False)
        ]
        return local, ids

    def model_names(self, method: str) -> list[str]:
        """The models offered to estimate with: the local backend's own on a local profile
        (what the launch form offers), else those of the price table the profile offers."""
        from tunedeck.core.datasets.pricing import priced_models

        local, offered = self._profile_models(method)
        self.local = local
        if local:
            return list(offered or [])
        return priced_models(method, offered)

    def show_report(self, report: ValidationReport) -> None:
        self.report = report
        self.recount_failed = False
        self._offer_models()

    def _offer_models(self) -> None:
        report = self.report
        if report is None or not self.is_mounted:
            return
        names = self.model_names(report.checked_as)
        before = self.model or report.model
        # A model the profile does not offer is never priced with: the method's default
        # when offered, else the profile's first.
        if names and before not in names:
            self.model = report.model if report.model in names else names[0]
        else:
            self.model = before
        select = self.query_one("#stats-model", Select)
        with self.prevent(Select.Changed):
            if names:
                select.set_options([(one_line(name), name) for name in names])
                select.value = self.model
            else:  # a local profile whose models are not listed yet: none to show, none priced
                select.set_options([])
                select.prompt = "local models: not listed yet"
        self._show_summary()
        if self.model != before:
            self.post_message(self.ModelChosen(self.model))  # counted again if its tokenizer differs

    def show_progress(self, text: Text) -> None:
        if self.report is None:
            self.query_one("#stats-summary", Static).update(text)

    def _show_summary(self) -> None:
        if self.report is not None:
            self.query_one("#stats-summary", Static).update(
                summary_table(self.report, self.model, self.recount_failed, local=self.local)
            )

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
