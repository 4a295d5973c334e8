"""tunedeck's own job options: the `tunedeck` field of a job request, typed, with every
default in one place.

A request sends them as the SDK's `extra_body={"tunedeck": {...}}`, which leaves OpenAI's
request shape intact; the job echoes what was given under `tunedeck`. The built-in trainer
has nothing to choose; the transformer trainer reads them in its worker process. Checked
once when the job is created (`check_options`); everything downstream holds a
`TunedeckOptions` with the defaults filled in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from ..checks import integer_between, number_between

DEFAULT_MAX_LENGTH = 2048
"""Tokens per example unless `max_length` says otherwise; also the context assumed for a
model whose config does not state one."""


@dataclass(frozen=True, slots=True)
class TunedeckOptions:
    training_type: str = "auto"
    """lora, full, or auto: whole-model training for small models, LoRA above that."""
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per example (longer ones lose their start), capped by the model's context."""
    max_completion_tokens: int = 64
    """RFT: the longest answer sampled per prompt."""
    device: str | None = None
    """cpu, cuda or cuda:N; None: the first GPU when there is one, else the CPU."""

    @classmethod
    def from_json(cls, given: dict[str, Any] | None) -> TunedeckOptions:
        """Options already checked (a stored job's `tunedeck` field, a worker's spec)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (given or {}).items() if k in known and v is not None})

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# Each option's check and how its error describes a good value.
OPTION_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "training_type": (lambda v: v in ("auto", "lora", "full"), "auto, lora or full"),
    "lora_rank": (integer_between(1, 1024), "an integer from 1 to 1024"),
    "lora_alpha": (integer_between(1, 4096), "an integer from 1 to 4096"),
    "lora_dropout": (number_between(0.0, 1.0, low_open=False), "a number from 0 to 1"),
    "max_length": (integer_between(16, 1_000_000), "an integer from 16 to 1000000 (tokens per example)"),
    "max_completion_tokens": (integer_between(1, 32_768), "an integer from 1 to 32768 (RFT answer length)"),
    "device": (lambda v: isinstance(v, str) and (v == "cpu" or v.startswith("cuda")), "cpu, cuda or cuda:N"),
}
assert set(OPTION_CHECKS) == {f.name for f in fields(TunedeckOptions)}


class OptionError(ValueError):
    """A bad `tunedeck` field: `param` names it (`tunedeck.lora_rank`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def check_options(raw: Any) -> dict[str, Any]:
    """The options as given, once every key is known and every value in range."""
    if not isinstance(raw, dict):
        raise OptionError("Invalid 'tunedeck': expected an object of tunedeck options.", "tunedeck")
    for key, value in raw.items():
        if key not in OPTION_CHECKS:
            known = ", ".join(OPTION_CHECKS)
            raise OptionError(f"Unknown option 'tunedeck.{str(key)[:40]}'; known: {known}.", f"tunedeck.{key}")
        check, expected = OPTION_CHECKS[key]
        if not check(value):
            shown = repr(value)[:40]
            raise OptionError(f"Invalid 'tunedeck.{key}': expected {expected}, got {shown}.", f"tunedeck.{key}")
    return dict(raw)
