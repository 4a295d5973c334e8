"""Jobs screen: every job of the profile, newest first, updated in place.

`/` filters (the input opens focused, so keys typed right after it land there), `s` and
`S` sort (or a click on a header), space marks jobs and `C` compares the marked ones; `y`
copies the selected job's fine-tuned model (its id while it has none), `Y` its id.
Offline, the rows come from the cache: unfinished ones are marked with their age.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from ..clipboard import copy
from ..formatting import STALE_GLYPH, age_text
from ..safe_text import one_line
from ..state import AppState, host
from ..widgets.header import AppHeader
from ..widgets.jobs_table import COLUMNS, JobsTable, describe_sort, short_id
from ..widgets.key_footer import KeyFooter
from ..widgets.ordered_input import OrderedInput

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobRow

COMPACT_BELOW = 110
"""Terminal widths under this show shortened job ids, so 80 columns fit the key columns."""


class JobsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open_job", "Open", id="jobs.open", tooltip="Open the selected job"),
        Binding("n", "launch", "New job", id="jobs.launch", tooltip="Launch a fine-tuning job"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel", tooltip="Cancel the selected job (asks first)"),
        # A priority binding runs before the next key is read, so the input has focus by then:
        # "/abc" typed in one burst filters on "abc".
        Binding("slash", "filter", "Filter", id="jobs.filter", priority=True, tooltip="Filter by id, model, status, method, suffix or fine-tuned model"),
        Binding("s", "next_sort", "Sort", id="jobs.sort", tooltip="Sort on the next column (a click on a header sorts on it)"),
        Binding("S", "reverse_sort", "Reverse", id="jobs.reverse", show=False, tooltip="Reverse the sort"),
        Binding("space", "mark", "Mark", id="jobs.mark", tooltip="Mark or unmark the selected job for comparison"),
        Binding("m", "mark", "Mark", id="jobs.mark_m", show=False),
        Binding("C", "compare", "Compare", id="jobs.compare", tooltip="Compare the marked jobs (two or more)"),
        Binding("w", "compute", "Compute", id="jobs.compute", tooltip="The backend's GPUs and the job training on each"),
        Binding("y", "copy_name", "Copy", id="jobs.copy", tooltip="Copy the selected job's fine-tuned model (its id while it has none)"),
        Binding("Y", "copy_job_id", "Copy id", show=False, id="jobs.copy_id", tooltip="Copy the selected job's id"),
        Binding("escape", "clear_filter", "Clear filter", id="jobs.clear_filter", show=False, tooltip="Clear the filter"),
    ]

    AUTO_FOCUS = "JobsTable"

    HELP = (
        "Jobs: every fine-tuning job of this profile, newest first. "
        "/ filters, s sorts (S reverses, or click a header), space marks, C compares the marked jobs; "
        "y copies the fine-tuned model (Y the job id); g/Home and G/End go to the first and last job."
    )

    def compose(self) -> ComposeResult:
        yield AppHeader("Jobs", id="header")
        field = OrderedInput(placeholder="filter: id, model, status, method, suffix, fine-tuned model", id="jobs-filter", compact=True)
        field.display = False  # opened by "/"; never the first thing focused
        yield field
        yield Static(id="jobs-note")
        yield JobsTable(id="jobs-table")
        yield Static(id="jobs-empty")
        yield KeyFooter()

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#jobs-filter", Input)

    def on_mount(self) -> None:
        self.table.set_compact(self.app.size.width < COMPACT_BELOW)
        state = self.state
        state.rows_changed.subscribe(self, self._rows_changed)
        state.changed.subscribe(self, lambda _: self._state_changed())
        self._state_changed()
        self._rows_changed(state.rows)

    def on_screen_resume(self) -> None:
        """Back from a job: put the cursor on the job just viewed (or launched)."""
        state = self.state
        job_id, state.current_job_id = state.current_job_id, None
        if job_id:
            self.table.select_job(job_id)

    def on_resize(self) -> None:
        self.table.set_compact(self.app.size.width < COMPACT_BELOW)

    def _state_changed(self) -> None:
        if self._follow_state():
            self.table.refresh_rows()
        self._update_empty_state()
        self._update_note()

    def _follow_state(self) -> bool:
        """The table's view of the profile: local (no cost) and stale (rows from the cache
        while not online, or before the API answered). True when that changed."""
        state = self.state
        table = self.table
        local = state.service is not None and state.service.profile.backend == "local"
        stale = state.rows_source is not None and (state.connection_state != "online" or state.rows_source != "api")
        changed = (local, stale) != (table.local, table.stale)
        table.local, table.stale = local, stale
        return changed

    def _rows_changed(self, rows: list[JobRow]) -> None:
        self._follow_state()
        self.table.show_rows(rows)
        self._update_empty_state()
        self._update_note()
        self.refresh_bindings()  # the selected job may have ended: no "Cancel job" then

    def on_jobs_table_view_changed(self, event: JobsTable.ViewChanged) -> None:
        event.stop()
        self._update_note()
        self._update_empty_state()
        self.refresh_bindings()  # a filter may hide every job, or move the cursor to another

    # -- the line above the table -----------------------------------------------------------

    def note_text(self) -> Text:
        """`12 jobs · sort: created ▼ · filter "sft": 3 shown · 2 marked · offline: …`"""
        table = self.table
        total = len(table.all_rows)
        text = Text(end="", style="dim", no_wrap=True, overflow="ellipsis")
        text.append(f"{total} job{'s' if total != 1 else ''}")
        text.append(" · sort: ")
        text.append(describe_sort(table.sort_by), style="bold")
        if table.filter_text:
            text.append(" · filter ")
            text.append(one_line(f'"{table.filter_text}"', "bold"))
            text.append(f": {table.row_count} shown")
        if table.marks:
            text.append(" · ")
            text.append(f"{len(table.marks)} marked", style="bold")
            text.append(" (C compares)" if len(table.marks) > 1 else " (mark another to compare)")
        if table.stale and total:
            fetched = [row.fetched_at for row in table.all_rows if row.fetched_at is not None]
            text.append(" · ")
            text.append("cached", style="bold")
            if fetched:
                text.append(f", fetched {age_text(table.clock() - max(fetched))}")
            text.append(f"; {STALE_GLYPH} = may have moved on")
        return text

    def _update_note(self) -> None:
        note = self.query_one("#jobs-note", Static)
        note.display = bool(self.table.all_rows)
        note.update(self.note_text())

    def _update_empty_state(self) -> None:
        state = self.state
        table = self.table
        has_rows = bool(table.row_count)
        table.display = has_rows
        empty = self.query_one("#jobs-empty", Static)
        empty.display = not has_rows
        if has_rows:
            return
        text = Text(end="")
        if state.rows_source is None:
            text.append("Opening the cache…", style="dim")
        elif table.all_rows:  # the filter hides every job
            text.append("No job matches ")
            text.append(one_line(f'"{table.filter_text}"', "bold"))
            text.append(" (id, model, status, method, suffix, fine-tuned model). Escape clears the filter.")
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

    # -- filter -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter" and self.focused is self.filter_input:
            return False  # "/" typed into the filter is a character
        if action == "cancel_job":  # offered only for a selected job that has not ended
            job_id = self.table.selected_job_id
            if job_id is None:  # an empty table, or a filter that hides every job
                return False
            row = self.state.row(job_id)
            return not (row is not None and row.job.is_terminal)
        return True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def action_filter(self) -> None:
        field = self.filter_input
        field.display = True
        # Focus now, not after a refresh: the keys already queued behind "/" go to the input.
        self.set_focus(field)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "jobs-filter":
            event.stop()
            self.table.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "jobs-filter":
            event.stop()
            if not event.value:
                event.input.display = False
            self.set_focus(self.table)

    def action_clear_filter(self) -> None:
        field = self.filter_input
        if not field.display and not self.table.filter_text:
            raise SkipAction()
        field.value = ""
        field.display = False
        self.table.set_filter("")
        self.set_focus(self.table)

    # -- sort, marks, compare ---------------------------------------------------------------

    def action_next_sort(self) -> None:
        self.table.next_sort()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()

    def action_mark(self) -> None:
        job_id = self.table.selected_job_id
        if job_id:
            self.table.toggle_mark(job_id)

    def action_compare(self) -> None:
        marked = list(self.table.marks)
        if len(marked) < 2:
            self.notify(
                "Mark two or more jobs with space (or m), then press C to compare them.", title="compare", markup=False
            )
            return
        from .compare import CompareScreen

        self.app.push_screen(CompareScreen(marked))

    def action_compute(self) -> None:
        from .compute import ComputeScreen

        self.app.push_screen(ComputeScreen())

    # -- open, launch, cancel ---------------------------------------------------------------

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

    def action_copy_name(self) -> None:
        """The fine-tuned model, what a user goes on to call; the job id while there is none."""
        job_id = self.table.selected_job_id
        if job_id is None:
            self.notify("no job selected", markup=False)
            return
        row = self.state.row(job_id)
        model = row.job.fine_tuned_model if row is not None else None
        if model:
            copy(self.app, model, "the fine-tuned model")
        else:
            copy(self.app, job_id, "the job id (no fine-tuned model yet)")

    def action_copy_job_id(self) -> None:
        job_id = self.table.selected_job_id
        if job_id is None:
            self.notify("no job selected", markup=False)
            return
        copy(self.app, job_id, "the job id")

    def action_cancel_job(self) -> None:
        job_id = self.table.selected_job_id
        if job_id:
            host(self).requests.confirm_cancel(job_id)
        else:
            self.notify("no job selected", markup=False)


__all__ = ["JobsScreen", "JobsTable", "COLUMNS", "COMPACT_BELOW", "short_id"]
