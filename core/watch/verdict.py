"""A job's overfitting verdict as the front ends and the cache hold it (`overfit.assess` makes
it). Apart from the rule so that reading cached rows, before the first frame, does not load
the rule and what it imports (statistics, ~30 ms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    state: str  # "ok" | "watch" | "overfitting" | "no_validation" | "too_early"
    fired_at_step: int | None = None  # first step at which the rule held (state "overfitting")
    best_step: int | None = None  # step of the best checkpoint (or evaluation)
    best_metric: str | None = None  # the series column judged, e.g. "full_valid_loss"
    best_value: float | None = None  # its value at best_step, as measured
    advice: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def alarm(self) -> bool:
        return self.state == "overfitting"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "alarm": self.alarm,
            "fired_at_step": self.fired_at_step,
            "best_step": self.best_step,
            "best_metric": self.best_metric,
            "best_value": self.best_value,
            "advice": self.advice,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        def integer(key: str) -> int | None:
            value = data.get(key)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        value = data.get("best_value")
        metric = data.get("best_metric")
        return cls(
            state=str(data.get("state") or "ok"),
            fired_at_step=integer("fired_at_step"),
            best_step=integer("best_step"),
            best_metric=str(metric) if metric is not None else None,
            best_value=float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None,
            advice=str(data.get("advice") or ""),
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
        )
