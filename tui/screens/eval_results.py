"""Evaluation results: how each model scored (with 95% intervals, errors, tokens and cost),
whether fine-tuning changed which examples pass (the paired comparisons), every example's
outcome per model, and the selected example's answers side by side with its reference.

Everything is read through `service.evaluations` in a worker that posts it back
(`EvalResultsLoaded`); the screen reads again when the app says the run moved on. `f`
cycles the filters (all, failures, disagreements, flipped), `a` asks a model for failure
notes (saved with the run), `n` shows them, `x` exports the run as Markdown, `y` copies
the selected example's answers, `t` opens the playground on the run's first two models.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Markdown, Static
from textual.worker import Worker

from ..safe_text import clean, one_line, safe
from ..state import AppState, host, pass_on_failure
from ..widgets.eval_answers import AnswersView, EvalAnswers, answers_for_clipboard
from ..widgets.eval_examples import EvalExamples
from ..widgets.eval_scores import EvalScores
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.examples import ExampleSet
    from tunedeck.core.evaluate.records import EvalExample, EvalRunInfo, ExampleResult
    from tunedeck.core.evaluate.results import EvalSummary, ExampleRow

FILTERS = ("all", "failures", "disagreements", "flipped")
"""The same names as `tunedeck.core.evaluate.results.FILTERS` (the order `f` cycles)."""
FILTER_WORDS = {
    "all": "all",
    "failures": "failures",
    "disagreements": "disagreements",
    "flipped": "flipped",
}
PAIR_LINES = 3
"""Lines for the paired comparisons (one each) when the terminal is at least TALL lines, else 2."""
TALL = 30
LOAD_WORKERS = "eval-results-load"
PROGRESS_RELOAD_S = 1.0
"""A running run is read again at most this often as its answers arrive."""
RESIZE_DEBOUNCE_S = 0.1
ANALYSIS_WORKERS = "eval-analysis"
EXPORT_WORKERS = "eval-export"


@dataclass(eq=False, repr=False)
class EvalResultsLoaded(Message):
    """The run as stored: its settings and status, scores, results and examples (None with
    `examples_error` when its data could not be read again); `error` when there is no run."""

    info: EvalRunInfo | None
    summary: EvalSummary | None = None
    results: list[ExampleResult] | None = None
    examples: ExampleSet | None = None
    examples_error: str | None = None
    error: str | None = None
    rows: dict[str, list[ExampleRow]] | None = None
    """Each filter's rows, worked out in a thread (`f` only swaps them)."""
    by_index: dict[int, EvalExample] | None = None
    """The examples read from the file (in a thread), by index, when `examples` is new."""


@dataclass(eq=False, repr=False)
class AnalysisModelsListed(Message):
    models: list[str]
    error: str | None = None


@dataclass(eq=False, repr=False)
class AnalysisWritten(Message):
    """A model's failure notes (saved with the run), or why it wrote none."""

    model: str
    notes: str | None
    error: str | None = None


@dataclass(eq=False, repr=False)
class ReportExported(Message):
    path: str | None
    error: str | None = None


def run_id_of(event: Any) -> str | None:
    """The run an evaluation announcement is about (started, progressed, finished, failed)."""
    for path in (("run_id",), ("progress", "run_id"), ("info", "id")):
        value: Any = event
        for name in path:
            value = getattr(value, name, None)
        if isinstance(value, str):
            return value
    return None


def report_path(folder: Path, run_id: str) -> Path:
    """`<run id>.md` in `folder` (the id made file-safe); `-1`, `-2`... when taken."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "evaluation"
    return folder / f"{stem}.md"


def write_new(path: Path, text: str) -> Path:
    """Write `text` to `path`, or to `path` with `-1`, `-2`... before its suffix when a file
    is there already: never over an existing file (exclusive creation, no race)."""
    for number in range(0, 1000):
        target = path if number == 0 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        try:
            with open(target, "x", encoding="utf-8") as out:
                out.write(text)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"{path} and 999 numbered copies exist already")


def notes_markdown(notes: str) -> str:
    """Model-written notes made safe for the Markdown widget: control characters visible
    (links are never opened: the widget is made with `open_links=False`)."""
    return clean(notes.replace("\r\n", "\n").replace("\r", "\n"))


class EvalResultsScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="eval_results.back"),
        Binding("f", "next_filter", "Filter", id="eval_results.filter", tooltip="All, failures, disagreements, flipped"),
        Binding("a", "analyse", "Analyse", id="eval_results.analyse", tooltip="Ask a model for notes on the failures"),
        Binding("n", "toggle_notes", "Notes", id="eval_results.notes", tooltip="Show the failure notes or the answers"),
        Binding("x", "export", "Export", id="eval_results.export", tooltip="Write the run as Markdown here"),
        Binding("y", "copy_answers", "Copy", id="eval_results.copy", tooltip="Copy the selected example's answers"),
        Binding("t", "playground", "Try models", id="eval_results.playground", tooltip="Chat with the first two models"),
        Binding("s", "skipped", "Skipped", id="eval_results.skipped", tooltip="List the rows that could not be evaluated"),
    ]

    HELP = (
        "Evaluation results: each model's score and pass rate with 95% intervals, the paired "
        "comparison (did fine-tuning flip examples?), every example's outcome (✓ passed, ✗ failed, "
        "! error, · not asked yet) and the selected example's answers beside its reference."
    )

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.info: EvalRunInfo | None = None
        self.summary: EvalSummary | None = None
        self.results: list[ExampleResult] = []
        self.example_set: ExampleSet | None = None
        self.examples_error: str | None = None
        self.load_error: str | None = None
        self.examples: dict[int, EvalExample] = {}
        self.by_example: dict[int, dict[str, ExampleResult]] = {}
        self.filter = "all"
        self.rows: list[ExampleRow] = []
        """The example rows the filter shows (tests read them)."""
        self.counts: dict[str, int] = {}
        self.asking: str | None = None
        self.analysis_key: str | None = None
        """Whose failures the notes read (None: the core's default, the fine-tuned model)."""
        """The model asked for failure notes right now."""
        self.analysis_error: str | None = None
        self.exported: Path | None = None
        self.notes_shown = ""
        """The notes as given to the Markdown widget (tests read it)."""
        self.loads = 0
        self._loading = False
        self._reload_wanted = False
        self.every_rows: dict[str, list[ExampleRow]] = {}
        self.fits = 0
        """Times the screen was fitted to a new size (tests count them)."""
        self._last_load = float("-inf")
        self._reload_timer: Timer | None = None
        self._resize_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield AppHeader(f"Evaluation · {clean(self.run_id)}", id="header")
        yield Static(Text("loading…", style="dim"), id="eval-run")
        yield EvalScores(id="eval-scores")
        yield Static(id="eval-pairs")
        yield Static(id="eval-filter")
        yield EvalExamples(id="eval-examples")
        with ContentSwitcher(initial="eval-answers-box", id="eval-detail"):
            with VerticalScroll(id="eval-answers-box"):
                yield EvalAnswers(id="eval-answers")
            with VerticalScroll(id="eval-notes-box"):
                yield Static(id="eval-notes-head")
                yield Markdown("", id="eval-notes", open_links=False)
        yield KeyFooter()

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def table(self) -> EvalExamples:
        return self.query_one(EvalExamples)

    @property
    def showing_notes(self) -> bool:
        return self.query_one("#eval-detail", ContentSwitcher).current == "eval-notes-box"

    def on_mount(self) -> None:
        progressed = getattr(self.state, "eval_progressed", None)
        if progressed is not None:
            progressed.subscribe(self, self._run_progressed)
        self.table.focus()
        self._show_filter()
        self._load()

    # -- loading ----------------------------------------------------------------------------

    def _run_progressed(self, event: Any) -> None:
        from ..messages import EvalProgressed

        run_id = run_id_of(event)
        ours = self.info.id if self.info is not None else self.run_id
        if run_id is None or not (run_id == ours or run_id.startswith(self.run_id)):
            return
        if isinstance(event, EvalProgressed):  # answers arriving: at most one read a second
            wait = self._last_load + PROGRESS_RELOAD_S - time.monotonic()
            if wait > 0:
                if self._reload_timer is None:
                    self._reload_timer = self.set_timer(wait, self._timed_reload)
                return
        self.reload()

    def _timed_reload(self) -> None:
        self._reload_timer = None
        self.reload()

    def reload(self) -> None:
        """Read the run again; while a read is under way, once more after it (never starved)."""
        if self._loading:
            self._reload_wanted = True
            return
        self._load()

    def _load(self) -> None:
        self._loading = True
        self._last_load = time.monotonic()
        self._read_run()

    @work(group=LOAD_WORKERS, exit_on_error=False, description="read the evaluation run")
    async def _read_run(self) -> None:
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            self.post_message(EvalResultsLoaded(None, error="the profile is not open yet"))
            return
        evaluations = service.evaluations
        try:
            info = await evaluations.run_info(self.run_id)  # an id prefix several runs share: refused
            if info is None:
                self.post_message(EvalResultsLoaded(None, error=f"no evaluation run {self.run_id}"))
                return
            results = await evaluations.results(info.id)
            summary = await evaluations.summary(info.id)
        except ServiceError as exc:  # e.g. deleted meanwhile
            self.post_message(EvalResultsLoaded(None, error=str(exc)))
            return
        examples, examples_error, by_index = self.example_set, None, None
        if examples is None:  # the data file is read once; results change, the data does not
            from tunedeck.core.evaluate.examples import ExamplesError

            try:
                examples = await evaluations.examples(info.id)
                read = examples.examples
                by_index = await asyncio.to_thread(lambda: {example.index: example for example in read})
            except (ServiceError, OSError, ExamplesError) as exc:
                examples, examples_error = None, str(exc)
        from tunedeck.core.evaluate.results import example_rows

        results = list(results)

        def every_filter() -> dict[str, list[ExampleRow]]:  # CPU work on big runs: off the loop
            return {name: example_rows(info.settings, results, info.examples, filter=name) for name in FILTERS}

        rows = await asyncio.to_thread(every_filter)
        self.post_message(EvalResultsLoaded(info, summary, results, examples, examples_error, rows=rows, by_index=by_index))

    def on_eval_results_loaded(self, message: EvalResultsLoaded) -> None:
        message.stop()
        self._loading = False
        self.loads += 1
        if message.info is None and self.info is not None:  # a read again failed: keep what shows
            self.notify(clean(message.error or "could not read the run again"), title="evaluation", markup=False)
        elif message.info is None:
            self.load_error = message.error
            self._show_run()
            self.query_one(EvalAnswers).show(None, message.error or "")
        else:
            self.load_error = None
            self.info, self.summary, self.results = message.info, message.summary, message.results or []
            if message.examples is not None and message.by_index is not None:
                self.example_set = message.examples
                self.examples = message.by_index
            self.examples_error = message.examples_error
            self.every_rows = message.rows or {}
            self.by_example = {}
            for result in self.results:
                self.by_example.setdefault(result.example_index, {})[result.model_key] = result
            self._show_all()
        if self._reload_wanted:
            self._reload_wanted = False
            self._load()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event):
            group = event.worker.group
            if group == LOAD_WORKERS:
                self._loading = False
                self.query_one("#eval-run", Static).update(Text("could not read the run (see the error)", style="red"))
            elif group == ANALYSIS_WORKERS:
                self.asking = None
                self._show_filter()
                self._show_notes()

    # -- drawing ----------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        return [spec.label for spec in self.info.settings.models] if self.info is not None else []

    def _show_all(self) -> None:
        self._show_run()
        if self.summary is not None:
            self.query_one(EvalScores).show(self.summary, self.app.size.width)
        self._show_pairs()
        self._show_rows()
        self._show_notes()

    def run_text(self) -> Text:
        info = self.info
        if info is None:
            return Text(clean(self.load_error or "loading…"), style="red" if self.load_error else "dim")
        from tunedeck.core.evaluate.graders import describe_grader

        settings = info.settings
        style = {"finished": "bold green", "running": "bold cyan", "cancelled": "yellow", "interrupted": "yellow"}
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append(info.status, style=style.get(info.status, "bold"))
        if info.status != "finished" and info.total:
            text.append(f" {info.done}/{info.total}")
        models = len(settings.models)
        text.append(f" · {info.examples} example{'s' if info.examples != 1 else ''} × {models} model{'s' if models != 1 else ''}")
        text.append(" · ")
        text.append_text(one_line(describe_grader(settings.grader)))
        if info.skipped:
            from tunedeck.core.evaluate.records import skipped_rows

            skipped = skipped_rows(info.skipped)
            text.append(f" · {skipped} row{'s' if skipped != 1 else ''} skipped (s lists them)", style="yellow")
        text.append(" · ")
        text.append_text(one_line(Path(settings.data_path).name, "dim"))
        if self.examples_error:
            text.append(" · data not readable: ", style="yellow")
            text.append_text(one_line(self.examples_error, "yellow"))
        return text

    def _show_run(self) -> None:
        self.query_one("#eval-run", Static).update(self.run_text())

    def pairs_text(self) -> Text:
        text = Text(end="")
        if self.summary is None or not self.summary.pairs:
            text.append("one model: nothing to compare" if self.summary is not None else "", style="dim")
            return text
        pairs = self.summary.pairs
        room = PAIR_LINES if self.app.size.height >= TALL else 2
        shown = pairs if len(pairs) <= room else pairs[: room - 1]
        for index, pair in enumerate(shown):
            if index:
                text.append("\n")
            text.append("⇄ ", style="bold")
            text.append_text(one_line(pair.sentence()))
        if len(shown) < len(pairs):
            text.append("\n")
            more = len(pairs) - len(shown)
            text.append(f"(+{more} more comparison{'s' if more != 1 else ''}: x exports them all)", style="dim")
        return text

    def _show_pairs(self) -> None:
        self.query_one("#eval-pairs", Static).update(self.pairs_text())

    def _show_rows(self) -> None:
        if self.info is None:
            return
        every = self.every_rows  # worked out with the read (a thread): swapped here
        self.counts = {name: len(rows) for name, rows in every.items()}
        self.rows = every.get(self.filter, [])
        self.table.show(self.labels, self.rows, self.examples)
        self._show_filter()
        self._show_selected()

    def filter_text(self) -> Text:
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        if self.asking is not None:
            text.append("asking ", style="bold yellow")
            text.append_text(one_line(self.asking, "bold yellow"))
            text.append(" for notes on the failures…  ", style="bold yellow")
        text.append("f ", style="bold")
        for index, name in enumerate(FILTERS):
            if index:
                text.append(" · ", style="dim")
            word = f"{FILTER_WORDS[name]} {self.counts[name]}" if name in self.counts else FILTER_WORDS[name]
            text.append(word, style="bold reverse" if name == self.filter else "")
        if self.info is not None and self.info.notes and self.asking is None:
            text.append("  · notes by ", style="dim")
            text.append_text(one_line(self.info.notes_model or "a model", "dim"))
            text.append(" (n)", style="dim")
        return text

    def _show_filter(self) -> None:
        self.query_one("#eval-filter", Static).update(self.filter_text())

    def selected_view(self) -> AnswersView | None:
        index = self.table.selected_index
        if index is None or self.info is None:
            return None
        return AnswersView(self.examples.get(index), self.info.settings.models, self.by_example.get(index, {}), index)

    def _show_selected(self) -> None:
        view = self.selected_view()
        if view is not None:
            note = ""
        elif self.info is not None and not self.rows:
            note = f"no examples match “{FILTER_WORDS[self.filter]}” (f shows another filter)"
        else:
            note = "loading…"
        self.query_one(EvalAnswers).show(view, note)

    def on_eval_examples_row_highlighted(self, event: EvalExamples.RowHighlighted) -> None:
        event.stop()
        self._show_selected()

    def _show_notes(self) -> None:
        head = self.query_one("#eval-notes-head", Static)
        markdown = self.query_one("#eval-notes", Markdown)
        notes = self.info.notes if self.info is not None else None
        text = Text(end="")
        if self.asking is not None:
            text.append("asking ", style="bold yellow")
            text.append_text(one_line(self.asking, "bold yellow"))
            text.append(" for notes on the failures…", style="bold yellow")
        elif self.analysis_error is not None:
            text.append("no notes: ", style="bold red")
            text.append_text(safe(self.analysis_error, "red"))
        elif notes:
            text.append("failure notes by ", style="bold")
            text.append_text(one_line(self.info.notes_model or "a model", "bold"))  # type: ignore[union-attr]
            text.append("  (a asks again, n shows the answers)", style="dim")
        else:
            text.append("no failure notes yet: a asks a model to read the failures", style="dim")
        head.update(text)
        shown = notes_markdown(notes) if notes else ""
        if shown != self.notes_shown:
            self.notes_shown = shown
            markdown.update(shown)

    # -- keys -------------------------------------------------------------------------------

    def action_next_filter(self) -> None:
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]
        self._show_rows()
        if self.info is None:
            self._show_filter()

    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}")
        self.filter = name
        self._show_rows()

    def action_toggle_notes(self) -> None:
        switcher = self.query_one("#eval-detail", ContentSwitcher)
        switcher.current = "eval-answers-box" if self.showing_notes else "eval-notes-box"

    def _show_notes_pane(self) -> None:
        self.query_one("#eval-detail", ContentSwitcher).current = "eval-notes-box"

    def action_skipped(self) -> None:
        if self.info is None or not self.info.skipped:
            self.notify("no row was skipped: every row of the file was evaluated", markup=False)
            return
        from tunedeck.core.evaluate.records import skipped_rows

        from .listing import ListingScreen

        info = self.info
        count = skipped_rows(info.skipped)
        title = f"{count} row{'s' if count != 1 else ''} of {Path(info.settings.data_path).name} could not be evaluated"
        lines = [problem.describe() for problem in info.skipped]
        self.app.push_screen(ListingScreen(title, lines, "fix them in the file, then evaluate again"))

    def action_analyse(self) -> None:
        if self.info is None:
            self.notify("the run is not loaded yet", markup=False)
            return
        if self.asking is not None:
            self.notify(f"already asking {clean(self.asking)}", markup=False)
            return
        self.analysis_error = None
        failing = self._failing_models()
        if len(failing) <= 1:  # one model to read (or none: the core says there is nothing to)
            self.analysis_key = next(iter(failing), None)
            self._list_analysis_models(self.info.id)
            return
        from .pick import PickScreen

        def picked(key: str | None) -> None:
            if key and self.info is not None:
                self.analysis_key = key
                self._list_analysis_models(self.info.id)

        self.app.push_screen(PickScreen("Whose failures should be read?", failing), picked)

    def _failing_models(self) -> dict[str, str]:
        """Each model with failures (fine-tuned ones first) -> a line saying how many."""
        if self.summary is None or self.info is None:
            return {}
        kinds = {spec.label: spec.kind for spec in self.info.settings.models}
        lines = {}
        for score in sorted(self.summary.scores, key=lambda s: kinds.get(s.key) != "fine_tuned"):
            failures = score.graded - score.passes + score.errors
            if failures:
                lines[score.key] = f"{score.key} · {failures} failure{'s' if failures != 1 else ''} · {score.model}"
        return lines

    @work(group=ANALYSIS_WORKERS, exclusive=True, exit_on_error=False, description="list models for failure notes")
    async def _list_analysis_models(self, run_id: str) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            self.post_message(AnalysisModelsListed([], "the profile is not open yet"))
            return
        evaluations = service.evaluations
        try:
            models = await evaluations.analysis_models()
            if not models:
                # Asking with no model named picks the first suitable one; with none, its
                # ServiceError says how to get one (the words live in the core, for both front ends).
                notes = await evaluations.analyse(run_id, "", self.analysis_key)
                info = await evaluations.run_info(run_id)
                self.post_message(AnalysisWritten((info.notes_model if info else None) or "a model", notes))
                return
        except ServiceError as exc:
            self.post_message(AnalysisModelsListed([], str(exc)))
        except ApiError as exc:
            self.post_message(AnalysisModelsListed([], exc.message))
        else:
            self.post_message(AnalysisModelsListed(list(models)))

    def on_analysis_models_listed(self, message: AnalysisModelsListed) -> None:
        message.stop()
        if message.error is not None or not message.models:
            self.analysis_error = message.error or "no model this profile serves can write notes"
            self._show_notes()
            self._show_notes_pane()
            return
        from .pick import PickScreen

        def picked(model: str | None) -> None:
            if model:
                self.analyse_with(model)

        labels = {model: model for model in message.models}
        self.app.push_screen(PickScreen("Which model reads the failures and writes notes?", labels), picked)

    def analyse_with(self, model: str) -> None:
        if self.info is None or self.asking is not None:
            return
        self.asking = model
        self.analysis_error = None
        self._show_filter()
        self._show_notes()
        self._show_notes_pane()
        self._analyse(self.info.id, model)

    @work(group=ANALYSIS_WORKERS, exclusive=True, exit_on_error=False, description="write failure notes")
    async def _analyse(self, run_id: str, model: str) -> None:
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            self.post_message(AnalysisWritten(model, None, "the profile is not open yet"))
            return
        try:
            notes = await service.evaluations.analyse(run_id, model, self.analysis_key)
        except ServiceError as exc:
            self.post_message(AnalysisWritten(model, None, str(exc)))
        except ApiError as exc:
            self.post_message(AnalysisWritten(model, None, exc.message))
        else:
            self.post_message(AnalysisWritten(model, notes))

    def on_analysis_written(self, message: AnalysisWritten) -> None:
        message.stop()
        self.asking = None
        if message.notes is None:
            self.analysis_error = message.error or "the model wrote nothing"
            self.notify(clean(self.analysis_error), title="failure notes", severity="error", markup=False)
        else:
            self.analysis_error = None
            if self.info is not None:
                from dataclasses import replace

                self.info = replace(self.info, notes=message.notes, notes_model=message.model)
            self.notify(f"notes by {clean(message.model)} saved with the run", markup=False)
        self._show_filter()
        self._show_notes()
        self._show_notes_pane()

    def action_export(self) -> None:
        if self.info is None or self.summary is None:
            self.notify("the run is not loaded yet", markup=False)
            return
        examples = [self.examples[i] for i in sorted(self.examples)]  # read once, when the run loaded
        self._export(self.info, self.summary, examples, list(self.results))

    @work(group=EXPORT_WORKERS, exit_on_error=False, description="export the evaluation as Markdown")
    async def _export(self, info: EvalRunInfo, summary: EvalSummary, examples: list, results: list) -> None:
        from tunedeck.core.evaluate.analysis import markdown_report

        def write() -> Path:
            report = markdown_report(info, summary, examples, results)
            return write_new(report_path(Path.cwd(), info.id), report)

        try:
            path = await asyncio.to_thread(write)
        except OSError as exc:
            self.post_message(ReportExported(None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(ReportExported(str(path)))

    def on_report_exported(self, message: ReportExported) -> None:
        message.stop()
        if message.path is None:
            self.notify(clean(message.error), title="export failed", severity="error", markup=False)
            return
        self.exported = Path(message.path)
        self.notify(clean(message.path), title="report written", markup=False, timeout=10)

    def action_copy_answers(self) -> None:
        view = self.selected_view()
        if view is None:
            self.notify("no example selected", markup=False)
            return
        from ..clipboard import copy

        line = view.example.line if view.example is not None else view.index + 1
        copy(self.app, answers_for_clipboard(view.example, view.models, view.results), f"answers of line {line}")

    def action_playground(self) -> None:
        if self.info is None:
            self.notify("the run is not loaded yet", markup=False)
            return
        from .playground import PlaygroundScreen

        specs = self.info.settings.models[:2]
        # The playground has one system prompt for both sides: the prompted baseline's, when
        # the run has one (its answers were given under it).
        system = next((spec.system_prompt for spec in specs if spec.system_prompt), None)
        self.app.push_screen(PlaygroundScreen([spec.model for spec in specs], system))

    def on_resize(self) -> None:
        # A drag sends many sizes: fit once it rests.
        if self._resize_timer is not None:
            self._resize_timer.stop()
        self._resize_timer = self.set_timer(RESIZE_DEBOUNCE_S, self._fit)

    def _fit(self) -> None:
        self._resize_timer = None
        self.fits += 1
        if self.info is not None:
            if self.summary is not None:
                self.query_one(EvalScores).show(self.summary, self.app.size.width)
            self._show_rows()

