"""A built-in run's training state on disk: what `save_state` writes and a resumed run reads.

One `.npz` file: the arrays that change while training (the weights, the optimiser's
accumulators), the vocabulary they are indexed by, and a small JSON of the rest (the step,
the validation cursor, a random generator's state). Everything else a run holds (features,
reference log-probabilities) is rebuilt from the job's files, so the state stays as small
as the model itself. The vocabulary is kept to refuse a state that does not match the data
it would continue on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STATE_FORMAT = "tunedeck-ngram-state"


@dataclass(frozen=True, slots=True)
class RunState:
    arrays: dict[str, np.ndarray]
    values: dict[str, Any]


def save_run_state(
    path: Path, vocabulary: Sequence[str], arrays: dict[str, np.ndarray], values: dict[str, Any]
) -> None:
    """Write the state atomically (a temporary name, then a rename)."""
    meta = {"format": STATE_FORMAT, **values}
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            vocabulary=np.asarray(list(vocabulary), dtype=str),
            meta=np.asarray(json.dumps(meta)),
            **{f"array_{name}": array for name, array in arrays.items()},
        )
    os.replace(tmp, path)


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
