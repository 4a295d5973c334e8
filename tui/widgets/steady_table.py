"""A DataTable that, after a cell changes, renders again only that cell and its line.

Textual's DataTable keys its rendered cells on a counter bumped by every change, so one
changed cell renders every visible cell again: ~170 ms for a 50 x 13 table on a busy
2-core machine, once per poll while jobs run. Rich's rendering of each cell is the cost;
and putting each line together again costs about 1 ms more (50 ms a frame for 48 lines).
This table keeps its own caches of rendered cells and of whole lines, keyed on what their
look depends on (the row and column, their place, the widths, the cursor and hover where
they fall on that row, the styles) plus a version per cell and per row that `update_cell`
bumps. Changes that may move or restyle many cells (rows added or removed, columns, a
clear, a style or theme change) drop both caches, as the base class does.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, CellKey, ColumnKey, RowKey

CACHED_CELLS = 20_000
CACHED_LINES = 2_000


class SteadyTable(DataTable):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steady_cells: LRUCache[tuple[object, ...], Any] = LRUCache(CACHED_CELLS)
        self._cell_versions: dict[tuple[object, object], int] = {}
        self._steady_lines: LRUCache[tuple[object, ...], Strip] = LRUCache(CACHED_LINES)
        self._row_versions: dict[object, int] = {}
        self.cells_rendered = 0
        """Cells rendered by Rich (cache misses); tests check an update renders few."""

    def _drop_steady_cache(self) -> None:
        self._steady_cells.clear()
        self._cell_versions.clear()
        self._steady_lines.clear()
        self._row_versions.clear()

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        try:
            row_key, line_in_row = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        if row_key is self._header_row_key or row_key not in self._row_locations:
            return super()._render_line(y, x1, x2, base_style)
        row_index = self._row_locations.get(row_key)
        cursor, hover = self.cursor_coordinate, self.hover_coordinate
        key = (
            row_key,
            row_index,
            line_in_row,
            x1,
            x2,
            self.size.width,
            base_style,
            # The cursor and hover matter to this line only where they fall on its row (a
            # column cursor touches every row: then the whole coordinate counts).
            cursor if cursor.row == row_index or self.cursor_type == "column" else None,
            hover if hover.row == row_index or self.cursor_type == "column" else None,
            self.cursor_type,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
            self._row_versions.get(row_key, 0),
            tuple(column.get_render_width(self) for column in self.ordered_columns),
        )
        cached = self._steady_lines.get(key)
        if cached is None:
            cached = super()._render_line(y, x1, x2, base_style)
            self._steady_lines[key] = cached
        return cached

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
        row_key = row_key if isinstance(row_key, RowKey) else RowKey(row_key)
        column_key = column_key if isinstance(column_key, ColumnKey) else ColumnKey(column_key)
        if row_key not in self._row_locations or column_key not in self._column_locations:
            raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
        before = self._data[row_key][column_key]
        self._data[row_key][column_key] = value
        self._update_count += 1  # the base class's caches (row renderables, offsets) follow it
        cell = (row_key, column_key)
        self._cell_versions[cell] = self._cell_versions.get(cell, 0) + 1
        self._row_versions[row_key] = self._row_versions.get(row_key, 0) + 1
        if update_width and not self._width_kept(row_key, column_key, before, value):
            self._require_update_dimensions = True
            self.refresh()  # the column changed width: every line moves
            return
        # Only this row's lines are painted again (the base class repaints the whole table).
        self.refresh_row(self._row_locations.get(row_key))

    def _width_kept(self, row_key: RowKey, column_key: ColumnKey, before: Any, after: Any) -> bool:
        """Fit the column to a changed cell; True when its width stays. Text cells are measured
        by their cell length, the column again only when its widest cell got narrower: the base
        class measures every cell of the column through Rich whenever a cell gets narrower
        (230 ms for 50 rows: every poll, as elapsed times and progress change)."""
        column = self.columns[column_key]
        if not isinstance(before, Text) or not isinstance(after, Text):
            self._updated_cells.add(CellKey(row_key, column_key))  # measured by the base class
            return False
        width, old, new = column.content_width, before.cell_len, after.cell_len
        if new > width:
            column.content_width = new
            return False
        if new == old or old < width:
            return True
        cells = list(self.get_column(column_key))
        if not all(isinstance(cell, Text) for cell in cells):
            self._updated_cells.add(CellKey(row_key, column_key))
            return False
        label = column.label.cell_len if isinstance(column.label, Text) else len(str(column.label))
        column.content_width = max([label, *(cell.cell_len for cell in cells)])
        return column.content_width == width

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
