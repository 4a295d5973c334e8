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
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

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
    compile_layers,
    dtype_for,
    load_base,
    load_checkpoint,
    load_tokenizer,
    parameter_count,
    resolve_training_type,
    save_checkpoint,
)
from .precision import MasterAdamW, PlainAdamW, uses_master_weights
from .scoring import Packed, Scores, SftLoss, score, sft_loss
from .sharding import shard_model, shard_optimizer_state, wants_sharding, whole_state, whole_weights

if TYPE_CHECKING:  # pragma: no cover
    from .distributed import Parallel

BASE_LEARNING_RATES = {"lora": 2e-4, "full": 2e-5}
WARMUP_FRACTION = 0.05
MAX_GRAD_NORM = 1.0
VALID_EVALS_PER_EPOCH = 10
MIN_VALID_BATCH = 8
# torch.compile of the decoder layers and the loss (CUDA) costs ~15 s once and speeds steps up
# (H100, 0.5B whole model: 68k -> 110k tokens/s on 2048-token and on packed rows), so it pays
# after a few million tokens: on from this many trained tokens (`TUNEDECK_COMPILE=1`/`0` forces it).
COMPILE_FROM_TOKENS = 5_000_000
Notice = Callable[..., None]  # (text, level='info')
T = TypeVar("T")


def _quiet(text: str, level: str = "info") -> None:
    """The notices of ranks other than 0: rank 0 says what the run does, once."""


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

    def __init__(self, spec: dict[str, Any], notice: Notice, parallel: Parallel | None = None) -> None:
        """`parallel`: this rank's place when the job trains on several devices (`distributed.py`)."""
        self.spec = spec
        self.parallel = parallel
        self.notice = notice if parallel is None or parallel.leader else _quiet
        self.options = TunedeckOptions.from_json(spec.get("options"))
        hyper = spec["hyperparameters"]
        self.hyper = hyper
        self.resuming = spec.get("resume")
        torch.manual_seed(spec["seed"])  # before LoRA's random initialisation, so a seed repeats a run
        self.device = choose_device(self.options.device)
        self.base = BaseModel.from_json(spec["base"])
        early = self._early_encoder()
        encoding = None
        if early is not None and type(self).encode_data is not Run.encode_data:
            # tokenise while the weights load (the tokenizer and the loader mostly run outside the GIL)
            pool = ThreadPoolExecutor(1, thread_name_prefix="tunedeck-encode")
            encoding = pool.submit(self.encode_data, early)
            pool.shutdown(wait=False)
        # A job on several GPUs loads into host memory first: sharded, each GPU gets only its share.
        on_host = parallel is not None and self.device.type == "cuda"
        self.model, self.tokenizer, self.training_type = self._load_model(early.tokenizer if early else None, on_host)
        self.sharded = parallel is not None and wants_sharding(
            self.options.sharding, self.training_type, parameter_count(self.model), self.device, spec["method"]
        )
        if self.sharded:
            assert parallel is not None
            shard_model(self.model, self.device, parallel.world)
        elif on_host:
            self.model.to(self.device)
        self.master_weights = not self.sharded and uses_master_weights(self.device, self.training_type)
        self._exact_masters: list[torch.Tensor] | None = None
        if self.master_weights:
            if any(p.dtype == torch.float32 for p in self.model.parameters()):
                # weights loaded in fp32 (a fine-tuned whole model): they are the masters, exactly
                self._exact_masters = [p.detach() for p in self.model.parameters() if p.requires_grad]
            self.model.to(dtype_for(self.device))
        if encoding is not None:
            self.encoder = early
            encoding.result()  # its failure (e.g. a template refused) is the run's
        else:
            self.encoder = ChatEncoder(self.tokenizer, self.base.name, self._max_length())
            self.encode_data(self.encoder)
        self.prepare()
        self.report_located_by_text()
        self.compiled = self._maybe_compile()
        self.batches = EpochBatches(self.n_train, int(hyper["batch_size"]), int(spec["seed"]))
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = self.steps_per_epoch * int(hyper["n_epochs"])
        self.steps_done = 0
        self.learning_rate = BASE_LEARNING_RATES[self.training_type] * float(hyper["learning_rate_multiplier"])
        self.trainable = trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer(trainable)
        self.valid_every = max(1, self.steps_per_epoch // VALID_EVALS_PER_EPOCH)
        self._valid_cursor = 0
        if self.resuming:
            self._resume(Path(self.resuming["checkpoint"]))
        self._announce(trainable)

    def autocast(self) -> Any:
        """bf16 compute on CUDA: LoRA's fp32 adapters under autocast, a whole model in bf16
        weights (its fp32 masters are the optimiser's); plain fp32 on the CPU."""
        if self.device.type == "cuda" and not self.master_weights and not self.sharded:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()  # sharded: FSDP gathers the fp32 weights in bf16 (`sharding.py`)

    def loss_of(self, packed: Packed) -> SftLoss:
        """The SFT loss of `packed` (a collective when the model is sharded)."""
        return self.model.tunedeck_sft_loss(packed) if self.sharded else sft_loss(self.model, packed)

    def scores_of(self, packed: Packed) -> Scores:
        """The log-probabilities of `packed`'s targets (a collective when the model is sharded)."""
        return self.model.tunedeck_score(packed) if self.sharded else score(self.model, packed)

    def shares(self, chunks: list[list[T]]) -> Iterator[tuple[list[T], bool]]:
        """This rank's part of each of `chunks` (the same chunks on every rank), and whether it
        is a stand-in: a sharded model's ranks must all run every pass, so a rank with no part
        of a chunk scores its first item and ignores the result. One process: the chunks."""
        for chunk in chunks:
            share = chunk if self.parallel is None else self.parallel.shard(chunk)
            if share:
                yield share, False
            elif self.sharded and chunk:
                yield chunk[:1], True

    def sum_across_ranks(self, values: torch.Tensor) -> torch.Tensor:
        """`values` added up over the ranks (the values themselves in one process)."""
        return values if self.parallel is None else self.parallel.sum_tensor(values)

    def _optimizer(self, trainable: list[torch.nn.Parameter]) -> PlainAdamW | MasterAdamW:
        fused = self.device.type == "cuda"
        if not self.master_weights:
            return PlainAdamW(trainable, self.learning_rate, fused)
        masters, self._exact_masters = self._exact_masters, None
        return MasterAdamW(trainable, self.learning_rate, fused, masters)

    # -- set-up -------------------------------------------------------------------------------

    def _start(self) -> str | None:
        return self.resuming["checkpoint"] if self.resuming else self.spec.get("initial_weights")

    def _early_encoder(self) -> ChatEncoder | None:
        """The chat encoder before the model is loaded, from the folder's tokenizer and config
        (a whole model's folder); None where only the loaded model says (an adapter, GGUF)."""
        start = self._start()
        folder = Path(start) if start else self.base.path
        if (self.base.gguf_file and not start) or not (folder / "config.json").is_file():
            return None
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(folder)
        return ChatEncoder(load_tokenizer(folder), self.base.name, self._max_length(config))

    def _load_model(self, tokenizer: Any = None, on_host: bool = False) -> tuple[Any, Any, str]:
        """The starting weights: a paused run's checkpoint, a fine-tuned model the job continues,
        or the base model; then LoRA adapters, or the whole model (`_optimizer` keeps its fp32 masters).
        `tokenizer`: the starting folder's, when loaded already. `on_host`: left in host memory,
        in the device's precision (the caller places it)."""
        start = self._start()
        if start:
            model, meta = load_checkpoint(Path(start), self.device, trainable=True, on_host=on_host)
            tokenizer = tokenizer or load_tokenizer(Path(start))
            if meta["adapter"]:  # an adapter keeps training on the base it was trained on
                self.base = BaseModel.from_json(meta["base"])
                return model, tokenizer, "lora"
            if self.resuming:
                return model, tokenizer, "full"
        else:
            model = load_base(self.base, self.device, on_host)
            tokenizer = tokenizer or load_tokenizer(self.base.path, self.base.gguf_file)
        training_type = resolve_training_type(self.options.training_type, model)
        if training_type == "full":
            return model, tokenizer, training_type
        if start:  # a whole fine-tuned model is the base of the new adapter
            self.base = BaseModel(self.base.name, Path(start))
            model = model.to(dtype_for(self.device))  # loaded in fp32 for exactness; frozen now
        return add_lora(model, self.options), tokenizer, training_type

    def _maybe_compile(self) -> bool:
        wanted = os.environ.get("TUNEDECK_COMPILE", "auto")
        if wanted == "auto":
            tokens = self.tokens_per_epoch * int(self.hyper["n_epochs"])
            on = self.device.type == "cuda" and tokens >= COMPILE_FROM_TOKENS
        else:
            on = wanted not in ("0", "", "false", "no")
        if on:
            layers = compile_layers(self.model)
            self.notice(f"Compiling the model's {layers} layers with torch.compile (once, at the first steps)")
        return on

    def _max_length(self, config: Any = None) -> int:
        config = config if config is not None else self.model.config
        context = getattr(config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
        return max(16, min(self.options.max_length, context))

    def _announce(self, trainable: list[torch.nn.Parameter]) -> None:
        count = sum(p.numel() for p in trainable)
        total = parameter_count(self.model)
        kind = "LoRA" if self.training_type == "lora" else "full fine-tuning"
        precision = "fp32"
        if self.device.type == "cuda":
            kept = "adapters" if self.training_type == "lora" else "master weights in the optimiser"
            precision = f"bf16 compute, fp32 {kept}"
        if self.sharded:
            assert self.parallel is not None
            precision += f", weights sharded across {self.parallel.world} devices (FSDP)"
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
        chosen = [int(i) for i in indices]
        if self.parallel is not None:
            chosen = self.parallel.shard(chosen)
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate_at(self.steps_done)
        self.model.train()
        with self.autocast():
            metrics = self.train_on(chosen)
        if self.parallel is not None and not self.sharded:  # sharded: FSDP reduced them in the backward pass
            self.parallel.sum_gradients(self.trainable)
        self.optimizer.clip_and_step(MAX_GRAD_NORM)
        self.steps_done += 1
        self.model.eval()  # every rank validates its share (`evaluate`); rank 0 reports
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

    def encode_data(self, encoder: ChatEncoder) -> None:
        """Read and tokenise the method's files with `encoder` (no model needed: it may run in a
        thread while the model loads). Methods that need the model to prepare do it in `prepare`."""

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
        """Rank 0 writes the checkpoint; with a sharded model every rank calls this, as the
        whole tensors are gathered from every rank's shards."""
        if self.parallel is not None and not self.parallel.leader and not self.sharded:
            return
        weights = None
        if self.sharded:
            weights = whole_weights(self.model)
            if not with_state:  # a model to use, in the precision it runs in (a pause keeps fp32, to resume exactly)
                weights = {name: value.to(dtype_for(self.device)) for name, value in weights.items()}
        optimizer = None
        if with_state:
            optimizer = self.optimizer.state_dict()
            if self.sharded:
                optimizer = whole_state(optimizer)
        if self.parallel is not None and not self.parallel.leader:
            return
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
                "optimizer": optimizer,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "valid_cursor": self._valid_cursor,
                **self.extra_state(),
            }
        save_checkpoint(self.model, self.tokenizer, path, meta, state, weights)

    def _resume(self, checkpoint: Path) -> None:
        """Continue a paused run (its weights are loaded already): optimiser, random state,
        place in the data (the batches depend on the seed and the step alone). A pause
        checkpoint's state file is removed afterwards (the checkpoint stays a model); a
        crash-recovery checkpoint (`keep_state`) keeps it, as a second crash may need it."""
        state_file = checkpoint / TRAINER_STATE
        try:
            # sharded: whole tensors stay in host memory until each is cut into this rank's shard
            place = torch.device("cpu") if self.sharded else self.device
            state = torch.load(state_file, map_location=place, weights_only=False)
        except (OSError, RuntimeError) as exc:
            raise TrainingFailure("internal_error", f"cannot read the pause checkpoint {checkpoint}: {exc}") from None
        optimizer = state["optimizer"]
        if self.sharded:
            optimizer = shard_optimizer_state(optimizer, self.optimizer.params)
        self.optimizer.load_state_dict(optimizer)
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self._valid_cursor = state["valid_cursor"]
        self.steps_done = state["steps_done"]
        self.load_extra_state(state)
        if self.parallel is None:
            self.finish_resume()

    def finish_resume(self) -> None:
        """Remove a pause checkpoint's state file once the run has read it (with several ranks:
        once every rank has, which the worker waits for)."""
        if self.resuming and not self.resuming.get("keep_state"):
            # optimiser state can be twice the model: not kept forever
            (Path(self.resuming["checkpoint"]) / TRAINER_STATE).unlink(missing_ok=True)

