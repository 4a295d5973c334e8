"""Loading models and tokenizers for training and chat, and writing checkpoints (worker side).

A checkpoint is a folder: `tunedeck.json` (what it is and which base it needs), the tokenizer
(so chat uses the template it was trained with), and either a LoRA adapter
(`adapter_config.json` + weights, loaded on top of the base) or a whole model. A pause also
writes `trainer_state.pt` (optimiser and step) so a resumed job continues exactly.

Devices: CUDA when present (bf16), else CPU (fp32); `TUNEDECK_TRAIN_DEVICE` overrides
("cpu", "cuda", "cuda:1"). Nothing is ever downloaded: the worker runs with
`HF_HUB_OFFLINE=1` and loads from the folder the server's catalog found.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunedeck.backend.trainers.base import TrainingFailure
from tunedeck.backend.trainers.options import TunedeckOptions

from ..server.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_META
from ..server.checkpoints import read_meta as read_meta_if_any

TRAINER_STATE = "trainer_state.pt"
FULL_FINE_TUNE_BELOW = 50_000_000  # "auto" training type: whole model below this many parameters, LoRA above


@dataclass(frozen=True, slots=True)
class BaseModel:
    name: str
    path: Path
    gguf_file: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BaseModel:
        return cls(raw["name"], Path(raw["path"]), raw.get("gguf_file"))

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "gguf_file": self.gguf_file}


def choose_device(requested: str | None = None) -> torch.device:
    wanted = requested or os.environ.get("TUNEDECK_TRAIN_DEVICE")
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TrainingFailure("invalid_request", f"device {wanted!r} was asked for, but CUDA is not available")
        return device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def attention_for(device: torch.device) -> str:
    """flash-attention 2 on CUDA when the `flash-attn` package is installed, else PyTorch's own
    variable-length flash attention where this torch and GPU have it (`attention.py`): both
    make padding-free packing pay, with no mask. Else scaled-dot-product attention (the CPU).
    `TUNEDECK_ATTENTION` overrides (e.g. "sdpa")."""
    import importlib.util

    from .attention import register, varlen_usable

    wanted = os.environ.get("TUNEDECK_ATTENTION")
    if wanted:
        return register() if wanted == "tunedeck_varlen" else wanted
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    if varlen_usable(device):
        return register()
    return "sdpa"


def load_tokenizer(source: Path, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base: BaseModel, device: torch.device, on_host: bool = False) -> Any:
    """The base model in `device`'s precision, on `device` (`on_host`: left in host memory)."""
    from transformers import AutoModelForCausalLM

    if not (base.path / (base.gguf_file or "config.json")).exists():
        raise TrainingFailure("model_not_found", f"The model `{base.name}` is no longer at {base.path}", "model")
    kwargs: dict[str, Any] = {"dtype": dtype_for(device), "attn_implementation": attention_for(device)}
    if base.gguf_file:
        kwargs["gguf_file"] = base.gguf_file
    if device.type == "cuda" and not on_host:
        kwargs["device_map"] = str(device)  # straight onto the GPU, no copy through host memory
    model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    return model if on_host else model.to(device)


def read_meta(checkpoint: Path) -> dict[str, Any]:
    meta = read_meta_if_any(checkpoint)
    if meta is None:
        raise TrainingFailure("model_not_found", f"{checkpoint} is not a tunedeck transformer checkpoint", "model")
    return meta


def load_checkpoint(
    checkpoint: Path, device: torch.device, trainable: bool, on_host: bool = False
) -> tuple[Any, dict[str, Any]]:
    """A fine-tuned model from its folder: the base with the adapter on top, or the whole model."""
    meta = read_meta(checkpoint)
    if meta["adapter"]:
        from peft import PeftModel

        base = load_base(BaseModel.from_json(meta["base"]), device, on_host)
        model = PeftModel.from_pretrained(base, checkpoint, is_trainable=trainable)
    else:
        from transformers import AutoModelForCausalLM

        dtype = torch.float32 if trainable else dtype_for(device)  # training continues from exact weights
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype, attn_implementation=attention_for(device))
        if not on_host:
            model = model.to(device)
    return model, meta


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_training_type(requested: str, model: Any) -> str:
    if requested in ("lora", "full"):
        return requested
    return "full" if parameter_count(model) < FULL_FINE_TUNE_BELOW else "lora"


def add_lora(model: Any, options: TunedeckOptions) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=float(options.lora_dropout),
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def causal_parts(model: Any) -> tuple[Any, Any]:
    """The decoder stack and the output head, under a PEFT wrapper if there is one: losses are
    computed from hidden states, so logits exist only where a token is scored."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal.get_decoder(), causal.get_output_embeddings()


def compile_layers(model: Any) -> int:
    """torch.compile each decoder layer in place (the modules that run the step; their names
    and state dict stay as they are, so checkpoints do not change). One layer's graph serves
    them all; the mask and the rotary table stay eager, and the SFT loss's per-chunk maths is
    compiled too (`scoring.compile_head_loss`). Returns the layers compiled.

    Shapes are dynamic from the start (`TUNEDECK_COMPILE_DYNAMIC=0`: specialised first): a job's
    packed rows change length every step, and recompiling per length stalls it.
    """
    from .scoring import compile_head_loss

    dynamic = os.environ.get("TUNEDECK_COMPILE_DYNAMIC", "1") not in ("0", "false", "no")
    decoder, _ = causal_parts(model)
    layers = getattr(decoder, "layers", None) or []
    for layer in layers:
        layer.compile(dynamic=dynamic or None)
    compile_head_loss(dynamic or None)
    return len(layers)


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    path: Path,
    meta: dict[str, Any],
    state: dict[str, Any] | None,
    weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the checkpoint folder atomically (a temporary sibling, then a rename). `weights`:
    the model's whole state dict where the model holds only shards of it."""
    temporary = path.with_name(path.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    model.save_pretrained(temporary, **({"state_dict": weights} if weights is not None else {}))
    tokenizer.save_pretrained(temporary)
    (temporary / CHECKPOINT_META).write_text(json.dumps({"format": CHECKPOINT_FORMAT, **meta}, indent=2))
    if state is not None:
        torch.save(state, temporary / TRAINER_STATE)
    shutil.rmtree(path, ignore_errors=True)
    temporary.rename(path)
