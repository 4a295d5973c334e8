"""The interface between the job engine and whatever trains a model.

The engine knows nothing about models: it validates files, resolves hyperparameters, then
asks a `Trainer` for a `TrainingRun` and calls `step()` until `total_steps`. The built-in
CPU trainer (`ngram.py`) is one implementation; a PyTorch trainer can plug in by offering
the same two methods. Everything here is plain data, cheap to import (no numpy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class Turn:
    """One chat message reduced to what a text model trains on."""

    role: str
    text: str
    weight: int = 1  # 0 keeps an assistant message out of the loss (SFT `weight` key)


@dataclass(frozen=True, slots=True)
class ChatExample:
    """One SFT example: its turns in order."""

    turns: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """Concrete values (no "auto" left): the engine resolves them before training."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific, e.g. DPO `beta`


@dataclass(frozen=True, slots=True)
class TrainingSpec:
    base_model: str  # a base model name (a job on a fine-tuned model names that model's base here)
    method: str  # "supervised" | "dpo" | "reinforcement"
    training: Sequence[Any]  # ChatExample for supervised; the validator's parsed lines otherwise
    validation: Sequence[Any]
    hyperparameters: Hyperparameters
    seed: int
    initial_weights: Path | None = None  # the fine-tuned model a job continues from, if any
    method_config: dict[str, Any] = field(default_factory=dict)  # the method's other settings: RFT `grader`...
    training_path: Path | None = None  # the files themselves, for trainers that read raw rows (transformers)
    validation_path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the job's `tunedeck` extension field


# The loss and accuracy keys of a metric event's `data`, as the API names them.
LOSS_FIELDS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


@dataclass(frozen=True, slots=True)
class StepMetrics:
    """What one optimisation step measured. Keys follow the API's metric event `data`.

    SFT and DPO fill the loss fields; RFT has no loss and reports rewards in `extra`
    (DPO adds its reward margins there too). A checkpoint is saved at each epoch's end,
    unless the run sets `checkpoint` itself (RFT: at each evaluation); `checkpoint_score`
    makes the engine keep the best-scoring checkpoints instead of the latest."""

    step: int  # 1-based
    total_steps: int
    train_loss: float | None
    train_mean_token_accuracy: float | None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    epoch_ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific event data
    summary: str = ""  # the event message's text after the losses, e.g. "train mean reward=0.42"
    checkpoint: bool | None = None  # None: at epoch ends
    checkpoint_score: float | None = None  # higher is better (RFT: the validation reward)

    @property
    def saves_checkpoint(self) -> bool:
        return self.epoch_ended if self.checkpoint is None else self.checkpoint

    def as_event_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "total_steps": self.total_steps}
        for key in LOSS_FIELDS:
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data.update(self.extra)
        return data


class TrainingRun(Protocol):
    """One training run in progress. Not thread-safe: the engine calls it from one thread at a time."""

    total_steps: int
    steps_per_epoch: int

    def step(self) -> StepMetrics:
        """Run the next optimisation step and report its metrics."""
        ...

    def save(self, path: Path) -> None:
        """Write the current weights to `path` (atomically); the format is the trainer's."""
        ...


class Trainer(Protocol):
    def base_models(self) -> list[str]:
        """Model names this trainer can fine-tune (listed by `GET /v1/models`)."""
        ...

    def supports(self, method: str) -> bool:
        ...

    def start(self, spec: TrainingSpec) -> TrainingRun:
        """Prepare a run (tokenise, build features). May take a while: called off the event loop."""
        ...


class TrainingFailure(Exception):
    """A trainer's clear reason to fail a job (a missing model, an optional package not
    installed, out of memory): the job fails with this code and message, not `internal_error`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def close_run(run: Any) -> None:
    """End a run's resources now (a transformer run's worker process); a no-op for in-process runs."""
    close = getattr(run, "close", None)
    if close is not None:
        close()


def take_notices(run: Any) -> list[tuple[str, str]]:
    """(level, text) messages a run has for the job's events since the last call (truncated rows...)."""
    take = getattr(run, "take_notices", None)
    return take() if take is not None else []


def remove_weights(path: Path) -> None:
    """Delete a checkpoint: a file (built-in trainer) or a folder (transformer trainer)."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class UnsupportedMethod(Exception):
    """Raised by `Trainer.start` for a method it cannot train."""
