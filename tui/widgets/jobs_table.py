"""The jobs table: every job of the profile, filtered, sorted and marked, updated in place.

What a row shows comes from its `JobRow` alone (status, progress and epoch from the same
row, so a job never shows `running 100%`), and the time from `clock` (tests set it).
Columns that do not fit the width are hidden, least important first: the mark, the id,
the model, the status and the progress always stay; the fine-tuned model takes what is
left, cut in the middle with an ellipsis rather than not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from tunedeck.core.describe import duration_text, short_time
from tunedeck.core.watch.progress import cost_so_far, elapsed_s, eta_s

from ..formatting import (
    STALE_GLYPH,
    age_text,
    middle_ellipsis,
    progress_text,
    shown_fraction,
    status_glyph,
    status_text,
    tokens_text,
    verdict_marker,
)
from ..safe_text import one_line
from .steady_table import SteadyTable

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import JobRow

MARK_GLYPH = "◆"
TICK_S = 2.0
"""How often elapsed time, ETA and cost are worked out again between polls."""
FINE_TUNED_MIN = 16
"""The fewest cells the fine-tuned model is shown in (cut in the middle) before it is hidden."""
PAD = 2
"""Cells a column adds to its content (DataTable's cell padding, both sides)."""


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    keep: int
    """0: always shown; otherwise the order in which columns are kept as the width allows."""
    descending: bool = False
    """The direction a sort on this column starts with (the most useful end first)."""


COLUMNS = (
    Column("mark", "", 0),
    Column("id", "id", 0),
    Column("model", "model", 0),
    Column("status", "status", 0),
    Column("progress", "progress", 0, descending=True),
    Column("watch", "watch", 1, descending=True),
    Column("fine_tuned_model", "fine-tuned model", 2),
    Column("elapsed", "elapsed", 3, descending=True),
    Column("eta", "eta", 4),
    Column("cost", "cost", 5, descending=True),
    Column("tokens", "tokens", 6, descending=True),
    Column("method", "method", 7),
    Column("created", "created", 8, descending=True),
)
BY_KEY = {column.key: column for column in COLUMNS}
COLUMN_KEYS = tuple(column.key for column in COLUMNS)
SORT_CYCLE = ("created", "status", "progress", "elapsed", "eta", "cost", "tokens", "watch", "model", "id", "method", "fine_tuned_model")
"""`s` walks the sort through these (the default first)."""
DEFAULT_SORT = ("created", True)

STATUS_RANK = {"running": 0, "paused": 1, "validating_files": 2, "queued": 3, "pending": 4, "failed": 5, "cancelled": 6, "succeeded": 7}
VERDICT_RANK = {"overfitting": 2, "watch": 1}


def short_id(job_id: str) -> str:
    """`ftjob-abc…uvwxyz`: the head and the tail of a long id."""
    return job_id if len(job_id) <= 18 else f"{job_id[:9]}…{job_id[-6:]}"


@dataclass(frozen=True)
class View:
    """What a row's cells depend on besides the row itself."""

    now: float
    local: bool = False
    """The profile's backend is local: training costs nothing."""
    stale: bool = False
    """The rows come from the cache while not online: unfinished ones may have moved on."""
    compact: bool = False


def suffix_of(row: JobRow) -> str:
    raw = row.job.raw
    return str(raw.get("user_provided_suffix") or raw.get("suffix") or "")


def matches(row: JobRow, terms: list[str]) -> bool:
    """Every term is in the id, model, status, method, suffix or fine-tuned model."""
    if not terms:
        return True
    job = row.job
    haystack = " ".join(
        (job.id, job.model, job.status, job.method, job.method_label, suffix_of(row), job.fine_tuned_model or "")
    ).lower()
    return all(term in haystack for term in terms)


def money_of(row: JobRow, view: View):
    return cost_so_far(row.job, fraction=row.progress, estimated_tokens=row.estimated_tokens, local=view.local, now=view.now)


def tokens_of(row: JobRow) -> tuple[float | None, bool]:
    """Trained tokens as the job reports them, else the estimate for the part done."""
    if row.job.trained_tokens is not None:
        return float(row.job.trained_tokens), False
    if row.estimated_tokens and row.progress is not None:
        return row.estimated_tokens * row.progress, True
    return None, False


def eta_of(row: JobRow, view: View) -> float | None:
    if row.job.is_terminal or view.stale:
        return None
    return eta_s(row.job, row.step, row.total_steps, view.now)


def sort_value(key: str, row: JobRow, view: View) -> Any:
    """What a column sorts on (None: unknown, always last)."""
    job = row.job
    if key == "created":
        return job.created_at
    if key == "id":
        return job.id
    if key == "model":
        return job.model.lower()
    if key == "status":
        return STATUS_RANK.get(job.status, len(STATUS_RANK))
    if key == "progress":
        return shown_fraction(row)
    if key == "watch":
        return VERDICT_RANK.get(row.verdict.state, 0) if row.verdict is not None else None
    if key == "fine_tuned_model":
        return job.fine_tuned_model
    if key == "elapsed":
        return elapsed_s(job, view.now)
    if key == "eta":
        return eta_of(row, view)
    if key == "cost":
        return money_of(row, view).usd
    if key == "tokens":
        return tokens_of(row)[0]
    if key == "method":
        return job.method_label
    return None


def sorted_rows(rows: list[JobRow], key: str, descending: bool, view: View) -> list[JobRow]:
    """Stable: rows that tie keep their order (newest first); unknown values go last."""
    keyed = [(sort_value(key, row, view), row) for row in rows]
    known = [pair for pair in keyed if pair[0] is not None]
    known.sort(key=lambda pair: pair[0], reverse=descending)
    return [row for _, row in known] + [row for value, row in keyed if value is None]


def stale_age(row: JobRow, view: View) -> str | None:
    """`3h ago` for an unfinished row shown from the cache while offline (None: not stale)."""
    if not view.stale or row.job.is_terminal:
        return None
    return age_text(view.now - row.fetched_at) if row.fetched_at is not None else ""


def static_cells(row: JobRow, view: View, marked: bool = False) -> dict[str, Text]:
    """The cells that change only with the row (and the view's flags), not with the clock."""
    job = row.job
    age = stale_age(row, view)
    progress = Text(end="")
    progress.append_text(Text(STALE_GLYPH, style="bold", end="") if age is not None else status_glyph(job.status))
    progress.append(" ")
    progress.append_text(progress_text(row))
    if age:  # what the table shows may have moved on: say how old it is
        progress.append(f" {age}", style="dim italic")
    tokens, estimate = tokens_of(row)
    return {
        "mark": Text(MARK_GLYPH if marked else " ", style="bold", end=""),
        "id": one_line(short_id(job.id) if view.compact else job.id),
        "model": one_line(job.model or "-"),
        "status": status_text(job.status),
        "progress": progress,
        "watch": verdict_marker(row.verdict),
        "fine_tuned_model": one_line(job.fine_tuned_model or "-", "" if job.fine_tuned_model else "dim"),
        "tokens": Text(tokens_text(tokens, estimate), end=""),
        "method": one_line(job.method_label),
        "created": Text(short_time(job.created_at), end=""),
    }


def timed_cells(row: JobRow, view: View) -> dict[str, Text]:
    """The cells that move with the clock while a job has not ended: elapsed, ETA, cost."""
    money = money_of(row, view)
    return {
        "elapsed": Text(duration_text(elapsed_s(row.job, view.now), compact=True), end=""),
        "eta": Text(duration_text(eta_of(row, view), compact=True), end="", style="dim" if stale_age(row, view) is not None else ""),
        "cost": Text(money.text(), style="dim" if money.usd is None else "", end=""),
    }


def row_cells(row: JobRow, view: View, marked: bool = False) -> dict[str, Text]:
    """Every column's cell of one row as literal `Text` (untrusted values never reach markup)."""
    return {**static_cells(row, view, marked), **timed_cells(row, view)}


@dataclass(frozen=True)
class _Made:
    """One row's cells as made, the view's flags they were made for, and their widths."""

    row: JobRow
    key: tuple[object, ...]
    static: dict[str, Text]
    timed: dict[str, Text]
    widths: dict[str, int]

    @classmethod
    def of(cls, row: JobRow, key: tuple[object, ...], static: dict[str, Text], timed: dict[str, Text]) -> _Made:
        widths = {name: cell.cell_len for name, cell in (*static.items(), *timed.items())}
        return cls(row, key, static, timed, widths)

    def retimed(self, row: JobRow, view: View) -> _Made:
        timed = timed_cells(row, view)
        return _Made(row, self.key, self.static, timed, {**self.widths, **{k: c.cell_len for k, c in timed.items()}})


@dataclass(frozen=True)
class Layout:
    columns: tuple[str, ...]
    fine_tuned_width: int | None
    """Set when the fine-tuned model is squeezed into fewer cells than it needs."""
    sort: tuple[str, bool]


def plan_columns(natural: dict[str, int], width: int) -> tuple[tuple[str, ...], int | None]:
    """Which columns fit `width` cells: the required ones, then the others by `keep` while
    they fit; the fine-tuned model may take the rest (at least FINE_TUNED_MIN)."""
    chosen = {c.key for c in COLUMNS if c.keep == 0}
    used = sum(natural[key] + PAD for key in chosen)
    squeezed: int | None = None
    for column in sorted((c for c in COLUMNS if c.keep), key=lambda c: c.keep):
        need = natural[column.key] + PAD
        if used + need <= width:
            chosen.add(column.key)
            used += need
        elif column.key == "fine_tuned_model" and width - used - PAD >= FINE_TUNED_MIN:
            squeezed = width - used - PAD
            chosen.add(column.key)
            used = width
    return tuple(key for key in COLUMN_KEYS if key in chosen), squeezed


def column_label(key: str, sort: tuple[str, bool]) -> Text:
    label = Text(BY_KEY[key].label, style="bold", end="")
    if key == sort[0]:
        label.append(" ▼" if sort[1] else " ▲")
    return label


class JobsTable(SteadyTable):
    """The jobs table: rows keyed by job id, so updates keep the cursor and the scroll."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        # Rows, not columns: DataTable's Home/End scroll sideways, which a row table never wants.
        Binding("g,home", "scroll_top", "First job", show=False, tooltip="The first job (the newest, in the default sort)"),
        Binding("G,end", "scroll_bottom", "Last job", show=False, tooltip="The last job"),
    ]

    class ViewChanged(Message):
        """The sort, the filter or the marks changed (the screen's note line says so)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._shown: dict[str, tuple[Text, ...]] = {}
        self._rows: list[JobRow] = []
        self._layout: Layout | None = None
        self._made: dict[str, _Made] = {}
        """Each row's cells as last made, reused while the row is the same: a tick of the
        clock makes again only the timed cells of jobs that have not ended."""
        self.compact = False
        """Shortened ids (narrow terminals); the full id is on the Job screen."""
        self.cell_updates = 0
        """Cells actually rewritten (no-op updates are skipped; tests check it)."""
        self.clock: Callable[[], float] = time.time
        """Where "now" comes from (elapsed, ETA, cost, the age of cached rows); tests set it."""
        self.local = False
        self.stale = False
        self.marks: list[str] = []
        """Marked job ids, in the order they were marked (Compare shows them so)."""
        self.filter_text = ""
        self.sort_by: tuple[str, bool] = DEFAULT_SORT
        """(column key, descending)."""
        self.follow_first = True
        """The cursor stays on the first row (the newest job) until the user moves it: rows
        that arrive after the cached ones (a job launched while the app was closed) do not
        leave it on an older job."""

    def on_mount(self) -> None:
        self.set_interval(TICK_S, self._tick)

    # -- the user's moves (they end `follow_first`) ------------------------------------------

    def _user_moved(self) -> None:
        self.follow_first = False

    def _following_first(self) -> bool:
        """The cursor goes to the first row: the user has not moved it, nor has anything else."""
        return self.follow_first and self.cursor_row <= 0

    def action_cursor_up(self) -> None:
        self._user_moved()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self._user_moved()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self._user_moved()
        super().action_page_up()

    def action_page_down(self) -> None:
        self._user_moved()
        super().action_page_down()

    def action_scroll_top(self) -> None:
        self._user_moved()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self._user_moved()
        super().action_scroll_bottom()

    def on_click(self) -> None:
        self._user_moved()

    def _tick(self) -> None:
        # Only unfinished jobs move with the clock (and the age of stale rows).
        if self.stale or any(not row.job.is_terminal for row in self._rows):
            self.refresh_rows()

    def on_resize(self) -> None:
        self.refresh_rows()

    # -- reading ------------------------------------------------------------------------

    @property
    def job_ids(self) -> list[str]:
        """Job ids in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def all_rows(self) -> list[JobRow]:
        return self._rows

    @property
    def shown_columns(self) -> tuple[str, ...]:
        return self._layout.columns if self._layout else ()

    @property
    def selected_job_id(self) -> str | None:
        if not self.row_count:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        return str(self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)

    def cell_texts(self, job_id: str) -> dict[str, str]:
        """The shown cells of one row by column key, as plain text (tests, scripts)."""
        columns = self.shown_columns
        return {key: cell.plain for key, cell in zip(columns, self.get_row(job_id))}

    def view(self) -> View:
        return View(now=self.clock(), local=self.local, stale=self.stale, compact=self.compact)

    # -- changing what is shown -----------------------------------------------------------

    def select_job(self, job_id: str) -> bool:
        if job_id not in self._shown:
            return False
        self.follow_first = False
        self.move_cursor(row=self.get_row_index(job_id), animate=False)
        return True

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self.refresh_rows()

    def set_filter(self, text: str) -> None:
        if text != self.filter_text:
            self.filter_text = text
            self.refresh_rows()
            self.post_message(self.ViewChanged())

    def sort_on(self, key: str, descending: bool | None = None) -> None:
        """Sort on `key` (its own first direction unless given); the cursor stays on its job."""
        self.follow_first = False
        self.sort_by = (key, BY_KEY[key].descending if descending is None else descending)
        self.refresh_rows()
        self.post_message(self.ViewChanged())

    def next_sort(self) -> None:
        key = self.sort_by[0]
        following = SORT_CYCLE[(SORT_CYCLE.index(key) + 1) % len(SORT_CYCLE)] if key in SORT_CYCLE else SORT_CYCLE[0]
        self.sort_on(following)

    def reverse_sort(self) -> None:
        self.sort_on(self.sort_by[0], not self.sort_by[1])

    def toggle_mark(self, job_id: str) -> bool:
        """Mark or unmark a job; True when it is marked now."""
        if job_id in self.marks:
            self.marks.remove(job_id)
        else:
            self.marks.append(job_id)
        self.refresh_rows()
        self.post_message(self.ViewChanged())
        return job_id in self.marks

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts on it; a second click reverses."""
        event.stop()
        key = str(event.column_key.value)
        if key not in BY_KEY or key == "mark":
            return
        if key == self.sort_by[0]:
            self.reverse_sort()
        else:
            self.sort_on(key)

    def show_rows(self, rows: list[JobRow]) -> None:
        """A new list of every job (newest first): filter, sort and show it."""
        self._rows = rows
        known = {row.job.id for row in rows}
        self.marks = [job_id for job_id in self.marks if job_id in known]
        self.refresh_rows()

    def shown_rows(self, view: View | None = None) -> list[JobRow]:
        """The rows the filter lets through, in the chosen order."""
        view = view or self.view()
        terms = self.filter_text.lower().split()
        rows = [row for row in self._rows if matches(row, terms)]
        return sorted_rows(rows, self.sort_by[0], self.sort_by[1], view)

    def refresh_rows(self) -> None:
        """Add, update and remove rows in place; skip cells whose value did not change."""
        if not self.is_mounted:
            return
        view = self.view()
        rows = self.shown_rows(view)
        natural, widths = self._make_cells(rows, view)
        layout = self._plan(widths, len(rows))
        wanted = {job_id: self._fit(cells, layout) for job_id, cells in natural.items()}
        if layout != self._layout:
            self._rebuild(wanted, layout)
            return
        selected = self.selected_job_id
        for job_id in [j for j in self._shown if j not in wanted]:
            self.remove_row(job_id)
            del self._shown[job_id]
        for job_id, cells in wanted.items():
            old = self._shown.get(job_id)
            if old is None:
                self.add_row(*cells, key=job_id)
            elif old != cells:
                for column, new, previous in zip(layout.columns, cells, old):
                    if new != previous:
                        self.update_cell(job_id, column, new, update_width=True)
                        self.cell_updates += 1
            self._shown[job_id] = cells
        order = list(wanted)
        if self.job_ids != order:
            # DataTable sorts on cell values: map each shown id cell to its place.
            id_index = layout.columns.index("id")
            position = {cells[id_index].plain: index for index, cells in enumerate(wanted.values())}
            if len(position) < len(order):  # two shortened ids collide: show them in full
                self.compact = False
                self.refresh_rows()
                return
            self.sort("id", key=lambda cell: position[cell.plain])
        if self._following_first() and order:
            selected = order[0]
        if selected in wanted and self.selected_job_id != selected:
            self.move_cursor(row=order.index(selected), animate=False)

    def _make_cells(self, rows: list[JobRow], view: View) -> tuple[dict[str, dict[str, Text]], list[dict[str, int]]]:
        """Each row's cells and their widths, reusing those of a row that did not change."""
        marked = set(self.marks)
        made: dict[str, _Made] = {}
        natural = {}
        for row in rows:
            job_id = row.job.id
            key = (view.compact, view.local, view.stale, job_id in marked, stale_age(row, view))
            before = self._made.get(job_id)
            if before is not None and before.key == key and (before.row is row or before.row == row):
                entry = before if row.job.is_terminal else before.retimed(row, view)
            else:
                entry = _Made.of(row, key, static_cells(row, view, job_id in marked), timed_cells(row, view))
            made[job_id] = entry
            natural[job_id] = {**entry.static, **entry.timed}
        self._made = made
        return natural, [entry.widths for entry in made.values()]

    def _width(self, rows: int) -> int:
        width = self.size.width or self.app.size.width
        if rows + 1 > (self.size.height or self.app.size.height):  # a vertical scrollbar takes its share
            width -= self.styles.scrollbar_size_vertical
        return width

    def _plan(self, row_widths: list[dict[str, int]], rows: int) -> Layout:
        widths = {}
        for column in COLUMNS:
            label = cell_len(column.label) + (2 if column.key == self.sort_by[0] else 0)  # room for the sort arrow
            widths[column.key] = max([label, *(one[column.key] for one in row_widths)])
        columns, squeezed = plan_columns(widths, self._width(rows))
        return Layout(columns, squeezed, self.sort_by)

    @staticmethod
    def _fit(cells: dict[str, Text], layout: Layout) -> tuple[Text, ...]:
        if layout.fine_tuned_width is not None:
            name = cells["fine_tuned_model"]
            cells = {**cells, "fine_tuned_model": Text(middle_ellipsis(name.plain, layout.fine_tuned_width), style=name.style, end="")}
        return tuple(cells[key] for key in layout.columns)

    def _rebuild(self, wanted: dict[str, tuple[Text, ...]], layout: Layout) -> None:
        """New columns (the width, the sort or the cells' widths changed): build it again."""
        selected = self.selected_job_id
        self.clear(columns=True)
        for key in layout.columns:
            width = layout.fine_tuned_width if key == "fine_tuned_model" else None
            self.add_column(column_label(key, layout.sort), key=key, width=width)
        for job_id, cells in wanted.items():
            self.add_row(*cells, key=job_id)
        self._shown = dict(wanted)
        self._layout = layout
        if self._following_first() and wanted:
            selected = next(iter(wanted))
        if selected in wanted:
            self.move_cursor(row=list(wanted).index(selected), animate=False)


def describe_sort(sort: tuple[str, bool]) -> str:
    return f"{BY_KEY[sort[0]].label} {'▼' if sort[1] else '▲'}"


__all__ = ["JobsTable", "View", "row_cells", "short_id", "matches", "sorted_rows", "plan_columns", "describe_sort"]
