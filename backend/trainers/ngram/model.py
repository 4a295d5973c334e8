"""The n-gram model's weights on disk, and the size of its hashed feature table.

A model is one `.npz` file: the weight matrix `W[feature_row, vocabulary_id]`, the
vocabulary, and metadata (format, feature version, base model, rows, steps). SFT writes it,
DPO and RFT start from and write it, chat completions read it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .features import FEATURE_VERSION, Featurizer

MAX_VOCABULARY = 4096  # most frequent assistant tokens; rarer ones train as <unk>
PARAMETER_BUDGET = 4_000_000  # rows x vocabulary, float32: at most 16 MB per checkpoint
MIN_ROWS, MAX_ROWS = 1 << 10, 1 << 16
WEIGHTS_FORMAT = "tunedeck-ngram"


def hash_rows(vocabulary_size: int) -> int:
    """Feature rows: the largest power of two within the parameter budget, clamped."""
    rows = 1 << max(0, int(math.log2(PARAMETER_BUDGET / vocabulary_size)))
    return min(MAX_ROWS, max(MIN_ROWS, rows))


def save_weights(path: Path, featurizer: Featurizer, weights: np.ndarray, base_model: str, steps: int) -> None:
    """Write a model atomically (a reader never sees half a file)."""
    meta = {
        "format": WEIGHTS_FORMAT,
        "feature_version": FEATURE_VERSION,
        "base_model": base_model,
        "rows": featurizer.dim,
        "steps": steps,
    }
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            weights=weights,
            vocabulary=np.asarray(featurizer.vocabulary, dtype=str),
            meta=np.asarray(json.dumps(meta)),
        )
    os.replace(tmp, path)


def load_weights(path: Path) -> tuple[Featurizer, np.ndarray, dict]:
    """Read a saved model back: its featurizer, weight matrix and metadata."""
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        vocabulary = [str(token) for token in saved["vocabulary"]]
        weights = saved["weights"]
    if meta.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a {WEIGHTS_FORMAT} model")
    return Featurizer(vocabulary, int(meta["rows"])), weights, meta
