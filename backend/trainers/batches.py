"""Mini-batches for every built-in trainer: shuffled afresh at each epoch start."""

from __future__ import annotations

import math

import numpy as np


class EpochBatches:
    """Which examples each step trains on. The permutation is drawn from the run's own
    generator when an epoch starts, so a run (and a paused-and-resumed one) is
    reproducible from its seed."""

    def __init__(self, size: int, batch_size: int, rng: np.random.Generator) -> None:
        self.batch_size = max(1, min(batch_size, size))
        self.steps_per_epoch = math.ceil(size / self.batch_size)
        self._size = size
        self._rng = rng
        self._order = np.arange(size)

    def batch(self, steps_done: int) -> tuple[np.ndarray, bool]:
        """The example indices of the next step after `steps_done`, and whether it ends an epoch."""
        index = steps_done % self.steps_per_epoch
        if index == 0:
            self._order = self._rng.permutation(self._size)
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return chosen, index == self.steps_per_epoch - 1
