"""Jobs screen: every job of the profile, newest first, updated in place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tunedeck.core.describe import short_time

from ..formatting import progress_text, status_text
from ..safe_text import one_line
from ..state import AppState, host
from ..widgets.header import AppHeader

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobRow

COLUMNS = (
    ("id", "id"),
    ("model", "model"),
    ("method", "method"),
    ("status", "status"),
    ("progress", "progress"),
    ("created", "created"),
    ("fine_tuned_model", "fine-tuned model"),
)
COLUMN_KEYS = tuple(key for key, _ in COLUMNS)

Cells = tuple[Text, ...]


COMPACT_BELOW = 110
"""Terminal widths under this show shortened job ids, so 80 columns fit the key columns."""


def short_id(job_id: str) -> str:
    """`ftjob-abc…uvwxyz`: the head and the tail of a long id."""
    return job_id if len(job_id) <= 18 else f"{job_id[:9]}…{job_id[-6:]}"


def row_cells(row: JobRow, compact: bool = False) -> Cells:
    """One table row as literal `Text` cells (untrusted values never reach markup)."""
    job = row.job
    return (
        one_line(short_id(job.id) if compact else job.id),
        one_line(job.model or "-"),
        one_line(job.method_label),
        status_text(job.status),
        progress_text(row),
        Text(short_time(job.created_at), end=""),
        one_line(job.fine_tuned_model or "-", "" if job.fine_tuned_model else "dim"),
    )


class JobsTable(DataTable):
    """The jobs table: rows keyed by job id, so updates keep the cursor and the scroll."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: dict[str, Cells] = {}
        self._rows: list[JobRow] = []
        self.compact = False
        """Shortened ids (narrow terminals); the full id is on the Job screen."""
        self.cell_updates = 0
        """Cells actually rewritten (no-op updates are skipped; tests check it)."""

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def job_ids(self) -> list[str]:
        """Job ids in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        return str(self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)

    def select_job(self, job_id: str) -> bool:
        if job_id not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(job_id), animate=False)
        return True

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self.show_rows(self._rows)

    def show_rows(self, rows: list[JobRow]) -> None:
        """Add, update and remove rows in place; skip cells whose value did not change."""
        self._rows = rows
        wanted = {row.job.id: row_cells(row, self.compact) for row in rows}
        selected = self.selected_job_id
        for job_id in [j for j in self._shown if j not in wanted]:
            self.remove_row(job_id)
            del self._shown[job_id]
        for job_id, cells in wanted.items():
            old = self._shown.get(job_id)
            if old is None:
                self.add_row(*cells, key=job_id)
            elif old != cells:
                for column, new, previous in zip(COLUMN_KEYS, cells, old):
                    if new != previous:
                        self.update_cell(job_id, column, new, update_width=True)
                        self.cell_updates += 1
            self._shown[job_id] = cells
        order = list(wanted)
        if self.job_ids != order:
            # DataTable sorts on cell values: map each shown id cell to its place.
            position = {cells[0].plain: index for index, cells in enumerate(wanted.values())}
            if len(position) < len(order):  # two shortened ids collide: show them in full
                self.compact = False
                self.show_rows(rows)
                return
            self.sort("id", key=lambda cell: position[cell.plain])
        if selected in wanted and self.selected_job_id != selected:
            self.move_cursor(row=order.index(selected), animate=False)


class JobsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open_job", "Open", id="jobs.open", tooltip="Open the selected job"),
        Binding("n", "launch", "New job", id="jobs.launch", tooltip="Launch a fine-tuning job"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel", tooltip="Cancel the selected job (asks first)"),
    ]

    HELP = "Jobs: every fine-tuning job of this profile, newest first."

    def compose(self) -> ComposeResult:
        yield AppHeader("Jobs", id="header")
        yield JobsTable(id="jobs-table")
        yield Static(id="jobs-empty")
        yield Footer()

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    def on_mount(self) -> None:
        self.table.set_compact(self.app.size.width < COMPACT_BELOW)
        state = self.state
        state.rows_changed.subscribe(self, self._rows_changed)
        state.changed.subscribe(self, lambda _: self._update_empty_state())
        self._rows_changed(state.rows)

    def on_screen_resume(self) -> None:
        """Back from a job: put the cursor on the job just viewed (or launched)."""
        state = self.state
        job_id, state.current_job_id = state.current_job_id, None
        if job_id:
            self.table.select_job(job_id)

    def on_resize(self) -> None:
        self.table.set_compact(self.app.size.width < COMPACT_BELOW)

    def _rows_changed(self, rows: list[JobRow]) -> None:
        self.table.show_rows(rows)
        self._update_empty_state()

    def _update_empty_state(self) -> None:
        state = self.state
        has_rows = bool(self.table.row_count)
        self.table.display = has_rows
        empty = self.query_one("#jobs-empty", Static)
        empty.display = not has_rows
        if has_rows:
            return
        text = Text(end="")
        if state.rows_source is None:
            text.append("Opening the cache…", style="dim")
        else:
            text.append("No jobs yet.\n\n", style="bold")
            text.append("Press ")
            text.append("n", style="bold reverse")
            text.append(" to launch a fine-tuning job: pick a JSONL training file and a base model.\n")
            text.append("Press ")
            text.append("?", style="bold reverse")
            text.append(" for every key.\n\n")
            if state.notice:
                text.append(one_line(state.notice, "italic"))
            elif state.connection_state == "connecting":
                text.append("Connecting…", style="dim")
            elif state.connection_state == "error":
                text.append("Not connected: ", style="red")
                text.append(one_line(state.connection_detail))
                text.append(" (press r to retry)", style="dim")
        empty.update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._open(str(event.row_key.value))

    def action_open_job(self) -> None:
        job_id = self.table.selected_job_id
        if job_id:
            self._open(job_id)

    def _open(self, job_id: str) -> None:
        from .job import JobScreen

        self.app.push_screen(JobScreen(job_id))

    def action_launch(self) -> None:
        from .launch import LaunchScreen

        self.app.push_screen(LaunchScreen())

    def action_cancel_job(self) -> None:
        job_id = self.table.selected_job_id
        if job_id:
            host(self).requests.confirm_cancel(job_id)
        else:
            self.notify("no job selected", markup=False)
