"""The cached evaluation runs, newest first: id, when, data file, models, status (with how
far a running one got) and the best model's score. Rows are keyed by run id, so the cursor
stays on its run when the list is read again; progress changes one cell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import DataTable

from tunedeck.core.describe import short_time

from ..formatting import middle_ellipsis
from ..safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.evaluate.records import EvalProgress, EvalRunInfo
    from tunedeck.core.evaluate.results import EvalSummary

COLUMNS = ("run", "when", "data", "models", "status", "best")
WHEN_FROM = 110
"""Terminal widths from this many columns show when each run was made."""
STATUS_LOOKS = {
    "running": ("▶", "bold cyan"),
    "finished": ("✔", "green"),
    "cancelled": ("◼", "yellow"),
    "interrupted": ("⚠", "yellow"),
    "created": ("○", "dim"),
}
"""A glyph for each status, so the table reads without colour too."""


def status_cell(info: EvalRunInfo, progress: EvalProgress | None) -> Text:
    """`▶ running 30%`, `✔ finished`, `◼ cancelled 12%` (`2✖`: two answers failed); the
    panel under the table has the counts."""
    status = "running" if progress is not None else info.status
    glyph, style = STATUS_LOOKS.get(status, ("·", ""))
    done, total, errors = (progress.done, progress.total, progress.errors) if progress else (info.done, info.total, info.errors)
    text = Text(f"{glyph} {status}", style=style, end="")
    if status != "finished" and total:
        text.append(f" {done * 100 // total}%")
    if errors:
        text.append(f" {errors}✖", style="red")
    return text


def best_score(summary: EvalSummary | None) -> tuple[str, float] | None:
    """The model with the highest mean score (its label and the score), when any was graded."""
    if summary is None:
        return None
    scored = [(s.mean, s.key) for s in summary.scores if s.mean is not None]
    if not scored:
        return None
    mean, key = max(scored, key=lambda pair: pair[0])
    return key, mean


def best_cell(summary: EvalSummary | None) -> Text:
    best = best_score(summary)
    if best is None:
        return Text("-", style="dim", end="")
    key, mean = best
    text = Text(f"{mean:.2f} ", end="", no_wrap=True, overflow="ellipsis")
    text.append_text(one_line(key, "bold"))
    return text


def column_widths(width: int) -> dict[str, int]:
    """Each column's cells for a table `width` wide (`when` only when there is room): the
    data file and the models share what the others leave."""
    wide = width >= WHEN_FROM
    widths = {"run": 17 if wide else 13, "status": 20 if wide else 16, "best": 16 if wide else 14}
    if width >= WHEN_FROM:
        widths["when"] = 12
    shown = len(widths) + 2
    rest = max(16, width - 2 - 2 * shown - sum(widths.values()))
    widths["data"] = max(8, rest * 2 // 5)
    widths["models"] = max(8, rest - widths["data"])
    return {key: widths[key] for key in COLUMNS if key in widths}


def run_cells(
    info: EvalRunInfo, progress: EvalProgress | None, summary: EvalSummary | None, widths: dict[str, int]
) -> list[Text]:
    settings = info.settings
    labels = ", ".join(m.label for m in settings.models)
    cells = {
        "run": one_line(middle_ellipsis(info.id, widths["run"])),
        "when": Text(short_time(int(info.created_at)), end=""),
        "data": one_line(middle_ellipsis(PurePath(settings.data_path).name, widths["data"])),
        "models": Text(end="", no_wrap=True, overflow="ellipsis").append_text(one_line(labels)),
        "status": status_cell(info, progress),
        "best": best_cell(summary),
    }
    return [cells[key] for key in widths]


class EvalRunsTable(DataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.infos: dict[str, EvalRunInfo] = {}
        """The runs shown, by id, newest first."""
        self.widths: dict[str, int] = {}
        self._shown: tuple[Mapping[str, EvalProgress], Mapping[str, EvalSummary | None]] = ({}, {})

    def fit(self, width: int) -> None:
        """Columns for a terminal `width` wide (the rows drawn again when they change)."""
        widths = column_widths(width)
        if widths == self.widths:
            return
        self.widths = widths
        self.clear(columns=True)
        for key, cells in widths.items():
            self.add_column(key, key=key, width=cells)
        self.show_runs(list(self.infos.values()), *self._shown)

    @property
    def selected_run_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # no row under the cursor
            return None
        return str(key.value) if key.value is not None else None

    def show_runs(
        self,
        infos: Sequence[EvalRunInfo],
        running: Mapping[str, EvalProgress],
        summaries: Mapping[str, EvalSummary | None],
    ) -> None:
        """Every run anew, the cursor kept on the run it was on."""
        selected = self.selected_run_id
        self.infos = {info.id: info for info in infos}
        self._shown = (dict(running), dict(summaries))
        if not self.widths:
            return  # drawn once fitted to the screen
        self.clear()
        for info in infos:
            self.add_row(*run_cells(info, running.get(info.id), summaries.get(info.id), self.widths), key=info.id)
        if selected is not None:
            self.select_run(selected)

    def select_run(self, run_id: str) -> bool:
        if run_id not in self.infos:
            return False
        self.move_cursor(row=self.get_row_index(run_id), animate=False)
        return True

    def show_progress(self, info: EvalRunInfo, progress: EvalProgress | None) -> None:
        if info.id in self.infos and self.row_count:
            self.update_cell(info.id, "status", status_cell(info, progress))
