"""A DataTable that, after a cell changes, renders again only that cell.

Textual's DataTable keys its rendered cells on a counter bumped by every change, so one
changed cell renders every visible cell again: ~170 ms for a 50 x 13 table on a busy
2-core machine, once per poll while jobs run. Rich's rendering of each cell is the cost;
the line caches above it are cheap. This table keeps its own cache of rendered cells,
keyed on what the cell's look depends on (its row and column, its place, its width, the
cursor and hover, the styles) plus a version per cell that `update_cell` bumps. Changes
that may move or restyle many cells (rows added or removed, columns, a clear, a style or
theme change) drop the whole cache, as the base class does.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual.cache import LRUCache
from textual.widgets import DataTable

CACHED_CELLS = 20_000


class SteadyTable(DataTable):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steady_cells: LRUCache[tuple[object, ...], Any] = LRUCache(CACHED_CELLS)
        self._cell_versions: dict[tuple[object, object], int] = {}
        self.cells_rendered = 0
        """Cells rendered by Rich (cache misses); tests check an update renders few."""

    def _drop_steady_cache(self) -> None:
        self._steady_cells.clear()
        self._cell_versions.clear()

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        if row_index < 0 or column_index < 0:  # the header and row labels: as the base class does
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        key = (
            row_key,
            column_key,
            row_index,  # the rendered cell carries its place (mouse clicks read it)
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
            self._cell_versions.get((row_key, column_key), 0),
        )
        cached = self._steady_cells.get(key)
        if cached is None:
            self.cells_rendered += 1
            cached = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._steady_cells[key] = cached
        return cached

    def update_cell(self, row_key: Any, column_key: Any, value: Any, *, update_width: bool = False) -> None:
        super().update_cell(row_key, column_key, value, update_width=update_width)
        # Keys as the base class stores them (strings become RowKey/ColumnKey, equal by value).
        cell = (self._row_locations.get_key(self.get_row_index(row_key)), self._column_locations.get_key(self.get_column_index(column_key)))
        self._cell_versions[cell] = self._cell_versions.get(cell, 0) + 1

    def add_row(self, *args: Any, **kwargs: Any) -> Any:
        self._drop_steady_cache()
        return super().add_row(*args, **kwargs)

    def remove_row(self, row_key: Any) -> None:
        self._drop_steady_cache()
        super().remove_row(row_key)

    def add_column(self, *args: Any, **kwargs: Any) -> Any:
        self._drop_steady_cache()
        return super().add_column(*args, **kwargs)

    def remove_column(self, column_key: Any) -> None:
        self._drop_steady_cache()
        super().remove_column(column_key)

    def clear(self, columns: bool = False) -> Any:
        self._drop_steady_cache()
        return super().clear(columns)

    def notify_style_update(self) -> None:
        self._drop_steady_cache()
        super().notify_style_update()
