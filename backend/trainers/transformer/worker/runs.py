"""What every transformer training run shares (worker side): loading the starting model,
LoRA or full fine-tuning, the optimiser and schedule, batches, validation cadence, checkpoints
and exact resume after a pause or from a crash-recovery checkpoint. `sft.py`, `dpo.py` and
`rft.py` add their method's data and loss.

Learning rate: `BASE_LEARNING_RATES[training type] * learning_rate_multiplier`, warmed up
linearly over the first `WARMUP_FRACTION` of the run, then decayed linearly towards zero
(the schedule TRL uses by default). AdamW, no weight decay, gradients clipped at 1.0.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from tunedeck.backend.trainers.batches import EpochBatches
from tunedeck.backend.trainers.options import DEFAULT_MAX_LENGTH, TunedeckOptions

from .encoding import ChatEncoder
from .loading import (
    TRAINER_STATE,
    BaseModel,
    TrainingFailure,
    add_lora,
    choose_device,
    dtype_for,
    load_base,
    load_checkpoint,
    load_tokenizer,
    parameter_count,
    resolve_training_type,
    save_checkpoint,
)

BASE_LEARNING_RATES = {"lora": 2e-4, "full": 2e-5}
WARMUP_FRACTION = 0.05
MAX_GRAD_NORM = 1.0
VALID_EVALS_PER_EPOCH = 10
MIN_VALID_BATCH = 8
Notice = Callable[..., None]  # (text, level='info')


def read_rows(path: str | None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a JSONL file the server has validated already."""
    if not path:
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append((number, json.loads(line)))
    return rows


class Run:
    """A run in progress. Subclasses set `n_train` in `prepare()` and implement `train_on` and `validate`."""

    n_train: int
    tokens_per_epoch: int = 0  # the training file's tokens by the model's own tokenizer (billing's `trained_tokens`)

    def __init__(self, spec: dict[str, Any], notice: Notice) -> None:
        self.spec = spec
        self.notice = notice
        self.options = TunedeckOptions.from_json(spec.get("options"))
        hyper = spec["hyperparameters"]
        self.hyper = hyper
        self.resuming = spec.get("resume")
        torch.manual_seed(spec["seed"])  # before LoRA's random initialisation, so a seed repeats a run
        self.device = choose_device(self.options.device)
        self.base = BaseModel.from_json(spec["base"])
        self.model, self.tokenizer, self.training_type = self._load_model()
        self.encoder = ChatEncoder(self.tokenizer, self.base.name, self._max_length())
        self.prepare()
        self.report_located_by_text()
        self.batches = EpochBatches(self.n_train, int(hyper["batch_size"]), int(spec["seed"]))
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = self.steps_per_epoch * int(hyper["n_epochs"])
        self.steps_done = 0
        self.learning_rate = BASE_LEARNING_RATES[self.training_type] * float(hyper["learning_rate_multiplier"])
        self.trainable = trainable = [p for p in self.model.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(trainable, lr=self.learning_rate, weight_decay=0.0, fused=fused)
        self.valid_every = max(1, self.steps_per_epoch // VALID_EVALS_PER_EPOCH)
        self._valid_cursor = 0
        if self.resuming:
            self._resume(Path(self.resuming["checkpoint"]))
        self._announce(trainable)

    def autocast(self) -> Any:
        """bf16 compute on CUDA (weights that train stay fp32); plain fp32 on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    # -- set-up -------------------------------------------------------------------------------

    def _load_model(self) -> tuple[Any, Any, str]:
        """The starting weights: a paused run's checkpoint, a fine-tuned model the job continues,
        or the base model; then LoRA adapters or fp32 master weights for the whole model."""
        start = self.resuming["checkpoint"] if self.resuming else self.spec.get("initial_weights")
        if start:
            model, meta = load_checkpoint(Path(start), self.device, trainable=True)
            tokenizer = load_tokenizer(Path(start))
            if meta["adapter"]:  # an adapter keeps training on the base it was trained on
                self.base = BaseModel.from_json(meta["base"])
                return model, tokenizer, "lora"
            if self.resuming:
                return _master_weights(model, self.device), tokenizer, "full"
        else:
            model = load_base(self.base, self.device)
            tokenizer = load_tokenizer(self.base.path, self.base.gguf_file)
        training_type = resolve_training_type(self.options.training_type, model)
        if training_type == "full":
            return _master_weights(model, self.device), tokenizer, training_type
        if start:  # a whole fine-tuned model is the base of the new adapter
            self.base = BaseModel(self.base.name, Path(start))
            model = model.to(dtype_for(self.device))  # loaded in fp32 for exactness; frozen now
        return add_lora(model, self.options), tokenizer, training_type

    def _max_length(self) -> int:
        context = getattr(self.model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
        return max(16, min(self.options.max_length, context))

    def _announce(self, trainable: list[torch.nn.Parameter]) -> None:
        count = sum(p.numel() for p in trainable)
        total = parameter_count(self.model)
        kind = "LoRA" if self.training_type == "lora" else "full fine-tuning"
        precision = "fp32"
        if self.device.type == "cuda":
            precision = "bf16 compute, fp32 " + ("adapters" if self.training_type == "lora" else "master weights")
        self.notice(
            f"Training {self.base.name} on {self.device.type} ({precision}) with {kind}: "
            f"{count:,} of {total:,} parameters trainable, learning rate {self.learning_rate:.2e}"
        )

    def report_located_by_text(self) -> None:
        if self.encoder.located_by_text:
            self.notice(
                f"The chat template of {self.base.name} renders earlier turns differently from the last one; "
                f"in {self.encoder.located_by_text} examples the assistant tokens were found by their text",
                "warn",
            )

    def warn_truncated(self, encoded: list[Any], purpose: str) -> None:
        truncated = [e.line for e in encoded if e.truncated]
        if truncated:
            lines = ", ".join(map(str, truncated[:10])) + (" ..." if len(truncated) > 10 else "")
            self.notice(
                f"{len(truncated)} of {len(encoded)} {purpose} examples are longer than "
                f"{self.encoder.max_length} tokens and were truncated (lines {lines})",
                "warn",
            )

    # -- one step --------------------------------------------------------------------------------

    def step(self) -> dict[str, Any]:
        indices, epoch_ended = self.batches.batch(self.steps_done)
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate_at(self.steps_done)
        self.model.train()
        with self.autocast():
            metrics = self.train_on([int(i) for i in indices])
        torch.nn.utils.clip_grad_norm_(self.trainable, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics.update(self.after_step(epoch_ended))
        return {"step": self.steps_done, "total_steps": self.total_steps, "epoch_ended": epoch_ended, **metrics}

    def rate_at(self, steps_done: int) -> float:
        warmup = max(1, math.ceil(self.total_steps * WARMUP_FRACTION))
        if steps_done < warmup:
            return self.learning_rate * (steps_done + 1) / warmup
        remaining = (self.total_steps - steps_done) / max(1, self.total_steps - warmup)
        return self.learning_rate * max(0.0, remaining)

    def valid_batch(self, size: int) -> list[int]:
        """The next `size` validation examples, in turn (a small, rotating `valid_loss` batch)."""
        n = self.n_valid
        chosen = [(self._valid_cursor + k) % n for k in range(min(size, n))]
        self._valid_cursor = (self._valid_cursor + len(chosen)) % max(1, n)
        return chosen

    # -- method hooks -----------------------------------------------------------------------------

    n_valid: int = 0

    def prepare(self) -> None:
        raise NotImplementedError

    def train_on(self, indices: list[int]) -> dict[str, Any]:
        """Forward and backward for one batch; returns the step's training metrics."""
        raise NotImplementedError

    def after_step(self, epoch_ended: bool) -> dict[str, Any]:
        """Validation metrics due after this step (called under no_grad)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, path: Path, with_state: bool) -> None:
        meta = {
            "adapter": self.training_type == "lora",
            "base": self.base.as_json(),
            "method": self.spec["method"],
            "step": self.steps_done,
        }
        state = None
        if with_state:
            state = {
                "steps_done": self.steps_done,
                "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "valid_cursor": self._valid_cursor,
                **self.extra_state(),
            }
        save_checkpoint(self.model, self.tokenizer, path, meta, state)

    def _resume(self, checkpoint: Path) -> None:
        """Continue a paused run (its weights are loaded already): optimiser, random state,
        place in the data (the batches depend on the seed and the step alone). A pause
        checkpoint's state file is removed afterwards (the checkpoint stays a model); a
        crash-recovery checkpoint (`keep_state`) keeps it, as a second crash may need it."""
        state_file = checkpoint / TRAINER_STATE
        try:
            state = torch.load(state_file, map_location=self.device, weights_only=False)
        except (OSError, RuntimeError) as exc:
            raise TrainingFailure("internal_error", f"cannot read the pause checkpoint {checkpoint}: {exc}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self._valid_cursor = state["valid_cursor"]
        self.steps_done = state["steps_done"]
        self.load_extra_state(state)
        if not self.resuming.get("keep_state"):
            state_file.unlink(missing_ok=True)  # optimiser state can be twice the model: not kept forever


def _master_weights(model: Any, device: torch.device) -> Any:
    """Whole-model training keeps fp32 weights (bf16 cannot hold lr-sized updates); autocast
    runs the maths in bf16."""
    return model.float() if device.type == "cuda" else model
