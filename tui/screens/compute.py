"""Compute screen: the devices the backend trains on (GPUs, the CPU), which job holds each,
and which jobs wait for one. Read from the backend (`Service.compute`) in a worker when the
screen opens and again whenever the jobs move (a job that starts, ends or pauses frees or
takes devices); `enter` opens the job on the selected device. Providers other than a
tunedeck backend do not report their compute: the screen says so."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import Worker

from tunedeck.core.compute import ComputeView
from tunedeck.core.service import ServiceError

from ..safe_text import one_line, safe
from ..state import AppState, host, pass_on_failure
from ..widgets.header import AppHeader
from ..widgets.jobs_table import short_id
from ..widgets.key_footer import KeyFooter

LOAD_WORKERS = "compute-load"
COLUMNS = ("Device", "Kind", "Memory", "Job", "Model", "Status", "Name")


@dataclass(eq=False, repr=False)
class ComputeRead(Message):
    """What the backend said of its devices (`view`), or why it said nothing (`problem`)."""

    view: ComputeView | None
    problem: str = ""


class ComputeScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compute.back"),
        Binding("enter", "open_job", "Open job", id="compute.open", tooltip="Open the job on the selected device"),
    ]

    HELP = "Compute: the backend's training devices, the job holding each, and the jobs waiting for one."

    def __init__(self) -> None:
        super().__init__()
        self.view: ComputeView | None = None
        self.problem = ""
        self.loads = 0
        self._seen: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield AppHeader("Compute", id="header")
        yield Static(id="compute-summary")
        yield Static(id="compute-waiting")
        yield DataTable(id="compute-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def table(self) -> DataTable:
        return self.query_one("#compute-table", DataTable)

    def on_mount(self) -> None:
        self.table.add_columns(*COLUMNS)
        self.table.focus()
        self.state.rows_changed.subscribe(self, self._rows_changed)
        self._seen = self._marks()
        self._load()

    def _marks(self) -> tuple[object, ...]:
        return tuple((row.job.id, row.job.status) for row in self.state.rows)

    def _rows_changed(self, rows: object) -> None:
        marks = self._marks()
        if marks != self._seen:  # a job started, ended or paused: devices changed hands
            self._seen = marks
            self._load()

    @work(group=LOAD_WORKERS, exclusive=True, exit_on_error=False, description="ask the backend for its devices")
    async def _load(self) -> None:
        service = self.state.service
        if service is None:
            return
        try:
            view = await service.compute()
        except ServiceError as refused:
            self.post_message(ComputeRead(None, str(refused)))
            return
        self.post_message(ComputeRead(view))

    def on_compute_read(self, message: ComputeRead) -> None:
        message.stop()
        self.loads += 1
        self.view, self.problem = message.view, message.problem
        self._show()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event):
            self.problem = "could not ask the backend for its devices (see the error)"
            self._show()

    def _show(self) -> None:
        table = self.table
        cursor = table.cursor_row
        table.clear()
        summary = self.query_one("#compute-summary", Static)
        waiting = self.query_one("#compute-waiting", Static)
        if self.view is None:
            summary.update(safe(self.problem or "asking the backend…", "dim"))
            waiting.update("")
            return
        rows = {row.job.id: row for row in self.state.rows}
        for index, device in enumerate(self.view.devices):
            row = rows.get(device.job) if device.job else None
            table.add_row(
                one_line(device.id),
                device.kind,
                device.memory_text,
                Text("free", style="dim") if device.job is None else one_line(short_id(device.job)),
                one_line(row.job.model) if row is not None else "",
                one_line(_status(row.job.status)) if row is not None else "",
                one_line(device.name),
                key=f"{index}:{device.id}",  # two jobs' CPU ranks on one Ray node may share a name
            )
        if self.view.devices:
            table.move_cursor(row=min(cursor, len(self.view.devices) - 1))
        gpus = [d for d in self.view.devices if d.id != "cpu"]
        busy = sum(d.job is not None for d in gpus)
        if self.view.cluster is not None:
            summary.update(one_line(self.view.cluster.text, "bold"))
        else:
            summary.update(
                Text(f"{busy} of {len(gpus)} GPUs training" if gpus else "no GPU: runs take turns on the CPU", style="bold")
            )
        if self.view.waiting:
            line = Text("Waiting for a device: ", style="bold")
            line.append_text(one_line(", ".join(short_id(j) for j in self.view.waiting)))
            waiting.update(line)
        else:
            waiting.update(Text("No job waits for a device.", style="dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_job()

    def action_open_job(self) -> None:
        if self.view is None or not self.view.devices:
            return
        device = self.view.devices[min(self.table.cursor_row, len(self.view.devices) - 1)]
        if device.job is None:
            self.notify("No job trains on this device.", title="compute", markup=False)
            return
        from .job import JobScreen

        self.app.push_screen(JobScreen(device.job))


def _status(status: str) -> str:
    """A job that holds a device while still `queued` is loading its model: it is starting."""
    return "starting" if status == "queued" else status
