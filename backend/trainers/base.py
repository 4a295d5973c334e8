"""The contract between the job engine and whatever trains a model.

The engine knows nothing about models: it validates files, resolves hyperparameters, then
asks a `Trainer` for a `TrainingRun` and calls `step()` until `total_steps`, saving
checkpoints where the step's metrics say so. A trainer subclasses `Trainer` and its runs
subclass `TrainingRun`; every attribute the engine reads is declared below with its default,
so a new trainer is written against this file alone. Two implementations exist: the
built-in n-gram model (`trainers/ngram/`, in-process, CPU) and the transformer trainer
(`trainers/transformer/`, a worker process per run). Everything here is plain data, cheap to
import (no numpy, no torch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from ..compute import Device, DevicePool, DeviceRequest
from .options import TunedeckOptions


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call an assistant message makes: the name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One chat message reduced to what a text model trains on."""

    role: str
    text: str
    weight: int = 1  # 0 keeps an assistant message out of the loss (SFT `weight` key)
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls, after its text


@dataclass(frozen=True, slots=True)
class ChatExample:
    """One SFT example: its turns in order, and the names of the tools it offers."""

    turns: tuple[Turn, ...]
    tools: tuple[str, ...] = ()


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
    options: TunedeckOptions = field(default_factory=TunedeckOptions)  # the job's `tunedeck` extension field
    resume_from: Path | None = None
    """A run state written by `TrainingRun.save_state` (a crash-recovery or pause checkpoint):
    the run starts after that state's step, as if it had never stopped."""
    grader_endpoint: tuple[str, str] | None = None
    """(base URL, API key) of this backend's API, through which an RFT job's model graders
    (score_model, label_model) ask their model; None where none can be asked."""
    job_id: str | None = None
    """The job the run trains (where it runs is shown by job)."""
    devices: tuple[Device, ...] = ()
    """The devices the engine placed the run on (`compute.py`); empty: the trainer chooses
    (a trainer without a device pool, or a job driven by hand)."""


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


class TrainingRun(ABC):
    """One training run in progress. Not thread-safe: the engine calls it from one thread at a time."""

    total_steps: int
    steps_per_epoch: int
    checkpoint_suffix: str = ".npz"
    """Appended to `step-N` to name a checkpoint: a file suffix, or "" where checkpoints are folders."""
    seconds_per_step: float | None = None
    """The run's measured pace, where it measures one; the engine refines `estimated_finish` from it."""
    tokens_per_epoch: int | None = None
    """Trained tokens per epoch by the model's own tokenizer; None: the engine counts them itself."""
    resumable: bool = False
    """Whether `save_state` works and `Trainer.start` honours `TrainingSpec.resume_from`; the
    engine then checkpoints the run now and then, so a crash loses only the last few seconds."""

    @abstractmethod
    def step(self) -> StepMetrics:
        """Run the next optimisation step and report its metrics."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the current weights to `path` (atomically); the format is the trainer's."""

    def save_state(self, path: Path) -> None:
        """Write everything that continues this run exactly from its current step (weights,
        optimiser, random state) to `path`, a file or, with checkpoint_suffix "", a folder.
        Only called when `resumable`; the engine makes the write atomic and durable around it."""
        raise NotImplementedError(f"{type(self).__name__} cannot save its training state")

    def suspend(self, path: Path) -> None:
        """Pause: save a checkpoint to continue from. A run holding a process or a GPU frees it
        here and continues from `path` when stepped again; in-process runs just save."""
        self.save(path)

    def take_notices(self) -> list[tuple[str, str]]:
        """(level, text) messages for the job's events since the last call (truncated rows...)."""
        return []

    def place(self, devices: tuple[Device, ...]) -> None:
        """Continue on these devices: a run resumed after a pause may be placed elsewhere
        (a run that holds no device state ignores it)."""

    def close(self) -> None:
        """End the run's resources now (a worker process); in-process runs hold none."""


class Trainer(ABC):
    paced: bool = True
    """Whether the engine paces steps with its demo delay (`time_scale`); a trainer whose
    steps take real time says False."""
    devices: DevicePool | None = None
    """The devices its runs are placed on, one job per free device (`compute.py`); None:
    runs share the engine's slots, or `max_concurrent_runs` of their own."""
    max_concurrent_runs: int | None = None
    """Runs at once when there is no device pool (a cluster places them itself); None: the
    engine's shared slots."""
    catalog: ModelPlaces | None = None
    """Where the trainer finds base models on disk, if it looks anywhere (shown in errors)."""

    @abstractmethod
    def base_models(self) -> list[str]:
        """Model names this trainer can fine-tune (listed by `GET /v1/models`)."""

    @abstractmethod
    def supports(self, method: str) -> bool:
        """Whether it trains this method ("supervised", "dpo", "reinforcement")."""

    @abstractmethod
    def start(self, spec: TrainingSpec) -> TrainingRun:
        """Prepare a run (tokenise, build features). May take a while: called off the event loop."""

    def cluster_info(self) -> dict[str, Any] | None:
        """The cluster its runs go to, for the compute endpoint; None: this machine only."""
        return None

    def device_request(self, options: TunedeckOptions) -> DeviceRequest:
        """What a run with these options asks of `devices` (only read when the trainer has a pool)."""
        return DeviceRequest()

    def claims(self, model: str) -> bool:
        """Whether a job on `model`, which `base_models()` does not list, is still this
        trainer's (a Hugging Face id not downloaded yet: the job is created, then fails
        saying where the trainer looked)."""
        return False

    def model_details(self, model: str) -> dict[str, Any]:
        """What `GET /v1/models` says of a listed base model besides its id, under the
        `tunedeck` field (e.g. its size on disk and where it was found), for the launch form."""
        return {}


class ModelPlaces(Protocol):
    def searched(self) -> list[str]:
        """The places looked in for base models, in order."""
        ...


class TrainingFailure(Exception):
    """A trainer's clear reason to fail a job (a missing model, an optional package not
    installed, out of memory): the job fails with this code and message, not `internal_error`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def remove_weights(path: Path) -> None:
    """Delete a checkpoint: a file (built-in trainer) or a folder (transformer trainer)."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class UnsupportedMethod(Exception):
    """Raised by `Trainer.start` for a method it cannot train."""
