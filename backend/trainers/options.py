"""tunedeck's own job options: the `tunedeck` field of a job request, typed.

Each option's check, label and default is a rule of `tunedeck.core.datasets.jobrules`
(`OPTION_RULES`), the rules the app's launch form checks by too; this module types them.

A request sends them as the SDK's `extra_body={"tunedeck": {...}}`, which leaves OpenAI's
request shape intact; the job echoes what was given under `tunedeck`. The built-in trainer
has nothing to choose; the transformer trainer reads them in its worker process. Checked
once when the job is created (`check_options`); everything downstream holds a
`TunedeckOptions` with the defaults filled in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from tunedeck.core.datasets.jobrules import (  # noqa: F401  (OptionError, check_options: this module's names too)
    DEFAULT_MAX_LENGTH,
    OPTION_DEFAULTS,
    OPTION_RULES,
    OptionError,
    check_options,
)


@dataclass(frozen=True, slots=True)
class TunedeckOptions:
    training_type: str = OPTION_DEFAULTS["training_type"]
    """lora, full, or auto: whole-model training for small models, LoRA above that."""
    lora_rank: int = OPTION_DEFAULTS["lora_rank"]
    lora_alpha: int = OPTION_DEFAULTS["lora_alpha"]
    lora_dropout: float = OPTION_DEFAULTS["lora_dropout"]
    max_length: int = OPTION_DEFAULTS["max_length"]
    """Tokens per example (longer ones lose their start), capped by the model's context."""
    max_completion_tokens: int = OPTION_DEFAULTS["max_completion_tokens"]
    """RFT: the longest answer sampled per prompt."""
    device: str | None = OPTION_DEFAULTS["device"]
    """cpu, cuda or cuda:N; None: a free GPU when there is one, else the CPU."""
    devices: int = OPTION_DEFAULTS["devices"]
    """GPUs the job trains on at once (it waits in `queued` until that many are free)."""
    sharding: str = OPTION_DEFAULTS["sharding"]
    """With several devices: shard the whole model across them (FSDP), replicate it on each
    (data parallel), or auto: shard whole-model training whose state would not fit one GPU."""

    @classmethod
    def from_json(cls, given: dict[str, Any] | None) -> TunedeckOptions:
        """Options already checked (a stored job's `tunedeck` field, a worker's spec)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (given or {}).items() if k in known and v is not None})

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


assert set(OPTION_RULES) == {f.name for f in fields(TunedeckOptions)}
