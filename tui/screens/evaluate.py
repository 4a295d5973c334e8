"""Evaluate screen: the cached evaluation runs (newest first), where the selected one stands
(a progress bar while it runs, a score per model once graded), and the form of a new one.

The runs themselves go on in app-level workers (`service_actions`), so leaving this screen
leaves them running; their news arrives through `AppState.eval_progressed`. `c` cancels the
selected running run (nothing is lost: `R` resumes it), `F` asks again only what failed,
enter opens a run's results (a stopped one's answers so far). Opened from a job (`E` there), it starts that job's
evaluation at once (base vs fine-tuned vs each checkpoint on the job's validation file);
when the job has no data to evaluate on, the form comes filled with the job's models and
says so, and only the dataset is left to pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import Worker

from ..messages import EvalFailed, EvalFinished, EvalProgressed, EvalStarted, ModelsLoaded
from ..safe_text import clean
from ..state import AppState, host, pass_on_failure
from ..widgets.eval_form import EvalForm
from ..widgets.eval_progress import EvalProgressPanel
from ..widgets.eval_runs import EvalRunsTable
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalRunInfo, GraderChoice, ModelSpec
    from tunedeck.core.evaluate.results import EvalSummary

RUNS_WORKERS = "evaluate-runs"
SUMMARY_LIMIT = 20
"""Scores are worked out for the newest runs only (each reads its results)."""
RESUMABLE = ("cancelled", "interrupted", "created")
FORM_BLOCKED_APP_ACTIONS = frozenset({"playground", "switch_profile", "datasets", "refresh", "quit"})
"""App keys (single letters) that do nothing while focus is in the form: typed there by
mistake (on the models list, a Select, a button), they would leave or switch the profile."""


@dataclass(eq=False, repr=False)
class RunsLoaded(Message):
    """The cached runs, newest first, and the summaries read for them (None: none yet)."""

    runs: list[EvalRunInfo]
    summaries: dict[str, EvalSummary | None]
    summary_keys: dict[str, tuple[int, int, str]]


@dataclass(eq=False, repr=False)
class JobModelsLoaded(Message):
    """A job's models (base, fine-tuned, checkpoints) and its grader, for the form."""

    job_id: str
    models: list[ModelSpec]
    grader: GraderChoice | None


@dataclass(eq=False, repr=False)
class PathsLoaded(Message):
    """Recent datasets and saved graders, offered as the form's file fields' suggestions."""

    recent: list[str]
    graders: list[str]


class EvaluateScreen(Screen):
    shows_evaluations = True
    """The app leaves this screen to tell an evaluation's news (others get a toast)."""

    BINDINGS = [
        Binding("enter", "open_results", "Results", id="evaluate.results", tooltip="Open the selected run's results (a running one fills in)"),
        Binding("ctrl+s", "start", "Start", id="evaluate.start", tooltip="Start the evaluation the form describes"),
        Binding("c", "cancel_run", "Cancel run", id="evaluate.cancel", tooltip="Stop the selected evaluation (it resumes)"),
        Binding("R", "resume_run", "Resume", id="evaluate.resume", tooltip="Ask what the selected run has not answered yet"),
        Binding("F", "retry_failed", "Re-run failed", id="evaluate.retry", tooltip="Ask again what failed in the selected run"),
        Binding("n", "new", "New", id="evaluate.new", tooltip="The new evaluation's form"),
        Binding("E", "new", "New", show=False, id="evaluate.new_e"),
        Binding("escape", "back", "Back", id="evaluate.back", tooltip="Back (running evaluations go on)"),
    ]

    HELP = (
        "Evaluate: the runs so far (enter opens one's results; c cancels a running one, "
        "R resumes a stopped one, F re-runs only what failed) and a new evaluation: a dataset, the "
        "models (the first is the baseline; a base model with a system prompt is the prompted "
        "baseline), the grader; ctrl+s starts. E on a job evaluates it in one press."
    )

    def __init__(self, job_id: str | None = None, *, run_id: str | None = None) -> None:
        super().__init__()
        self.job_id = job_id
        """A job to evaluate at once (the one-key evaluation)."""
        self.run_id: str | None = run_id
        """The run this screen started or was opened on: selected when it appears."""
        self.tickets: set[int] = set()
        """Requests this screen made (their answers are its to show)."""
        self.runs: list[EvalRunInfo] = []
        self.summaries: dict[str, EvalSummary | None] = {}
        self.summary_keys: dict[str, tuple[int, int, str]] = {}
        """Each summary's run as it was when read (answers, errors, status): read again once it moves."""
        self.loads = 0
        """Times the run list was read (tests wait on it)."""
        self.status_text = ""
        """The last note under the form (plain text; tests read it)."""
        self._models_requested = False
        self._starting: int | None = None
        """The ticket of the form's start still on its way (a second ctrl+s waits for it)."""
        self._to_select: str | None = run_id
        """A run to put the cursor on once the list has it (then the user moves it)."""

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def table(self) -> EvalRunsTable:
        return self.query_one(EvalRunsTable)

    @property
    def form(self) -> EvalForm:
        return self.query_one(EvalForm)

    @property
    def panel(self) -> EvalProgressPanel:
        return self.query_one(EvalProgressPanel)

    def compose(self) -> ComposeResult:
        yield AppHeader("Evaluate", id="header")
        yield EvalRunsTable(id="eval-runs")
        yield Static(id="eval-runs-empty")
        yield EvalProgressPanel(id="eval-progress")
        yield EvalForm(id="eval-form")
        yield KeyFooter()

    def on_mount(self) -> None:
        state = self.state
        state.eval_progressed.subscribe(self, self._eval_news)
        state.models_listed.subscribe(self, self._models_loaded)
        state.changed.subscribe(self, lambda _: self._maybe_load_models())
        self.table.fit(self.app.size.width)
        self.panel.display = False
        self._show_empty()
        if state.model_choices is not None:
            self.form.offer_models(state.model_choices)
        self._maybe_load_models()
        self._load_paths()
        if self.job_id is not None:
            self._ask_then_evaluate_job(self.job_id)
            self.table.focus()
        elif self.run_id is not None:
            self.table.focus()
        else:
            self.form.data_input.focus()
        self._load_runs()

    def on_resize(self) -> None:
        self.table.fit(self.app.size.width)

    # -- loading ---------------------------------------------------------------------------

    @work(group=RUNS_WORKERS, exclusive=True, exit_on_error=False, description="read the evaluation runs")
    async def _load_runs(self) -> None:
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            self.post_message(RunsLoaded([], {}, {}))
            return
        evaluations = service.evaluations
        runs = await evaluations.runs()
        summaries: dict[str, EvalSummary | None] = {}
        keys: dict[str, tuple[int, int, str]] = {}
        for info in runs[:SUMMARY_LIMIT]:
            key = keys[info.id] = (info.done, info.errors, info.status)
            if self.summary_keys.get(info.id) == key and info.id in self.summaries:
                summaries[info.id] = self.summaries[info.id]  # no answer since: the same scores
                continue
            if not info.done:
                continue
            try:
                summaries[info.id] = await evaluations.summary(info.id)  # worked out in a thread
            except ServiceError:
                summaries[info.id] = None
        self.post_message(RunsLoaded(runs, summaries, keys))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        message.stop()
        first = self.loads == 0
        self.loads += 1
        self.runs = message.runs
        self.summaries = {**self.summaries, **message.summaries}
        self.summary_keys = {**self.summary_keys, **message.summary_keys}
        self.table.show_runs(self.runs, self.state.evaluations, self.summaries)
        if self._to_select is not None and self.table.select_run(self._to_select):
            self._to_select = None
            if self.job_id is not None and self.focused is None:
                self.table.focus()  # the job's run: c, R, F and enter at hand
        self._show_empty()
        self._show_selected()
        if first and self.runs and self.job_id is None and self.run_id is None and not self.form.data_input.value:
            self.table.focus()  # runs to look at: the list first (tab reaches the form)
        self.refresh_bindings()

    @work(group="evaluate-paths", exclusive=True, exit_on_error=False, description="recent datasets")
    async def _load_paths(self) -> None:
        import asyncio

        from tunedeck.core.launch.graders import graders_dir
        from tunedeck.core.recent import recent_files

        service = self.state.service
        if service is None:
            return
        recent = await recent_files(service.cache)
        graders: list[str] = []
        if service.paths is not None:
            folder = graders_dir(service.paths)
            graders = await asyncio.to_thread(lambda: sorted(str(p) for p in folder.glob("*.json")) if folder.is_dir() else [])
        self.post_message(PathsLoaded(recent, graders))

    def on_paths_loaded(self, message: PathsLoaded) -> None:
        message.stop()
        self.form.offer_paths(message.recent, message.graders)

    def _maybe_load_models(self) -> None:
        state = self.state
        if not self._models_requested and state.connected:
            self._models_requested = True
            host(self).requests.load_models()  # again: fine-tuned models appear in the list

    def _models_loaded(self, message: ModelsLoaded) -> None:
        if message.error is None:
            self.form.offer_models(message.choices)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event) and event.worker.group == RUNS_WORKERS:
            self.post_message(RunsLoaded(self.runs, {}, {}))

    # -- the runs' news ----------------------------------------------------------------------

    def _eval_news(self, message: EvalStarted | EvalProgressed | EvalFinished | EvalFailed) -> None:
        if isinstance(message, EvalProgressed):
            progress = message.progress
            info = self.table.infos.get(progress.run_id)
            if info is not None:
                self.table.show_progress(info, progress)
                if self.panel.shown_run_id == progress.run_id:
                    self._show_selected()
            return
        mine = message.ticket in self.tickets
        if message.ticket == self._starting and isinstance(message, (EvalStarted, EvalFinished, EvalFailed)):
            self._starting = None
        if isinstance(message, EvalStarted):
            if mine:
                self.run_id = self._to_select = message.info.id
                self.form.show_status(None)
            self._load_runs()
        elif isinstance(message, EvalFinished):
            self.summaries.pop(message.run_id, None)  # scores changed: read again
            if mine:
                self.tickets.discard(message.ticket)
            self._load_runs()
        elif isinstance(message, EvalFailed):
            if mine:
                self.tickets.discard(message.ticket)
                self._failed(message)
            elif message.stage != "crash":  # another's run (the app shows no toast here)
                where = f"evaluation {message.run_id}: " if message.run_id else "evaluation: "
                self.show_status(where + message.message)
                title = f"evaluation {clean(message.run_id)}" if message.run_id else "evaluation"
                self.notify(clean(message.message), title=title, severity="error", markup=False, timeout=15)
            if message.run_id is not None:
                self.summaries.pop(message.run_id, None)
                self._load_runs()
        self.refresh_bindings()

    def _failed(self, message: EvalFailed) -> None:
        form = self.form
        if message.stage == "plan" and message.job_id is not None:
            # The job's models in the form: with no data to evaluate on (or no connection
            # yet), only the dataset is left to pick.
            self._prefill_from_job(message.job_id)
        if message.stage in ("plan", "create") and message.kind not in ("connection", "running"):
            if message.stage == "plan":
                form.show_problem("data", message.message)
                form.data_input.focus()
                form.data_input.scroll_visible(animate=False)
            else:
                form.show_service_problem(message.message, message.kind)
            self.status_text = message.message
        else:  # the form's last line may be scrolled away: a toast too
            self.show_status(message.message)
            if message.stage != "crash":  # the app's worker handler shows those
                self.notify(clean(message.message), title="evaluation", severity="error", markup=False, timeout=15)

    def show_status(self, message: str | None) -> None:
        self.status_text = message or ""
        self.form.show_status(message)

    @work(group="evaluate-job", exclusive=True, exit_on_error=False, description="read the job's models")
    async def _prefill_from_job(self, job_id: str) -> None:
        from tunedeck.core.evaluate.graders import default_grader_for_job

        from ..widgets.eval_form_models import job_models

        state = self.state
        service = state.service
        if service is None:
            return
        row = state.row(job_id)
        job = row.job if row is not None else await service.cached_job(job_id)
        if job is None:
            return
        checkpoints = await service.cached_checkpoints(job_id)
        self.post_message(JobModelsLoaded(job_id, job_models(job, checkpoints), default_grader_for_job(job.raw)))

    def on_job_models_loaded(self, message: JobModelsLoaded) -> None:
        message.stop()
        self.form.prefill(message.models, message.grader, message.job_id)

    # -- what is shown -----------------------------------------------------------------------

    def _show_empty(self) -> None:
        empty = self.query_one("#eval-runs-empty", Static)
        has_runs = bool(self.table.row_count)
        self.table.display = has_runs
        empty.display = not has_runs
        if not has_runs:
            if self.loads == 0:
                empty.update("Reading the runs…")
            elif self.job_id is not None and self.tickets:
                empty.update("Planning the job's evaluation: base, fine-tuned, each checkpoint…")
            else:
                empty.update(
                    "No evaluations yet. Fill in the form below (a dataset and the models), then ctrl+s; "
                    "E on a job evaluates it in one press."
                )

    def selected_info(self) -> EvalRunInfo | None:
        run_id = self.table.selected_run_id
        return self.table.infos.get(run_id) if run_id is not None else None

    def _show_selected(self) -> None:
        info = self.selected_info()
        progress = self.state.evaluations.get(info.id) if info is not None else None
        self.panel.show(info, progress, self.summaries.get(info.id) if info is not None else None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_selected()
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_results(str(event.row_key.value))

    # -- keys --------------------------------------------------------------------------------

    def blocks_app_action(self, action: str) -> bool:
        """The app's single-letter keys are off while focus is in the form (the app asks)."""
        focused = self.focused
        return action in FORM_BLOCKED_APP_ACTIONS and focused is not None and self.form in focused.ancestors_with_self

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel, resume and re-run only where the selected run allows them (hidden otherwise)."""
        if action not in ("cancel_run", "resume_run", "retry_failed"):
            return True
        info = self.selected_info()
        if info is None:
            return False
        running = info.id in self.state.evaluations
        if action == "cancel_run":
            return running
        if action == "resume_run":
            return not running and info.status in RESUMABLE
        return not running and info.errors > 0 and info.status != "running"

    def action_start(self) -> None:
        # After the keys typed before it: a model id submitted with Enter just before ctrl+s
        # is added first (a binding runs ahead of the field's own messages).
        self.form.call_after_refresh(self.form.request_start)

    def on_eval_form_start_requested(self, message: EvalForm.StartRequested) -> None:
        message.stop()
        if self._starting is not None:  # ctrl+s again before the first start answered
            return
        twin = host(self).requests.running_twin(message.settings)
        if twin is not None:  # the same run is going already: shown, not started twice
            self.show_status(f"already running: {twin} (c cancels it)")
            self._to_select = twin
            if self.table.select_run(twin):
                self._to_select = None
            return
        self.form.show_status("starting…", style="dim")
        self._starting = host(self).requests.start_evaluation(message.settings)
        self.tickets.add(self._starting)

    def _ask_then_evaluate_job(self, job_id: str) -> None:
        """On the local backend at once; where the provider bills each answer, after a yes:
        every model (base, fine-tuned, each checkpoint) answers every validation row."""
        service = self.state.service
        if service is None or service.profile.backend == "local":
            self._evaluate_job(job_id)
            return
        from .confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self._evaluate_job(job_id)
            else:
                self.show_status("not started: pick what to evaluate below (ctrl+s starts)")
                self._prefill_from_job(job_id)

        question = (
            f"Evaluate {job_id} on {service.profile.describe()}? The base model, the fine-tuned model "
            "and each checkpoint answer every row of its validation file, and the provider bills "
            "those requests."
        )
        self.app.push_screen(ConfirmScreen(question, yes_label="Evaluate", no_label="Not now"), answered)

    def _evaluate_job(self, job_id: str) -> None:
        self.tickets.add(host(self).requests.evaluate_job(job_id))
        self._show_empty()

    def action_cancel_run(self) -> None:
        info = self.selected_info()
        if info is not None and host(self).requests.cancel_evaluation(info.id):
            self.notify(f"cancelling {clean(info.id)}: R resumes it", markup=False)

    def action_resume_run(self) -> None:
        info = self.selected_info()
        if info is not None:
            self.run_id = info.id
            self.tickets.add(host(self).requests.resume_evaluation(info.id))

    def action_retry_failed(self) -> None:
        info = self.selected_info()
        if info is not None:
            self.run_id = info.id
            self.tickets.add(host(self).requests.resume_evaluation(info.id, retry_errors=True))

    def action_open_results(self) -> None:
        run_id = self.table.selected_run_id
        if run_id is not None:
            self.open_results(run_id)

    def open_results(self, run_id: str) -> None:
        info = self.table.infos.get(run_id)
        if info is None:
            return
        # Any run's results open: a stopped one shows what it answered, a running one fills in.
        try:
            from .eval_results import EvalResultsScreen
        except ImportError:
            self.notify("the results screen is not available in this build", severity="warning", markup=False)
            return
        self.app.push_screen(EvalResultsScreen(run_id))

    def action_new(self) -> None:
        self.form.data_input.focus()
        self.form.scroll_home(animate=False)

    def action_back(self) -> None:
        self.app.pop_screen()
