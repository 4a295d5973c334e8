"""A job's checkpoints: step, the metrics saved with each, and the model name to use it by.

`y` or enter copies the selected checkpoint's model name (OSC 52, see `tui/clipboard.py`).
Evaluating a checkpoint is not offered: tunedeck has no evaluation yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ..clipboard import copy
from ..formatting import middle_ellipsis
from ..safe_text import one_line

if TYPE_CHECKING:  # pragma: no cover
    from tunedeck.core.records import Checkpoint

METRIC_COLUMNS = (
    ("full_valid_loss", "full valid"),
    ("valid_loss", "valid"),
    ("train_loss", "train"),
    ("full_valid_mean_token_accuracy", "full acc"),
    ("valid_mean_token_accuracy", "valid acc"),
    ("valid_reward_mean", "valid reward"),
    ("full_valid_mean_reward", "full reward"),
    ("train_reward_mean", "train reward"),
    ("valid_mean_reward_margin", "valid margin"),
    ("train_mean_reward_margin", "margin"),
)
"""The metrics a checkpoint row shows when it has them, best judge of a checkpoint first."""
MAX_METRICS = 3
MODEL_MIN = 16
"""The fewest cells the model name is cut to (below that the table scrolls sideways)."""


def metric_columns(checkpoints: Sequence[Checkpoint]) -> list[tuple[str, str]]:
    """The (key, heading) of the metrics any of `checkpoints` reports, at most MAX_METRICS."""
    present = {key for c in checkpoints for key, value in c.metrics.items() if isinstance(value, (int, float))}
    return [(key, heading) for key, heading in METRIC_COLUMNS if key in present][:MAX_METRICS]


def metric_cell(value: object) -> Text:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Text("—", style="dim", end="")
    return Text(f"{value:.3f}", end="", justify="right")


class CheckpointTable(DataTable):
    BINDINGS = [
        Binding("y", "copy_checkpoint", "Copy checkpoint", tooltip="Copy the selected checkpoint's model name"),
        Binding("enter", "copy_checkpoint", "Copy checkpoint", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.checkpoints: list[Checkpoint] = []
        self.note = "checkpoints: none yet"
        self._fitted_width = -1
        """What the empty table says (none yet, or what the API answered)."""

    def show(self, checkpoints: Sequence[Checkpoint], note: str | None = None, *, force: bool = False) -> None:
        """Show `checkpoints` (newest first), keeping the cursor on the same checkpoint."""
        if note is not None:
            self.note = note
        checkpoints = list(checkpoints)
        if (
            [c.id for c in checkpoints] == [c.id for c in self.checkpoints]
            and checkpoints == self.checkpoints
            and self._fitted_width == self.size.width
            and not force
        ):
            self._update_title()
            return
        self._fitted_width = self.size.width
        selected = self.selected
        self.checkpoints = checkpoints
        self.clear(columns=True)
        metrics = metric_columns(checkpoints)
        self.add_column("step", key="step")
        for key, heading in metrics:
            self.add_column(heading, key=key)
        self.add_column("model", key="model")
        model_width = self._model_width(checkpoints, metrics)
        for checkpoint in checkpoints:
            cells = [Text(str(checkpoint.step), justify="right", end="")]
            cells.extend(metric_cell(checkpoint.metrics.get(key)) for key, _ in metrics)
            # Cut in the middle when narrow: the base at the head, `ckpt-step-N` at the tail.
            cells.append(one_line(middle_ellipsis(checkpoint.model, model_width)))
            self.add_row(*cells, key=checkpoint.id)
        if selected is not None and selected in checkpoints:
            self.move_cursor(row=checkpoints.index(selected))
        self._update_title()

    def _model_width(self, checkpoints: Sequence[Checkpoint], metrics: Sequence[tuple[str, str]]) -> int:
        """The cells the model column has left at this width (the whole name when it fits)."""
        longest = max((len(c.model) for c in checkpoints), default=0)
        if not self.size.width:
            return longest
        step_width = max(4, *(len(str(c.step)) for c in checkpoints)) if checkpoints else 4
        used = step_width + 2 + sum(max(len(heading), 6) + 2 for _, heading in metrics) + 2
        left = self.size.width - used - self.styles.scrollbar_size_vertical
        return max(MODEL_MIN, min(longest, left))

    def on_resize(self) -> None:
        if self.checkpoints and self._fitted_width != self.size.width:
            self.show(list(self.checkpoints), force=True)

    def _update_title(self) -> None:
        count = len(self.checkpoints)
        self.border_title = f"checkpoints ({count})" if count else "checkpoints"
        # The note can hold an API's error text: a Text, never parsed as markup.
        self.border_subtitle = Text("y copies the model name") if count else Text(self.note)

    @property
    def selected(self) -> Checkpoint | None:
        if not self.checkpoints or self.cursor_row < 0 or self.cursor_row >= len(self.checkpoints):
            return None
        return self.checkpoints[self.cursor_row]

    def action_copy_checkpoint(self) -> None:
        checkpoint = self.selected
        if checkpoint is None:
            self.app.notify("no checkpoint to copy yet", markup=False)
            return
        copy(self.app, checkpoint.model, f"checkpoint at step {checkpoint.step}")
