"""Mini-batches for every built-in trainer: shuffled afresh at each epoch start."""

from __future__ import annotations

import math

import numpy as np

BATCH_STREAM = 0x0BA7C4  # keeps the shuffles' random stream apart from any other drawn from the same seed


class EpochBatches:
    """Which examples each step trains on. Each epoch's permutation is drawn from the seed
    and the epoch number alone, so the batches of any step are known without replaying the
    steps before it: a run resumed from a checkpoint at step K (after a pause or a crash)
    trains on exactly the batches the uninterrupted run would have."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.batch_size = max(1, min(batch_size, size))
        self.steps_per_epoch = math.ceil(size / self.batch_size)
        self._size = size
        self._seed = seed
        self._epoch = -1
        self._order = np.arange(size)

    def batch(self, steps_done: int) -> tuple[np.ndarray, bool]:
        """The example indices of the next step after `steps_done`, and whether it ends an epoch."""
        epoch, index = divmod(steps_done, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([BATCH_STREAM, self._seed, epoch]).permutation(self._size)
            self._epoch = epoch
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return chosen, index == self.steps_per_epoch - 1
