"""Job screen: one job's fields, its metric chart, its checkpoints and its message events.

Layout: at 120 columns and wider the fields keep a column beside the chart and the
checkpoints sit beside the events; narrower, a two-line summary goes above the chart (which
takes the whole width) and `k` swaps the events for the checkpoints. The fine-tuned model,
the job's main output, has a line of its own at every size (`y` copies it).

Events: message events go to the log (every one, filterable by level); metric points are
folded into one live line under it and drawn in the chart. The overfitting verdict is
worked out from the metrics shown (`core/watch/overfit.assess`) and, when it says
"watch" or "overfitting", shown in a banner with its advice.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker

from tunedeck.core.describe import hyperparameters_text, job_fields

from ..clipboard import copy
from ..formatting import status_text
from ..messages import CheckpointsLoaded, EventsArrived, JobDetailLoaded, JobNotFound
from ..safe_text import clean, one_line, safe
from ..state import AppState, host, pass_on_failure
from ..widgets.checkpoint_table import CheckpointTable
from ..widgets.event_log import EventLog, event_line, is_folded, metrics_summary
from ..widgets.header import AppHeader
from ..widgets.key_footer import KeyFooter
from ..widgets.metric_chart import MetricChart

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import Checkpoint, Job, JobEvent, JobRow
    from tunedeck.core.watch.overfit import Verdict

__all__ = ["JobScreen", "event_line", "fields_table"]

WIDE_FROM = 120
ASSESS_HERE_UP_TO = 5_000
"""A job the service has not judged yet (not in the rows) is judged here, up to this many
steps (a few ms); a longer one waits for the service's verdict."""
"""From this many columns the fields get a column of their own beside the chart."""
CHECKPOINT_EVENT = re.compile(r"checkpoint", re.IGNORECASE)
"""A message event that names a checkpoint: the checkpoints table is listed again."""
SVG_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
VERDICT_LOOKS = {"overfitting": ("⚠ overfitting", "bold red"), "watch": ("◔ watch", "bold yellow")}


def fields_table(job: Job | None, job_id: str, missing: str | None = None, extra: list[tuple[str, Text]] | None = None) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column("label", style="bold", no_wrap=True, width=11)
    table.add_column("value", overflow="fold")
    if job is None:
        table.add_row("id", one_line(job_id))
        if missing is not None:
            table.add_row("status", Text("not found", style="bold red"))
            table.add_row("detail", safe(missing))
        else:
            table.add_row("status", Text("loading…", style="dim"))
        return table
    for label, value in job_fields(job):
        if label == "fine-tuned":
            continue  # a line of its own above, in full
        table.add_row(label, status_text(value) if label == "status" else safe(value))
    for label, value in extra or []:
        table.add_row(label, value)
    return table


def n_epochs_of(job: Job | None, row: JobRow | None = None) -> int | None:
    """The job's epochs when they are a number yet ("auto" until the provider resolves them)."""
    if row is not None and row.n_epochs:
        return row.n_epochs
    value = job.hyperparameters.get("n_epochs") if job is not None else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def error_text(job: Job) -> str:
    if job.error_code or job.error_message:
        return f"{job.error_code or 'error'}: {job.error_message or ''}".rstrip(": ")
    return "no reason given"


def svg_path(folder: Path, job_id: str, pane: str) -> Path:
    """`<job id>-<pane>.svg` in `folder` (the id made safe for a file name), with `-1`,
    `-2`... when taken. Not created here: the caller opens it exclusively."""
    stem = SVG_NAME_UNSAFE.sub("_", f"{job_id}-{pane}").strip("._-")[:120] or "job"
    path = folder / f"{stem}.svg"
    number = 0
    while path.exists():
        number += 1
        path = folder / f"{stem}-{number}.svg"
    return path


class JobScreen(Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]

    BINDINGS = [
        Binding("escape", "back", "Back", id="job.back", tooltip="Back to the jobs list"),
        Binding("backspace", "back", "Back", show=False, id="job.back_alt"),
        Binding("v", "pane(1)", "Chart", id="job.pane", tooltip="Next chart pane (loss, accuracy, reward...)"),
        Binding("V", "pane(-1)", "Previous chart", show=False, id="job.pane_back", tooltip="Previous chart pane"),
        Binding("s", "smoothing", "Smooth", id="job.smooth", tooltip="Smoothing (EMA) of train values on or off"),
        Binding("right_square_bracket", "strength(1)", "Smooth more", show=False, id="job.smooth_more"),
        Binding("left_square_bracket", "strength(-1)", "Smooth less", show=False, id="job.smooth_less"),
        Binding("L", "log_scale", "Log scale", show=False, id="job.log", tooltip="Log scale on or off"),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", show=False, id="job.zoom_in", tooltip="Zoom in around the cursor"),
        Binding("minus", "zoom(2)", "Zoom out", show=False, id="job.zoom_out"),
        Binding("0", "reset_zoom", "Whole run", show=False, id="job.zoom_reset", tooltip="Show every step again"),
        Binding("left,h", "cursor(-1)", "Cursor left", show=False, id="job.cursor_left", tooltip="Cursor one step back"),
        Binding("right,l", "cursor(1)", "Cursor right", show=False, id="job.cursor_right", tooltip="Cursor one step on"),
        Binding("shift+left,H", "cursor(-10)", "Cursor 10 left", show=False, id="job.cursor_left10", tooltip="Cursor ten steps back"),
        Binding("shift+right", "cursor(10)", "Cursor 10 right", show=False, id="job.cursor_right10", tooltip="Cursor ten steps on"),
        Binding("end", "cursor_end", "Newest step", show=False, id="job.cursor_end", tooltip="Cursor off: read the newest step"),
        Binding("y", "copy_model", "Copy model", id="job.copy_model", tooltip="Copy the fine-tuned model's name (the job id while it has none)"),
        Binding("Y", "copy_job_id", "Copy id", show=False, id="job.copy_id", tooltip="Copy the job's id"),
        Binding("P", "pause_job", "Pause", id="job.pause", tooltip="Pause this job (it saves a checkpoint)"),
        Binding("R", "resume_job", "Resume", id="job.resume", tooltip="Resume this paused job"),
        Binding("c", "cancel_job", "Cancel job", id="job.cancel", tooltip="Cancel this job (asks first)"),
        Binding("k", "checkpoints", "Checkpoints", id="job.checkpoints", tooltip="The checkpoints table (y copies one)"),
        Binding("f", "filter_events", "Filter", show=False, id="job.filter", tooltip="Events shown: all, info+, warn+, errors"),
        Binding("e", "export_svg", "Export SVG", show=False, id="job.export", tooltip="Write the chart as <job>-<pane>.svg here"),
        Binding("a", "launch_again", "Launch again", id="job.launch_again", tooltip="A launch form filled from this job"),
        Binding("E", "evaluate_job", "Evaluate", id="job.evaluate", tooltip="Evaluate base vs fine-tuned vs each checkpoint on the job's validation file"),
    ]

    HELP = (
        "Job: the fine-tuned model (y copies it), the metric chart (v: next pane; s, [ ]: smoothing; "
        "L: log scale; + - 0: zoom; ← → h l: cursor), checkpoints (k; y copies one) and the message "
        "events (f filters by level; metric points are folded into the line under them)."
    )

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: Job | None = None
        self.checkpoints: list[Checkpoint] = []
        self.verdict: Verdict | None = None
        self.exported: list[Path] = []
        """SVG files written from this screen (tests read it)."""
        self._loaded = False
        self._early: list[JobEvent] = []
        self._metric_ids: set[str] = set()
        self._missing: str | None = None
        self.banner = Text()
        """What the banner says (a failure, an overfitting verdict), empty when hidden."""

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def chart(self) -> MetricChart:
        return self.query_one(MetricChart)

    @property
    def log_widget(self) -> EventLog:
        return self.query_one("#job-events", EventLog)

    @property
    def checkpoint_table(self) -> CheckpointTable:
        return self.query_one(CheckpointTable)

    @property
    def shown_event_ids(self) -> list[str]:
        """The message events in the log, oldest first (metric points are folded)."""
        return [e.id for e in self.log_widget.messages]

    @property
    def folded_metric_count(self) -> int:
        return len(self._metric_ids)

    def compose(self) -> ComposeResult:
        yield AppHeader(Text.assemble("job ", one_line(self.job_id)), id="header")
        yield Static(id="job-model")
        yield Static(id="job-summary")
        yield Static(id="job-banner")
        with Horizontal(id="job-top"):
            yield Static(id="job-fields")
            yield MetricChart(id="job-chart")
        with Horizontal(id="job-bottom"):
            yield CheckpointTable(id="job-checkpoints")
            with Vertical(id="job-events-box"):
                yield EventLog(id="job-events")
                yield Static(id="job-metrics-line")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#job-fields").border_title = "job"
        self._update_events_title()
        self.checkpoint_table.show([])
        state = self.state
        state.rows_changed.subscribe(self, self._rows_changed)
        state.events_arrived.subscribe(self, self._events_arrived)
        state.job_missing.subscribe(self, self._job_not_found)
        row = state.row(self.job_id)
        self._show_job(row.job if row else None)
        self._update_metrics_line()
        host(self).watch_job(self.job_id)
        self._load_cached()
        self._load_checkpoints()
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        host(self).unwatch_job(self.job_id)

    def _tick(self) -> None:
        """Elapsed time and the ETA move on between polls."""
        if self.job is not None and self.job.status == "running":
            self._update_fields()

    # -- loading ---------------------------------------------------------------------------

    @work(group="job-detail", exclusive=True, exit_on_error=False, description="read the cached job")
    async def _load_cached(self) -> None:
        service = self.state.service
        if service is None:
            self.post_message(JobDetailLoaded(None, []))
            return
        job = await service.cached_job(self.job_id)
        events = await service.cached_events(self.job_id)
        # Read after the events, so it holds every metric among them (the cache only grows);
        # built in a thread: a long job's series takes seconds, too long for the UI thread.
        series = await service.cached_series(self.job_id)
        self.post_message(JobDetailLoaded(job, events, series))

    @work(group="job-checkpoints", exclusive=True, exit_on_error=False, description="list checkpoints")
    async def _load_checkpoints(self) -> None:
        """The cached checkpoints at once, then the API's (when connected)."""
        from tunedeck.core.api import ApiError
        from tunedeck.core.service import ServiceError

        service = self.state.service
        if service is None:
            return
        cached = await service.cached_checkpoints(self.job_id)
        self.post_message(CheckpointsLoaded(self.job_id, cached, source="cache"))
        if not service.is_connected:
            return
        try:
            found = await service.checkpoints(self.job_id)
        except ApiError as exc:
            self.post_message(CheckpointsLoaded(self.job_id, cached, source="cache", error=exc.message))
        except ServiceError as exc:
            self.post_message(CheckpointsLoaded(self.job_id, cached, source="cache", error=str(exc)))
        else:
            self.post_message(CheckpointsLoaded(self.job_id, found, source="api"))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event) and event.worker.group == "job-detail":
            self.post_message(JobDetailLoaded(None, []))  # stop waiting for the cached events

    # -- applying messages -------------------------------------------------------------------

    def on_job_detail_loaded(self, message: JobDetailLoaded) -> None:
        if message.job is not None and self.job is None:
            self._show_job(message.job)
        self._loaded = True
        early, self._early = self._early, []
        if message.series is not None:
            self.chart.set_series(message.series)
            # Its metric events are in the series already: only counted, not added again.
            self._metric_ids.update(e.id for e in message.events if e.type == "metrics")
            self._update_verdict()
            self._update_fields()
        self._add_events([*message.events, *early])

    def on_checkpoints_loaded(self, message: CheckpointsLoaded) -> None:
        if message.job_id != self.job_id:
            return
        if message.source == "cache" and message.error is None and self.checkpoints and not message.checkpoints:
            return  # the API already answered; an empty cache read is older
        self.checkpoints = list(message.checkpoints)
        note = None
        if message.error is not None:
            note = "checkpoints: " + clean(message.error)
        elif not self.checkpoints:
            note = "checkpoints: none yet" if self.job is None or not self.job.is_terminal else "checkpoints: none"
        self.checkpoint_table.show(self.checkpoints, note)
        self._update_verdict()

    def _events_arrived(self, message: EventsArrived) -> None:
        if message.job.id != self.job_id:
            return
        self._show_job(message.job)
        if not self._loaded:
            self._early.extend(message.events)  # written after the cached ones, in order
            return
        self._add_events(message.events, live=True)

    def _job_not_found(self, message: JobNotFound) -> None:
        if message.job_id == self.job_id and self.job is None:
            self._missing = message.detail
            self._update_fields()

    def _rows_changed(self, rows: list[JobRow]) -> None:
        row = next((r for r in rows if r.job.id == self.job_id), None)
        if row is not None:
            self._show_job(row.job)
            self._update_verdict()  # the service's verdict comes with the rows

    def _show_job(self, job: Job | None) -> None:
        if job is not None and job == self.job:
            return  # nothing changed: no repaint
        before = self.job
        if job is not None:
            self.job = job
        job = self.job
        if job is not None:
            self.chart.set_job(job.method, n_epochs_of(job, self.state.row(self.job_id)))
            if job.status == "failed":
                self.chart.set_empty_text(f"failed before training: {clean(error_text(job))}")
            if before is not None and before.status != job.status:
                self.refresh_bindings()  # pause, resume and cancel follow the status
                if job.is_terminal or job.status == "paused":
                    self._load_checkpoints()  # the final (or the pause) checkpoint
            elif before is None:
                self.refresh_bindings()
        self._update_fields()
        self._update_verdict()

    def _add_events(self, events: list[JobEvent], live: bool = False) -> None:
        messages = [e for e in events if not is_folded(e)]
        fresh = self.log_widget.add(messages)
        points = [e for e in events if e.type == "metrics" and e.id not in self._metric_ids]
        if points:
            self._metric_ids.update(e.id for e in points)
            if self.chart.add_events(points):
                self._update_verdict()
                self._update_fields()
        self._update_metrics_line()
        if live and any(CHECKPOINT_EVENT.search(e.message) for e in fresh):
            self._load_checkpoints()

    # -- what is shown -----------------------------------------------------------------------

    def _update_verdict(self) -> None:
        job = self.job
        verdict = None
        row = self.state.row(self.job_id)
        if row is not None and row.verdict is not None:
            # The service judges every followed job as its events arrive (in a thread for long
            # ones): the screen shows that verdict rather than judging on the UI thread.
            verdict = row.verdict
        elif job is not None and 0 < len(self.chart.series) <= ASSESS_HERE_UP_TO:
            from tunedeck.core.watch.overfit import assess

            verdict = assess(
                self.chart.series,
                method=job.method,
                n_epochs=n_epochs_of(job, self.state.row(self.job_id)),
                checkpoint_steps=sorted(c.step for c in self.checkpoints) or None,
                finished=job.is_terminal,
                has_validation_file=bool(job.validation_file),
            )
        if verdict != self.verdict:
            self.verdict = verdict
            self._update_fields()
        self._update_banner()

    def _update_banner(self) -> None:
        lines: list[Text] = []
        job = self.job
        if job is not None and job.status == "failed":
            last = self.chart.series.last_step()
            where = "failed before training" if last is None else f"failed at step {last}"
            line = Text(f"✖ {where}: ", style="bold red", end="")
            line.append_text(one_line(error_text(job)))
            lines.append(line)
        verdict = self.verdict
        if verdict is not None and verdict.state in VERDICT_LOOKS:
            label, style = VERDICT_LOOKS[verdict.state]
            line = Text(f"{label}: ", style=style, end="")
            line.append_text(one_line(verdict.advice))  # names the job's metric columns: outside text
            lines.append(line)
        self.banner = Text("\n", end="").join(lines)
        banner = self.query_one("#job-banner", Static)
        banner.set_class(bool(lines), "-shown")
        banner.set_class(verdict is not None and verdict.alarm or (job is not None and job.status == "failed"), "-alarm")
        banner.update(self.banner)

    def _progress_parts(self) -> list[tuple[str, Text]]:
        """Step, epoch, elapsed, ETA and cost so far, as (label, value) pairs."""
        from tunedeck.core.describe import duration_text
        from tunedeck.core.watch.progress import cost_so_far, elapsed_s, eta_s

        job, series = self.job, self.chart.series
        if job is None:
            return []
        parts: list[tuple[str, Text]] = []
        step, total = series.last_step(), series.total_steps
        row = self.state.row(self.job_id)
        if step is not None:
            parts.append(("step", Text(f"{step}/{total}" if total else str(step), end="")))
            epochs = n_epochs_of(job, row)
            epoch = series.epoch_of(step, epochs)
            if epoch is not None:
                parts.append(("epoch", Text(f"{epoch:.2f}/{epochs}", end="")))
        now = time.time()
        elapsed = elapsed_s(job, now)
        if elapsed is not None:
            parts.append(("elapsed", Text(duration_text(elapsed, compact=True), end="")))
        if not job.is_terminal:
            eta = eta_s(job, step, total, now)
            if eta is not None:
                parts.append(("ETA", Text(duration_text(eta, compact=True), end="")))
        service = self.state.service
        fraction = step / total if step and total else (1.0 if job.status == "succeeded" else None)
        money = cost_so_far(
            job,
            fraction=fraction,
            estimated_tokens=row.estimated_tokens if row is not None else None,
            local=service is not None and service.profile.backend == "local",
            now=now,
        )
        parts.append(("cost", Text(money.text(), end="")))
        if self.verdict is not None:
            state = self.verdict.state
            if state == "no_validation" and job.validation_file and not job.is_terminal:
                state = "too_early"  # a validation file, not evaluated yet
            shown = state.replace("_", " ")
            if self.verdict.alarm and self.verdict.fired_at_step is not None:
                shown = f"since step {self.verdict.fired_at_step}"  # the banner says what to do
            parts.append(("overfitting", one_line(shown)))
        return parts

    def _update_fields(self) -> None:
        job = self.job
        progress = self._progress_parts()
        fields = fields_table(job, self.job_id, missing=self._missing, extra=progress)
        self.query_one("#job-fields", Static).update(fields)
        self.query_one("#job-model", Static).update(self._model_line())
        self.query_one("#job-summary", Static).update(self._summary(progress))

    def _model_line(self) -> Text:
        job = self.job
        text = Text("fine-tuned model ", style="bold", end="")
        if job is not None and job.fine_tuned_model:
            text.append_text(one_line(job.fine_tuned_model, "bold green"))
            text.append("  (y copies it, Y the job id)", style="dim")
        elif job is not None and job.is_terminal:
            text.append(f"none (the job {job.status})", style="dim")
        else:
            text.append("— (named when the job succeeds)", style="dim")
        return text

    def _summary(self, progress: list[tuple[str, Text]]) -> Text:
        """The fields in two lines, for narrow terminals (the chart keeps the width): status,
        method, model, step and epoch; then time, cost and hyperparameters."""
        job = self.job
        if job is None:
            if self._missing is not None:
                text = Text("not found: ", style="bold red", end="")
                text.append_text(one_line(self._missing))
                return text
            return Text.assemble(one_line(self.job_id), Text(" · loading…", style="dim"))
        first = Text(end="")
        first.append_text(status_text(job.status))
        first.append(f" · {job.method_label} · ")
        first.append_text(one_line(job.model or "-"))
        second = Text(end="")
        for label, value in progress:
            if label == "overfitting":
                continue  # the banner says so when it matters
            line = first if label in ("step", "epoch") else second
            if line:
                line.append(" · ")
            line.append(f"{label} ", style="dim")
            line.append_text(value)
        if second:
            second.append(" · ")
        second.append("hyperparams ", style="dim")
        second.append_text(one_line(hyperparameters_text(job.hyperparameters)))
        summary = Text("\n", end="").join([first, second])
        summary.no_wrap, summary.overflow = True, "ellipsis"  # two lines at any width
        return summary

    def _update_metrics_line(self) -> None:
        chart = self.chart
        panes = chart.panes
        columns: list[tuple[str, str]] = []
        if panes:
            main = panes[0]
            columns = [(f"{c.label} {main.title}", c.column) for c in main.curves if c.kind != "spread"]
        line = metrics_summary(chart.series, columns, self.folded_metric_count)
        self.query_one("#job-metrics-line", Static).update(line)

    def _update_events_title(self) -> None:
        log = self.log_widget
        self.query_one("#job-events-box").border_title = f"events · {log.filter_name} (f)"

    # -- what may be done --------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause, resume and cancel only where the job's status allows them: hidden otherwise
        (a finished job offers none of them)."""
        job = self.job
        if action == "cancel_job":
            return job is not None and not job.is_terminal  # not while loading, nor a job not found
        if action == "pause_job":
            return job is not None and job.status == "running"
        if action == "resume_job":
            return job is not None and job.status == "paused"
        return True

    # -- actions: chart ----------------------------------------------------------------------

    def action_pane(self, delta: int) -> None:
        self.chart.cycle_pane(delta)

    def action_smoothing(self) -> None:
        self.chart.toggle_smoothing()

    def action_strength(self, delta: int) -> None:
        self.chart.change_strength(delta)

    def action_log_scale(self) -> None:
        self.chart.toggle_log()

    def action_zoom(self, factor: float) -> None:
        self.chart.zoom(factor)

    def action_reset_zoom(self) -> None:
        self.chart.reset_zoom()

    def action_cursor(self, delta: int) -> None:
        self.chart.move_cursor(delta)

    def action_cursor_end(self) -> None:
        self.chart.cursor_to("last")

    def action_export_svg(self) -> None:
        """The chart as `<job id>-<pane>.svg` in the current folder (never over a file)."""
        chart = self.chart
        pane = chart.pane
        svg = chart.export_svg(title=f"{clean(self.job_id)} · {chart.title()}")
        folder = Path.cwd()
        for _ in range(20):  # another writer may take a name between the look and the open
            path = svg_path(folder, self.job_id, pane.key if pane is not None else "metrics")
            try:
                with open(path, "x", encoding="utf-8") as handle:
                    handle.write(svg)
            except FileExistsError:
                continue
            except OSError as exc:
                self.app.notify(clean(f"{path}: {exc.strerror or exc}"), title="cannot export", severity="error", markup=False)
                return
            self.exported.append(path)
            self.app.notify(clean(str(path)), title="chart written", markup=False)
            return

    # -- actions: the job --------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_copy_model(self) -> None:
        job = self.job
        if job is None or not job.fine_tuned_model:  # named when the job succeeds: the id till then
            copy(self.app, self.job_id, "the job id (no fine-tuned model yet)")
            return
        copy(self.app, job.fine_tuned_model, "the fine-tuned model")

    def action_copy_job_id(self) -> None:
        copy(self.app, self.job_id, "the job id")

    def action_cancel_job(self) -> None:
        host(self).requests.confirm_cancel(self.job_id)

    def action_pause_job(self) -> None:
        host(self).requests.pause_job(self.job_id)

    def action_resume_job(self) -> None:
        host(self).requests.resume_job(self.job_id)

    def action_checkpoints(self) -> None:
        """Narrow: the checkpoints in place of the events (again: back). Wide: focus them."""
        table = self.checkpoint_table
        if self.has_class("-narrow"):
            self.toggle_class("-checkpoints")
            (table if self.has_class("-checkpoints") else self.chart).focus()
        else:
            (self.chart if table.has_focus else table).focus()

    def action_filter_events(self) -> None:
        self.log_widget.cycle_filter()
        self._update_events_title()

    def action_evaluate_job(self) -> None:
        """Base vs fine-tuned vs each checkpoint on the job's validation file, in one press;
        the Evaluate screen shows it run (or, with no data to use, its form filled)."""
        from .evaluate import EvaluateScreen

        self.app.push_screen(EvaluateScreen(self.job_id))

    def action_launch_again(self) -> None:
        """The launch form filled from this job: its files (by id), model, method, every
        hyperparameter, suffix, seed, metadata, options and grader."""
        if self.job is None:
            return
        from tunedeck.core.launch.request import LaunchRequest

        from .launch import LaunchScreen

        self.app.push_screen(LaunchScreen(request=LaunchRequest.from_job(self.job.raw)))
