"""Compare screen: several jobs' curves of one metric overlaid, and their settings and
results side by side with the differences highlighted.

The series are read from the cache in a worker (`Service.cached_series`), which posts them
back as a message; the screen reads them again when a compared job moves on. `e` aligns
the curves by step or by epoch, `n` divides each by its first value, `m` picks the metric
(`[` and `]` step through them).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import Worker

from tunedeck.core.watch.compare import Comparison, aligned, compare

from ..safe_text import one_line
from ..state import AppState, host, pass_on_failure
from ..widgets.compare_chart import CompareChart, Curve, legend_text, look
from ..widgets.header import AppHeader
from ..widgets.jobs_table import short_id
from ..widgets.key_footer import KeyFooter

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import Job, JobRow
    from tunedeck.core.watch.overfit import Verdict
    from tunedeck.core.watch.series import MetricSeries

PREFERRED_METRICS = ("valid_loss", "train_loss", "full_valid_loss")
"""The metric shown first: validation loss says which run generalises; rewards for RFT."""
LOAD_WORKERS = "compare-load"


@dataclass(eq=False, repr=False)
class SeriesLoaded(Message):
    """The compared jobs as cached, with every metric of each (a worker read them)."""

    jobs: dict[str, Job]
    series: dict[str, MetricSeries]
    verdicts: dict[str, Verdict]


def n_epochs_of(job: Job, row: JobRow | None) -> int | None:
    if row is not None and row.n_epochs:
        return row.n_epochs
    value = job.hyperparameters.get("n_epochs")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def metric_columns(series: list[MetricSeries]) -> list[str]:
    """Every metric any of the jobs reported, in the order first seen."""
    seen: dict[str, None] = {}
    for one in series:
        for column in one.columns:
            seen.setdefault(column, None)
    return list(seen)


def default_metric(columns: list[str], series: list[MetricSeries]) -> str | None:
    """The first preferred metric every job has, else any job has, else a reward, else the first."""
    for needs_all in (True, False):
        for name in PREFERRED_METRICS:
            having = [name in one.columns for one in series]
            if name in columns and (all(having) if needs_all else any(having)):
                return name
    rewards = [c for c in columns if "reward" in c]
    return rewards[0] if rewards else (columns[0] if columns else None)


def same_text(text: object) -> object:
    """What a cell shows, for telling whether it changed (`Text ==` leaves out its style)."""
    if isinstance(text, Text):
        return text.plain, str(text.style), tuple(text.spans)
    return text


class CompareScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
        Binding("m", "pick_metric", "Metric", id="compare.metric", tooltip="Pick the metric to overlay"),
        Binding("right_square_bracket", "next_metric(1)", "Next metric", id="compare.next", show=False),
        Binding("left_square_bracket", "next_metric(-1)", "Previous metric", id="compare.previous", show=False),
        Binding("e", "toggle_epoch", "Step/epoch", id="compare.epoch", tooltip="Align the curves by step or by epoch"),
        Binding("n", "toggle_normalise", "Normalise", id="compare.normalise", tooltip="Divide each curve by its first value"),
    ]

    HELP = (
        "Compare: the marked jobs' curves of one metric on one plot, and their settings and results "
        "side by side (≠ and bold: the jobs differ there)."
    )

    def __init__(self, job_ids: list[str]) -> None:
        super().__init__()
        self.job_ids = list(job_ids)
        self.jobs: dict[str, Job] = {}
        self.series: dict[str, MetricSeries] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.comparison: Comparison | None = None
        self.metric: str | None = None
        self.by = "step"
        """"step" or "epoch": what the x axis counts."""
        self.normalise = False
        self.curves: list[Curve] = []
        """What the chart draws now (tests read it)."""
        self.loads = 0
        self._seen: dict[str, tuple[object, ...]] = {}

    def compose(self) -> ComposeResult:
        yield AppHeader(f"Compare · {len(self.job_ids)} jobs", id="header")
        yield Static(id="compare-controls")
        yield CompareChart(id="compare-chart")
        yield Static(id="compare-legend")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    @property
    def state(self) -> AppState:
        return host(self).state

    @property
    def chart(self) -> CompareChart:
        return self.query_one(CompareChart)

    def on_mount(self) -> None:
        self.state.rows_changed.subscribe(self, self._rows_changed)
        self._seen = self._row_marks(self.state.rows)
        self._show_controls()
        self.query_one("#compare-table", DataTable).focus()
        self._load()

    # -- loading ----------------------------------------------------------------------------

    def _row_marks(self, rows: list[JobRow]) -> dict[str, tuple[object, ...]]:
        wanted = set(self.job_ids)
        return {r.job.id: (r.step, r.job.status, r.verdict) for r in rows if r.job.id in wanted}

    def _rows_changed(self, rows: list[JobRow]) -> None:
        marks = self._row_marks(rows)
        if marks != self._seen:  # a compared job moved on: read its metrics again
            self._seen = marks
            self._load()

    @work(group=LOAD_WORKERS, exclusive=True, exit_on_error=False, description="read the compared jobs' metrics")
    async def _load(self) -> None:
        state = self.state
        service = state.service
        if service is None:
            return
        jobs: dict[str, Job] = {}
        series: dict[str, MetricSeries] = {}
        verdicts: dict[str, Verdict] = {}
        for job_id in self.job_ids:
            row = state.row(job_id)
            job = row.job if row is not None else await service.cached_job(job_id)
            if job is None:
                continue
            jobs[job_id] = job
            read = service.cached_series(job_id)
            series[job_id] = await read if inspect.isawaitable(read) else read
            if row is not None and row.verdict is not None:
                verdicts[job_id] = row.verdict
        self.post_message(SeriesLoaded(jobs, series, verdicts))

    def on_series_loaded(self, message: SeriesLoaded) -> None:
        message.stop()
        self.loads += 1
        self.jobs, self.series, self.verdicts = message.jobs, message.series, message.verdicts
        self.job_ids = [job_id for job_id in self.job_ids if job_id in self.jobs] + [
            job_id for job_id in self.job_ids if job_id not in self.jobs
        ]
        shown = [self.series[j] for j in self.job_ids if j in self.series]
        columns = metric_columns(shown)
        if self.metric not in columns:
            self.metric = default_metric(columns, shown)
        ordered = [self.jobs[j] for j in self.job_ids if j in self.jobs]
        self.comparison = compare(ordered, {j: self.series[j] for j in self.jobs}, self.verdicts or None)
        self._show_table()
        self._redraw()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if pass_on_failure(self, event):
            self.chart.set_curves([], x_label=self.by, y_label="", empty_note="could not read the metrics (see the error)")

    # -- drawing ----------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        return metric_columns([self.series[j] for j in self.job_ids if j in self.series])

    def label_of(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        suffix = str(job.raw.get("user_provided_suffix") or job.raw.get("suffix") or "") if job else ""
        return short_id(job_id) + (f" ({suffix})" if suffix else "")

    def build_curves(self) -> list[Curve]:
        curves = []
        for index, job_id in enumerate(self.job_ids):
            marker, colour = look(index)
            one = self.series.get(job_id)
            job = self.jobs.get(job_id)
            points: tuple[tuple[float, float], ...] = ()
            if one is not None and job is not None and self.metric in one.columns:
                n_epochs = n_epochs_of(job, self.state.row(job_id))
                points = tuple(
                    (float(x), float(y))
                    for x, y in aligned(one, self.metric, by=self.by, n_epochs=n_epochs, normalise=self.normalise)
                )
            curves.append(Curve(self.label_of(job_id), points, marker, colour))
        return curves

    def _redraw(self) -> None:
        self.curves = self.build_curves()
        if self.metric is None:
            note = "no metrics in these jobs yet" if self.loads else "loading…"
        else:
            note = f"no {self.metric} points" + (" by epoch (epoch counts unknown)" if self.by == "epoch" else "")
        y_label = f"{self.metric or ''}" + (" ÷ first" if self.normalise else "")
        self.chart.set_curves(self.curves, x_label=self.by, y_label=y_label, empty_note=note)
        self.query_one("#compare-legend", Static).update(legend_text(self.curves))
        self._show_controls()

    def controls_text(self) -> Text:
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append("metric ")
        text.append_text(one_line(self.metric or "-", "bold reverse"))
        text.append(" (m, [ ])", style="dim")
        text.append("  x: ")
        text.append("by epoch" if self.by == "epoch" else "by step", style="bold")
        text.append(" (e)", style="dim")
        text.append("  y: ")
        text.append("÷ first value" if self.normalise else "raw", style="bold")
        text.append(" (n)", style="dim")
        return text

    def _show_controls(self) -> None:
        self.query_one("#compare-controls", Static).update(self.controls_text())

    def table_content(self) -> tuple[list[tuple[str, Text]], list[list[Text]]]:
        """The table's columns (key, heading) and rows: settings, then results; a row where
        the jobs differ is marked ≠ and bold (reverse on its name), which reads without colour too."""
        comparison = self.comparison
        if comparison is None:
            return [], []
        columns = [("label", Text("", end=""))]
        for index, job_id in enumerate(comparison.job_ids):
            marker, _ = look(self.job_ids.index(job_id) if job_id in self.job_ids else index)
            columns.append((f"job{index}", one_line(f"{marker} {short_id(job_id)}", "bold")))
        rows: list[list[Text]] = []
        for section, compared in (("settings", comparison.settings), ("results", comparison.results)):
            heading = Text(section, style="bold underline", end="")
            rows.append([heading, *(Text("", end="") for _ in comparison.job_ids)])
            for row in compared:
                label = Text(end="")
                label.append("≠ " if row.differs else "  ", style="bold")
                label.append_text(one_line(row.label, "bold reverse" if row.differs else ""))
                rows.append([label, *(one_line(value, "bold" if row.differs else "") for value in row.values)])
        return columns, rows

    def _show_table(self) -> None:
        """Show `table_content`, changing only what changed: while a compared job runs this
        happens on every step it takes, and the cursor and the scroll position stay put."""
        table = self.query_one("#compare-table", DataTable)
        columns, rows = self.table_content()
        shown = [(str(key.value), same_text(column.label)) for key, column in table.columns.items()]
        if shown != [(key, same_text(heading)) for key, heading in columns]:
            self._rebuild_table(table, columns, rows)
            return
        # Same columns: rows are keyed by position, so the rows both versions have are
        # updated cell by cell, new ones added at the end and gone ones taken off it.
        for index in range(table.row_count - 1, len(rows) - 1, -1):
            table.remove_row(f"row{index}")
        for index, cells in enumerate(rows):
            if index >= table.row_count:
                table.add_row(*cells, key=f"row{index}")
                continue
            for (column_key, _), cell in zip(columns, cells):
                if same_text(table.get_cell(f"row{index}", column_key)) != same_text(cell):
                    table.update_cell(f"row{index}", column_key, cell, update_width=True)

    @staticmethod
    def _rebuild_table(table: DataTable, columns: list[tuple[str, Text]], rows: list[list[Text]]) -> None:
        """Everything anew (the jobs shown changed), keeping the cursor and the scroll position."""
        cursor, scroll = table.cursor_coordinate, (table.scroll_x, table.scroll_y)
        had_rows = table.row_count > 0
        table.clear(columns=True)
        for key, heading in columns:
            table.add_column(heading, key=key)
        for index, cells in enumerate(rows):
            table.add_row(*cells, key=f"row{index}")
        if had_rows and rows:
            row, column = min(cursor.row, len(rows) - 1), min(cursor.column, len(columns) - 1)
            table.move_cursor(row=row, column=column, scroll=False)
            # The new size is worked out when the table next refreshes; scroll after that.
            table.call_after_refresh(table.scroll_to, *scroll, animate=False)

    # -- keys -------------------------------------------------------------------------------

    def action_toggle_epoch(self) -> None:
        self.by = "step" if self.by == "epoch" else "epoch"
        self._redraw()

    def action_toggle_normalise(self) -> None:
        self.normalise = not self.normalise
        self._redraw()

    def action_next_metric(self, step: int) -> None:
        columns = self.columns
        if not columns:
            return
        index = columns.index(self.metric) if self.metric in columns else -step
        self.set_metric(columns[(index + step) % len(columns)])

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        self._redraw()

    def action_pick_metric(self) -> None:
        columns = self.columns
        if not columns:
            self.notify("no metrics in these jobs yet", markup=False)
            return
        from .pick import PickScreen

        def picked(name: str | None) -> None:
            if name:
                self.set_metric(name)

        labels = {name: f"{'▶ ' if name == self.metric else '  '}{name}" for name in columns}
        self.app.push_screen(PickScreen("Metric to overlay", labels), picked)
