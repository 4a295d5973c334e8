"""Supervised fine-tuning of the built-in model: a hashed-feature softmax over assistant tokens, trained by SGD.

For each assistant token it learns p(token | hashed features of the context) with one
weight matrix `W[feature_row, vocabulary_id]` (see `features.py` for the features).
Loss is the mean cross-entropy over the batch's assistant tokens, accuracy the token-level
argmax accuracy with teacher forcing, as in the API's metric events. It is small enough
to train a 500-example classification file in about half a second of CPU (a few seconds
for long free-text answers), and real enough that loss falls on learnable data and
overfits on tiny noisy sets.

Optimiser: SGD with row-wise Adagrad step sizes (each feature row's step shrinks with the
gradient it has seen), so rare, informative features (a cue word) learn as fast as the
always-on bias; learning rate `BASE_LEARNING_RATE * learning_rate_multiplier`, warmed up
linearly over the first `WARMUP_STEPS` steps (at most a tenth of the run), then constant.
(Without warmup, batch-size-1 steps overshoot: the loss jumps above its starting value.)
Weights start at zero (the untrained model is uniform: loss = ln(vocabulary size)), or at
a fine-tuned model's weights when a job continues one (new answer words get zero columns);
the seed only decides the order of examples, so a seed reproduces a run exactly, and a run
resumed from its saved state (`save_state`: weights, accumulators, step) continues it exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..base import ChatExample, StepMetrics, TrainingRun, TrainingSpec
from ..batches import EpochBatches
from . import kernels
from .features import Featurized, Featurizer, build_vocabulary
from .model import MAX_VOCABULARY, hash_rows, save_weights
from .policy import extend_vocabulary, load_model
from .run_state import RunState, RunStateMixin

BASE_LEARNING_RATE = 2.0
INITIAL_ACCUMULATOR = 0.1  # Adagrad: damps the very first steps of each row
WARMUP_STEPS = 30
VALID_EVALS_PER_EPOCH = 10  # cadence of the small-batch `valid_loss`
MIN_VALID_BATCH = 8  # examples in that small validation batch (at least the batch size)


class SftRun(RunStateMixin, TrainingRun):
    def __init__(self, spec: TrainingSpec) -> None:
        hyper = spec.hyperparameters
        vocabulary = build_vocabulary(spec.training, MAX_VOCABULARY)
        if spec.initial_weights is not None:  # continue training a fine-tuned model
            start = extend_vocabulary(load_model(spec.initial_weights), vocabulary)
            self.featurizer, self.weights = start.featurizer, start.weights
        else:
            self.featurizer = Featurizer(vocabulary, hash_rows(len(vocabulary)))
            self.weights = np.zeros((self.featurizer.dim, len(vocabulary)), dtype=np.float32)
        self._train = _featurize_all(self.featurizer, spec.training)
        self._valid = _featurize_all(self.featurizer, spec.validation)
        if not self._train:
            raise ValueError("the training file has no assistant message with weight 1 to learn from")
        self.base_model = spec.base_model
        self._accumulator = np.full(self.featurizer.dim, INITIAL_ACCUMULATOR, dtype=np.float32)
        self._learning_rate = BASE_LEARNING_RATE * hyper.learning_rate_multiplier
        self._batches = EpochBatches(len(self._train), hyper.batch_size, spec.seed)
        self._batch_size = self._batches.batch_size
        self.steps_per_epoch = self._batches.steps_per_epoch
        self.total_steps = self.steps_per_epoch * hyper.n_epochs
        self._warmup_steps = max(1, min(WARMUP_STEPS, self.total_steps // 10))
        self._steps_done = 0
        self._valid_every = max(1, self.steps_per_epoch // VALID_EVALS_PER_EPOCH)
        self._valid_batch = min(len(self._valid), max(self._batch_size, MIN_VALID_BATCH))
        self._valid_cursor = 0
        if spec.resume_from is not None:
            self._restore(spec.resume_from)

    # -- the TrainingRun interface ------------------------------------------------------

    def step(self) -> StepMetrics:
        if self._steps_done >= self.total_steps:
            raise RuntimeError("the run is already complete")
        chosen, epoch_ended = self._batches.batch(self._steps_done)
        loss, accuracy = self._sgd_step([self._train[i] for i in chosen])
        self._steps_done += 1
        valid_due = epoch_ended or self._steps_done % self._valid_every == 0
        valid = self._small_valid() if self._valid and valid_due else None
        full = self._score(self._valid) if self._valid and epoch_ended else None
        return StepMetrics(
            step=self._steps_done,
            total_steps=self.total_steps,
            train_loss=loss,
            train_mean_token_accuracy=accuracy,
            valid_loss=valid[0] if valid else None,
            valid_mean_token_accuracy=valid[1] if valid else None,
            full_valid_loss=full[0] if full else None,
            full_valid_mean_token_accuracy=full[1] if full else None,
            epoch_ended=epoch_ended,
        )

    def save(self, path: Path) -> None:
        save_weights(path, self.featurizer, self.weights, self.base_model, self._steps_done)

    # -- the saved state (RunStateMixin's hooks: save_state and _restore are the mixin's) -----

    def _state_vocabulary(self) -> Sequence[str]:
        return self.featurizer.vocabulary

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "accumulator": self._accumulator}

    def _state_values(self) -> dict[str, Any]:
        return {"valid_cursor": self._valid_cursor}

    def _restore_state(self, state: RunState) -> None:
        self.weights, self._accumulator = state.arrays["weights"], state.arrays["accumulator"]
        self._valid_cursor = int(state.values["valid_cursor"])

    # -- maths ----------------------------------------------------------------------------

    def _sgd_step(self, parts: Sequence[Featurized]) -> tuple[float, float]:
        """One update on the batch's mean cross-entropy; returns loss and accuracy before it."""
        positions = sum(p.n_positions for p in parts)
        loss = hits = 0.0
        rows, grads = [], []
        for chunk in kernels.chunks(parts, self.weights.shape[1]):
            probs = kernels.probabilities(self.weights, chunk)
            chunk_loss, chunk_hits = kernels.loss_sum_and_hits(probs, chunk.batch.targets)
            loss, hits = loss + chunk_loss, hits + chunk_hits
            probs[np.arange(chunk.batch.n_positions), chunk.batch.targets] -= 1.0  # now dloss/dlogits * positions
            probs /= positions
            rows.append(chunk.rows)
            grads.append(kernels.row_gradients(chunk, probs))
        touched, summed = kernels.merge_rows(rows, grads)
        self._accumulator[touched] += np.einsum("ij,ij->i", summed, summed)
        warmup = min(1.0, (self._steps_done + 1) / self._warmup_steps)
        step_sizes = self._learning_rate * warmup / np.sqrt(self._accumulator[touched])
        self.weights[touched] -= summed * step_sizes[:, None]
        return loss / positions, hits / positions

    def _small_valid(self) -> tuple[float, float]:
        """Score the next few validation examples (a rolling window, like the API's valid batch)."""
        picked = [(self._valid_cursor + i) % len(self._valid) for i in range(self._valid_batch)]
        self._valid_cursor = (self._valid_cursor + self._valid_batch) % len(self._valid)
        return self._score([self._valid[i] for i in picked])

    def _score(self, examples: Sequence[Featurized]) -> tuple[float, float]:
        """Mean loss and accuracy over every token of `examples` (no update)."""
        loss = hits = 0.0
        positions = 0
        for chunk in kernels.chunks(examples, self.weights.shape[1]):
            probs = kernels.probabilities(self.weights, chunk)
            chunk_loss, chunk_hits = kernels.loss_sum_and_hits(probs, chunk.batch.targets)
            loss, hits, positions = loss + chunk_loss, hits + chunk_hits, positions + chunk.batch.n_positions
        return loss / positions, hits / positions


def _featurize_all(featurizer: Featurizer, examples: Sequence[ChatExample]) -> list[Featurized]:
    """Featurised examples, leaving out those with nothing to learn (every answer weight 0)."""
    return [f for f in map(featurizer.example, examples) if f is not None]
