"""Job screen: one job's fields, its live event log, and its loss chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static
from textual.worker import Worker

from tunedeck.core.describe import job_fields, local_time
from tunedeck.core.records import MetricPoint

from ..formatting import status_text
from ..messages import EventsArrived, JobDetailLoaded, JobNotFound
from ..safe_text import one_line, safe
from ..state import AppState, host, pass_on_failure
from ..widgets.header import AppHeader
from ..widgets.loss_chart import LossChart

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import Job, JobEvent, JobRow

EVENT_LOG_LINES = 2000
BACKLOG_LINES = 1000
"""Opening a job writes at most this many of its past events (RichLog renders ~0.25 ms a line)."""
LEVEL_STYLES = {"error": "bold red", "warn": "yellow", "warning": "yellow", "info": "dim"}


def event_line(event: JobEvent) -> Text:
    """`14:03:07 info  message` with the message shown literally."""
    text = Text(end="")
    text.append(local_time(event.created_at, seconds=True)[11:] or "-", style="dim")
    text.append(" ")
    text.append(one_line(f"{event.level:<5}", LEVEL_STYLES.get(event.level, "")))
    text.append(" ")
    text.append(safe(event.message))
    return text


def fields_table(job: Job | None, job_id: str, missing: str | None = None) -> Table:
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
        table.add_row(label, status_text(value) if label == "status" else safe(value))
    return table


class JobScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="job.back", tooltip="Back to the jobs list"),
        Binding("backspace", "back", "Back", show=False, id="job.back_alt"),
        Binding("c", "cancel_job", "Cancel job", id="job.cancel", tooltip="Cancel this job (asks first)"),
        Binding("a", "launch_again", "Launch again", id="job.launch_again", tooltip="A launch form filled from this job"),
    ]

    HELP = "Job: fields, live events (newest at the bottom) and the loss chart."

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: Job | None = None
        self.shown_event_ids: list[str] = []
        """Events written to the log, in order (deduplicated by id)."""
        self._seen: set[str] = set()
        self._loaded = False
        self._early: list[JobEvent] = []

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def chart(self) -> LossChart:
        return self.query_one(LossChart)

    @property
    def log_widget(self) -> RichLog:
        return self.query_one("#job-events", RichLog)

    def compose(self) -> ComposeResult:
        yield AppHeader(Text.assemble("job ", one_line(self.job_id)), id="header")
        with Horizontal(id="job-top"):
            yield Static(id="job-fields")
            yield LossChart(id="job-chart")
        yield RichLog(id="job-events", max_lines=EVENT_LOG_LINES, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#job-fields").border_title = "job"
        self.chart.border_title = "loss"
        self.log_widget.border_title = "events"
        state = self.state
        state.rows_changed.subscribe(self, self._rows_changed)
        state.events_arrived.subscribe(self, self._events_arrived)
        state.job_missing.subscribe(self, self._job_not_found)
        row = state.row(self.job_id)
        self._show_job(row.job if row else None)
        host(self).watch_job(self.job_id)
        self._load_cached()

    def on_unmount(self) -> None:
        host(self).unwatch_job(self.job_id)

    @work(group="job-detail", exclusive=True, exit_on_error=False, description="read the cached job")
    async def _load_cached(self) -> None:
        service = self.state.service
        if service is None:
            self.post_message(JobDetailLoaded(None, []))
            return
        job = await service.cached_job(self.job_id)
        events = await service.cached_events(self.job_id)
        self.post_message(JobDetailLoaded(job, events))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event):
            self.post_message(JobDetailLoaded(None, []))  # stop waiting for the cached events

    # -- applying messages -------------------------------------------------------------------

    def on_job_detail_loaded(self, message: JobDetailLoaded) -> None:
        if message.job is not None and self.job is None:
            self._show_job(message.job)
        self._loaded = True
        early, self._early = self._early, []
        self._add_events([*message.events, *early])

    def _events_arrived(self, message: EventsArrived) -> None:
        if message.job.id != self.job_id:
            return
        self._show_job(message.job)
        if not self._loaded:
            self._early.extend(message.events)  # written after the cached ones, in order
            return
        self._add_events(message.events)

    def _job_not_found(self, message: JobNotFound) -> None:
        if message.job_id == self.job_id and self.job is None:
            self.query_one("#job-fields", Static).update(fields_table(None, self.job_id, missing=message.detail))

    def _rows_changed(self, rows: list[JobRow]) -> None:
        row = next((r for r in rows if r.job.id == self.job_id), None)
        if row is not None:
            self._show_job(row.job)

    def _show_job(self, job: Job | None) -> None:
        if job is not None and job == self.job:
            return  # nothing changed: no repaint
        if job is not None:
            self.job = job
        self.query_one("#job-fields", Static).update(fields_table(self.job, self.job_id))

    def _add_events(self, events: list[JobEvent]) -> None:
        fresh = [e for e in events if e.id not in self._seen]
        if not fresh:
            return
        log = self.log_widget
        at_bottom = log.is_vertical_scroll_end or not log.lines
        self._seen.update(e.id for e in fresh)
        shown = fresh[-BACKLOG_LINES:]
        self.shown_event_ids.extend(e.id for e in shown)
        # One write for the whole batch: RichLog renders per write, ~0.5 ms each.
        log.write(Text("\n", end="").join(event_line(e) for e in shown), scroll_end=at_bottom)
        points = [p for p in map(MetricPoint.from_event, fresh) if p is not None]
        if points:
            self.chart.add_points(points)
            self.chart.border_title = self.chart.metric_name  # "reward" for RFT jobs

    # -- actions -----------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_job(self) -> None:
        host(self).requests.confirm_cancel(self.job_id)

    def action_launch_again(self) -> None:
        """The launch form filled from this job: its files (by id), model, method, every
        hyperparameter, suffix, seed, metadata, options and grader."""
        if self.job is None:
            return
        from tunedeck.core.launch.request import LaunchRequest

        from .launch import LaunchScreen

        self.app.push_screen(LaunchScreen(request=LaunchRequest.from_job(self.job.raw)))
