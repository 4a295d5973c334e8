"""Plain records the core hands to front ends.

They are built from the API's JSON (as stored in the cache), never from SDK types, so
the app can show them before `openai` is imported. Unknown statuses and fields are kept
as strings: the server sends values the SDK does not declare (e.g. `paused`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .watch.verdict import Verdict

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

METHOD_LABELS = {"supervised": "SFT", "dpo": "DPO", "reinforcement": "RFT"}


@dataclass(frozen=True, slots=True)
class Job:
    """One fine-tuning job, as last seen from the API."""

    id: str
    model: str
    status: str
    created_at: int
    method: str = "supervised"
    training_file: str = ""
    validation_file: str | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None
    trained_tokens: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    result_files: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def method_label(self) -> str:
        return METHOD_LABELS.get(self.method, self.method)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Job:
        method = data.get("method") or {}
        method_type = method.get("type") or "supervised"
        hyper = (method.get(method_type) or {}).get("hyperparameters") or data.get("hyperparameters") or {}
        error = data.get("error") or {}
        return cls(
            id=str(data["id"]),
            model=str(data.get("model") or ""),
            status=str(data.get("status") or "unknown"),
            created_at=int(data.get("created_at") or 0),
            method=str(method_type),
            training_file=str(data.get("training_file") or ""),
            validation_file=data.get("validation_file"),
            fine_tuned_model=data.get("fine_tuned_model"),
            finished_at=data.get("finished_at"),
            estimated_finish=data.get("estimated_finish"),
            trained_tokens=data.get("trained_tokens"),
            hyperparameters=dict(hyper),
            # A healthy job carries `error: {}` or all-null fields: only a code means failure.
            error_code=error.get("code") or None,
            error_message=error.get("message") or None,
            result_files=tuple(data.get("result_files") or ()),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One job event. `data` holds metrics for `type == "metrics"` events."""

    id: str
    job_id: str
    created_at: int
    level: str
    message: str
    type: str = "message"
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, job_id: str, data: dict[str, Any]) -> JobEvent:
        return cls(
            id=str(data["id"]),
            job_id=job_id,
            created_at=int(data.get("created_at") or 0),
            level=str(data.get("level") or "info"),
            message=str(data.get("message") or ""),
            type=str(data.get("type") or "message"),
            data=dict(data.get("data") or {}),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "object": "fine_tuning.job.event",
            "id": self.id,
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "type": self.type,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One training step's numbers; validation fields are None when not measured."""

    step: int
    total_steps: int | None
    train_loss: float | None
    valid_loss: float | None
    full_valid_loss: float | None
    train_accuracy: float | None
    valid_accuracy: float | None
    train_reward: float | None = None
    valid_reward: float | None = None

    @classmethod
    def from_event(cls, event: JobEvent) -> MetricPoint | None:
        d = event.data
        if event.type != "metrics" or "step" not in d:
            return None
        return cls(
            step=int(d["step"]),
            total_steps=d.get("total_steps"),
            train_loss=d.get("train_loss"),
            valid_loss=d.get("valid_loss"),
            full_valid_loss=d.get("full_valid_loss"),
            train_accuracy=d.get("train_mean_token_accuracy"),
            valid_accuracy=d.get("valid_mean_token_accuracy"),
            # RFT reports rewards, not losses; OpenAI's events use both spellings.
            train_reward=_first(d, "train_reward_mean", "train_mean_reward"),
            valid_reward=_first(d, "valid_reward_mean", "full_valid_mean_reward"),
        )


def _first(data: dict[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved checkpoint of a job: a model that can be used like the final one."""

    id: str
    job_id: str
    step: int
    created_at: int
    model: str
    """Its model name (`fine_tuned_model_checkpoint`): what a chat request names."""
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any], job_id: str | None = None) -> Checkpoint:
        metrics = data.get("metrics")
        return cls(
            id=str(data["id"]),
            job_id=str(data.get("fine_tuning_job_id") or job_id or ""),
            step=_int(data.get("step_number")),
            created_at=_int(data.get("created_at")),
            model=str(data.get("fine_tuned_model_checkpoint") or ""),
            metrics=dict(metrics) if isinstance(metrics, dict) else {},
            raw=data,
        )


def _int(value: Any) -> int:
    """A count or a time from the API's JSON; anything else (null, text) reads as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job with its newest training step, as the jobs table shows it."""

    job: Job
    step: int | None = None
    total_steps: int | None = None
    verdict: Verdict | None = None
    """The overfitting detector's last verdict (`core/watch/overfit.py`), kept in the cache."""
    estimated_tokens: int | None = None
    """The launch's pre-flight estimate of billed tokens (only for jobs launched here)."""
    fetched_at: float | None = None
    """When the cache last stored this job from the API (Unix seconds): how stale it is."""
    epoch: float | None = None
    """Epochs done at `step` (e.g. 1.5: half way through the second), when known."""
    n_epochs: int | None = None

    @property
    def progress(self) -> float | None:
        """Fraction done in [0, 1], or None when unknown."""
        if self.job.status == "succeeded":
            return 1.0
        if not self.step or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)
