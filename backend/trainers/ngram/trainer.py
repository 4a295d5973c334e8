"""The built-in trainer: fine-tunes `tunedeck-ngram` on the CPU with SFT (`sft.py`), DPO
(`dpo.py`) or RFT (`rft.py`), all on the same hashed-feature token model (`model.py`)."""

from __future__ import annotations

from typing import Any

from tunedeck.backend import BUILTIN_BASE_MODEL

from ..base import Trainer, TrainingRun, TrainingSpec, UnsupportedMethod
from .dpo import DpoRun
from .rft import RftRun
from .sft import SftRun


class NgramTrainer(Trainer):
    """Fine-tunes `tunedeck-ngram` on the CPU: each method is a run class of its own."""

    def base_models(self) -> list[str]:
        return [BUILTIN_BASE_MODEL]

    def model_details(self, model: str) -> dict[str, Any]:
        return {"kind": "built-in", "size": "built-in CPU model"}

    def supports(self, method: str) -> bool:
        return method in ("supervised", "dpo", "reinforcement")

    def start(self, spec: TrainingSpec) -> TrainingRun:
        if spec.method == "dpo":
            return DpoRun(spec)
        if spec.method == "reinforcement":
            return RftRun(spec)
        if spec.method != "supervised":
            raise UnsupportedMethod(f"method {spec.method} is not supported by the built-in trainer yet")
        return SftRun(spec)
