"""Builders for the API objects the backend returns: events, checkpoints, files, models,
and the result CSV. Event wording follows the real API's ("Fine-tuning job started",
"Step N/M: training loss=...", "New fine-tuned model created"...)."""

from __future__ import annotations

from typing import Any

from .storage.ids import new_checkpoint_id, new_event_id
from .trainers.base import StepMetrics

BUILTIN_MODEL_CREATED = 1_764_547_200  # 2025-12-01: a fixed date, so model listings are stable
RESULT_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
RESULT_FILENAME = "step_metrics.csv"


def event(
    created_at: int, message: str, *, level: str = "info", kind: str = "message", data: Any = None
) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.event",
        "id": new_event_id(),
        "created_at": created_at,
        "level": level,
        "message": message,
        "type": kind,
        "data": data if data is not None else {},
    }


def metrics_event(created_at: int, metrics: StepMetrics) -> dict[str, Any]:
    losses = (
        ("training loss", metrics.train_loss),
        ("validation loss", metrics.valid_loss),
        ("full validation loss", metrics.full_valid_loss),
    )
    parts = [f"{label}={value:.2f}" for label, value in losses if value is not None]
    if metrics.summary:
        parts.append(metrics.summary)
    message = f"Step {metrics.step}/{metrics.total_steps}: {', '.join(parts)}"
    return event(created_at, message, kind="metrics", data=metrics.as_event_data())


def checkpoint(job_id: str, created_at: int, step: int, model_name: str, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": new_checkpoint_id(),
        "created_at": created_at,
        "fine_tuned_model_checkpoint": model_name,
        "fine_tuning_job_id": job_id,
        "step_number": step,
        "metrics": metrics,
    }


def checkpoint_metrics(metrics: StepMetrics, last_valid: tuple[float, float] | None) -> dict[str, float]:
    """A checkpoint's metrics: that step's, with the latest small-batch validation if any."""
    values: dict[str, float] = {"step": float(metrics.step)}
    if metrics.train_loss is not None and metrics.train_mean_token_accuracy is not None:
        values["train_loss"] = metrics.train_loss
        values["train_mean_token_accuracy"] = metrics.train_mean_token_accuracy
    values.update(_scalars(metrics.extra))  # DPO margins, RFT rewards
    if last_valid is not None:
        values["valid_loss"], values["valid_mean_token_accuracy"] = last_valid
    if metrics.full_valid_loss is not None and metrics.full_valid_mean_token_accuracy is not None:
        values["full_valid_loss"] = metrics.full_valid_loss
        values["full_valid_mean_token_accuracy"] = metrics.full_valid_mean_token_accuracy
    return values


def file_object(
    file_id: str, size: int, created_at: int, filename: str, purpose: str, expires_at: int | None
) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created_at,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",  # deprecated field; fine-tune uploads come back processed at once
        "status_details": None,
        "expires_at": expires_at,
    }


def model_object(
    model_id: str, created: int, owned_by: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A `Model`; `details` (size, where a base model was found) go under `tunedeck`, a field
    of our own that SDKs keep as an extra."""
    model = {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, "shutdown_date": None}
    if details:
        model["tunedeck"] = details
    return model


def results_csv(rows: list[StepMetrics]) -> bytes:
    """One line per step; validation cells empty on steps that did not measure it.
    DPO and RFT runs add a column per extra metric (reward margins, mean rewards)."""
    extra_columns = list(dict.fromkeys(key for m in rows for key in _scalars(m.extra)))
    lines = [",".join((*RESULT_COLUMNS, *extra_columns))]
    for m in rows:
        cells = (m.step, m.train_loss, m.train_mean_token_accuracy, m.valid_loss, m.valid_mean_token_accuracy)
        extra = _scalars(m.extra)
        lines.append(",".join(_cell(value) for value in (*cells, *(extra.get(k) for k in extra_columns))))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    """The plain numbers among metric values (nested blocks such as RFT `scores` are left out)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _cell(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"
