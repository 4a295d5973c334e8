"""A built-in run's training state on disk: what `save_state` writes and a resumed run reads.

One `.npz` file: the arrays that change while training (the weights, the optimiser's
accumulators), the vocabulary they are indexed by, and a small JSON of the rest (the step,
the validation cursor, a random generator's state). Everything else a run holds (features,
reference log-probabilities) is rebuilt from the job's files, so the state stays as small
as the model itself. The vocabulary is kept to refuse a state that does not match the data
it would continue on.

`RunStateMixin` is the runs' `save_state` and their restore: each saves its step, its
weights and optimiser accumulator, and through its hooks the values of its own (SFT and DPO
the validation cursor, RFT its random generator and the rewards since its last evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .policy import TokenModel
    from .sequences import RowAdagrad

STATE_FORMAT = "tunedeck-ngram-state"


@dataclass(frozen=True, slots=True)
class RunState:
    arrays: dict[str, np.ndarray]
    values: dict[str, Any]


def save_run_state(
    path: Path, vocabulary: Sequence[str], arrays: dict[str, np.ndarray], values: dict[str, Any]
) -> None:
    """Write the state to `path` directly: the engine writes it into a partial resume point
    and renames that into place (`jobs/resume_points.write_point`), which makes it atomic."""
    meta = {"format": STATE_FORMAT, **values}
    with path.open("wb") as handle:
        np.savez(
            handle,
            vocabulary=np.asarray(list(vocabulary), dtype=str),
            meta=np.asarray(json.dumps(meta)),
            **{f"array_{name}": array for name, array in arrays.items()},
        )


def load_run_state(path: Path, vocabulary: Sequence[str], arrays: dict[str, np.ndarray]) -> RunState:
    """Read a state saved for this run: `arrays` are the run's own, whose shapes and dtypes the
    saved ones must have. Raises ValueError for a state of another run (or no state at all)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            saved_vocabulary = [str(token) for token in saved["vocabulary"]]
            loaded = {name: saved[f"array_{name}"] for name in arrays}
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable training state: {exc}") from None
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a {STATE_FORMAT} file")
    if saved_vocabulary != list(vocabulary):
        raise ValueError(f"{path} was saved by a run over another vocabulary")
    for name, own in arrays.items():
        if loaded[name].shape != own.shape or loaded[name].dtype != own.dtype:
            raise ValueError(
                f"{path}: {name} is {loaded[name].shape} {loaded[name].dtype}, not {own.shape} {own.dtype}"
            )
    meta.pop("format")
    return RunState(loaded, meta)


class RunStateMixin:
    """`save_state` and the restore of a resumed run (`_restore`), for a `TrainingRun` that
    counts its steps in `_steps_done`. The hooks say what else it saves: `_state_arrays` (the
    live arrays, whose shapes and dtypes a saved state must have, over `_state_vocabulary`),
    `_state_values` (JSON values of its own) and `_restore_state` (takes both back)."""

    resumable = True
    _steps_done: int

    def save_state(self, path: Path) -> None:
        values = {"steps_done": self._steps_done, **self._state_values()}
        save_run_state(path, self._state_vocabulary(), self._state_arrays(), values)

    def _restore(self, path: Path) -> None:
        state = load_run_state(path, self._state_vocabulary(), self._state_arrays())
        self._steps_done = int(state.values["steps_done"])
        self._restore_state(state)

    def _state_vocabulary(self) -> Sequence[str]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _state_values(self) -> dict[str, Any]:
        return {}

    def _restore_state(self, state: RunState) -> None:
        raise NotImplementedError


class PolicyRunStateMixin(RunStateMixin):
    """The same for a run of a `TokenModel` trained by `RowAdagrad` (DPO, RFT): its weights, the
    accumulator and the optimiser's step count; subclasses add their own values with `super()`."""

    model: TokenModel
    _optimizer: RowAdagrad

    def _state_vocabulary(self) -> Sequence[str]:
        return self.model.vocabulary

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.model.weights, "accumulator": self._optimizer.accumulator}

    def _state_values(self) -> dict[str, Any]:
        return {"optimizer_steps": self._optimizer.steps}

    def _restore_state(self, state: RunState) -> None:
        self.model.weights = state.arrays["weights"]
        self._optimizer.restore(state.arrays["accumulator"], int(state.values["optimizer_steps"]))
