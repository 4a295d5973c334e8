"""What training on a dataset would cost on the profile it trains on: one estimate for both
front ends (the app's stats view, the CLI), so money and models agree everywhere.

A provider bills trained tokens (epochs x billed tokens per epoch) at its rate in the dated
price table (`models.py`), and the estimate names that table's date and source. The local
backend trains on this machine and bills nothing: its estimate says so and gives the work
instead (the training steps a job of the file's size runs, "auto" resolved as the backend
resolves it), never a price from a provider whose models the profile does not offer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .jobrules import auto_batch_size, auto_epochs
from .models import PRICE_TABLE_DATE, PRICE_TABLE_SOURCE, model_info
from .report import no_estimate_reason

if TYPE_CHECKING:  # pragma: no cover
    from .report import ValidationReport

LOCAL_NOTE = "no charge (local: trains on this machine)"
RFT_NOTE = "RFT is billed per hour of training ($100/h), not per token"


@dataclass(frozen=True, slots=True)
class TrainingEstimate:
    model: str
    """The model priced (or, locally, the one trained)."""
    epochs: int | None
    """The "auto" epochs for the file's size (None: no valid example to count)."""
    billed_per_epoch: int
    trained_tokens: int
    local: bool
    usd_per_1m: float | None = None
    cost_usd: float | None = None
    steps: int | None = None
    """Locally: the training steps the job runs ("auto" epochs and batch size)."""
    note: str = ""
    """Why there is no price (an unknown model, RFT), or the price's caveat."""
    none_because: str | None = None
    """Why there is nothing to estimate (no valid example)."""

    @property
    def table(self) -> str:
        """Where the price comes from, dated: said wherever a price is shown."""
        return f"price table of {PRICE_TABLE_DATE}: {PRICE_TABLE_SOURCE}"

    def tokens_text(self) -> str:
        """`3 epochs × 1,234 = 3,702 trained tokens` (or why there is nothing to count)."""
        if self.none_because is not None or self.epochs is None:
            return self.none_because or "nothing to estimate"
        return f"{self.epochs} epochs × {self.billed_per_epoch:,} = {self.trained_tokens:,} trained tokens"

    def cost_text(self) -> str:
        """`≈ $0.02 at $5.00/1M`, `no charge (local)…`, or why there is no price."""
        if self.none_because is not None:
            return ""
        if self.local:
            steps = f", about {self.steps:,} training steps" if self.steps else ""
            return f"{LOCAL_NOTE}{steps}"
        if self.cost_usd is None:
            return self.note or f"no per-token price for {self.model}"
        return f"≈ ${self.cost_usd:,.2f} at ${self.usd_per_1m:.2f}/1M"


def training_estimate(report: ValidationReport, model: str, *, local: bool) -> TrainingEstimate:
    """What training `model` on the report's file would cost: money on a provider (from the
    dated table), none on the local backend (its steps instead)."""
    examples = int(report.tokens.get("examples_counted") or 0)
    billed = int(report.tokens.get("billed") or 0)
    reason = no_estimate_reason(report)
    if reason is not None:
        return TrainingEstimate(model, None, billed, 0, local, none_because=reason)
    epochs = auto_epochs(examples)
    trained = epochs * billed
    if local:
        steps = math.ceil(examples / auto_batch_size(examples)) * epochs
        return TrainingEstimate(model, epochs, billed, trained, True, steps=steps)
    info = model_info(model)
    price = info.usd_per_1m_training_tokens if report.checked_as in info.methods else None
    note = info.note if info.known else f"no price is known for {model}"
    if report.checked_as == "rft":
        price, note = None, RFT_NOTE
    elif price is None and info.known and report.checked_as not in info.methods:
        note = f"{info.name} is not fine-tuned with {report.checked_as}"
    elif report.checked_as == "dpo" and price is not None:
        note = "DPO billing is unconfirmed; estimated like SFT"
    cost = round(trained / 1e6 * price, 6) if price is not None else None
    return TrainingEstimate(info.name if info.known else model, epochs, billed, trained, False, price, cost, note=note)


def local_estimate_json(report: ValidationReport) -> dict[str, Any]:
    """The report's `estimate` as the local backend's: no price, the steps a job runs."""
    estimate = training_estimate(report, report.model, local=True)
    if estimate.none_because is not None:
        return {"epochs": None, "trained_tokens": 0, "cost_usd": None, "none_because": estimate.none_because}
    return {
        "epochs": estimate.epochs,
        "trained_tokens": estimate.trained_tokens,
        "cost_usd": None,
        "local": True,
        "steps": estimate.steps,
        "note": estimate.cost_text(),
    }


def priced_models(method: str, offered: Sequence[str] | None = None) -> list[str]:
    """The models a provider's estimate may be priced with for `method`: those the profile
    offers (when listed) that the price table knows, else the table's own for the method."""
    from .models import MODELS, models_for

    table = models_for(method) or list(MODELS)
    if offered is None:
        return table
    known = [name for name in offered if model_info(name).known and method in model_info(name).methods]
    return known or table


__all__ = ["LOCAL_NOTE", "TrainingEstimate", "local_estimate_json", "priced_models", "training_estimate"]
