"""A launch as the user filled it in: files, model, method, hyperparameters and options.

`LaunchRequest` is what both front ends build (the form, `tunedeck jobs create`) and what
presets save. `body()` is the exact `POST /fine_tuning/jobs` request, so the pre-flight can
show what will be sent; `problems()` checks every field by the rules the local backend
applies too (`tunedeck.core.datasets.jobrules`), so the form says what the server would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tunedeck.core.datasets.detect import API_METHOD_FORMATS
from tunedeck.core.datasets.jobrules import METHODS

METHOD_LABELS = {"supervised": "SFT", "dpo": "DPO", "reinforcement": "RFT"}
FORMAT_METHODS = {fmt: method for method, fmt in API_METHOD_FORMATS.items()}
"""The dataset format the validator detects -> the method that trains on it."""
AUTO = "auto"

SAVED_TYPES: dict[str, type | tuple[type, ...]] = {
    "training_path": str,
    "model": str,
    "method": str,
    "validation_path": str,
    "training_file_id": str,
    "validation_file_id": str,
    "hyperparameters": dict,
    "suffix": str,
    "seed": int,
    "metadata": dict,
    "wandb": dict,
    "options": dict,
    "grader": dict,
    "response_format": dict,
}
"""What each field of a saved request (a preset) must be; a hand-edited file may hold anything."""


def wire_body(body: dict[str, Any]) -> dict[str, Any]:
    """A `body()` as the HTTP request carries it: the SDK merges `extra_body` into the JSON."""
    wire = {k: v for k, v in body.items() if k != "extra_body"}
    wire.update(body.get("extra_body") or {})
    return wire


@dataclass(frozen=True, slots=True)
class Problem:
    """One field the user must fix; `field` names it as the form and the CLI do (e.g.
    `hyperparameters.n_epochs`, `suffix`, `grader`)."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    training_path: Path | None = None
    model: str = ""
    method: str = "supervised"
    validation_path: Path | None = None
    training_file_id: str | None = None
    """An already uploaded file to train on, instead of `training_path`."""
    validation_file_id: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """Only what the user set; a name left out is "auto". Only the method's names are sent."""
    suffix: str = ""
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    wandb: dict[str, Any] | None = None
    """A Weights & Biases integration ({project, name?, entity?, tags?}); OpenAI only."""
    options: dict[str, Any] = field(default_factory=dict)
    """tunedeck's own options for the local backend (`training_type`, `lora_rank`...): sent as
    the request's `tunedeck` field, only when given, since other providers refuse fields they
    do not know."""
    grader: dict[str, Any] | None = None
    """RFT's grader."""
    response_format: dict[str, Any] | None = None
    """RFT: the JSON schema answers must follow ({"type": "json_schema", "json_schema": {...}})."""

    # Older keyword arguments, kept so callers that set one hyperparameter read naturally.
    n_epochs: int | str | None = None
    batch_size: int | str | None = None
    learning_rate_multiplier: float | str | None = None

    def __post_init__(self) -> None:
        legacy = {
            name: getattr(self, name)
            for name in ("n_epochs", "batch_size", "learning_rate_multiplier")
            if getattr(self, name) is not None
        }
        if legacy:
            object.__setattr__(self, "hyperparameters", {**legacy, **self.hyperparameters})
            for name in legacy:
                object.__setattr__(self, name, None)

    # -- reading -------------------------------------------------------------------------

    def hyperparameter(self, name: str) -> Any:
        """The value sent for `name`: what the user set, else "auto"."""
        value = self.hyperparameters.get(name)
        return AUTO if value is None or value == "" else value

    def method_hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters as the body sends them: "auto" where not set, but
        for one that has no "auto" (reasoning_effort), which is left to the server's default."""
        from tunedeck.core.datasets.jobrules import hyperparameters_to_send

        return hyperparameters_to_send(self.method, self.hyperparameters)

    def problems(self, *, local: bool = False) -> list[Problem]:
        """Every field that the server would refuse, checked by the shared rules. `local`:
        the profile is tunedeck's backend, so `options` may be sent."""
        from tunedeck.core.datasets.jobrules import request_problems

        return [Problem(f, m) for f, m in request_problems(self, local=local)]

    def body(self, training_file: str, validation_file: str | None, launch_tag: str | None = None) -> dict[str, Any]:
        """The exact `POST /fine_tuning/jobs` body (SDK keyword arguments; `extra_body` holds
        the `tunedeck` field). `launch_tag` goes into `metadata` last, so the user's own
        metadata cannot replace it."""
        from tunedeck.core.job_create import LAUNCH_TAG

        method_body: dict[str, Any] = {"hyperparameters": self.method_hyperparameters()}
        if self.method == "reinforcement":
            if self.grader is not None:
                method_body["grader"] = self.grader
            if self.response_format is not None:
                method_body["response_format"] = self.response_format
        body: dict[str, Any] = {
            "model": self.model,
            "training_file": training_file,
            "method": {"type": self.method, self.method: method_body},
        }
        if validation_file:
            body["validation_file"] = validation_file
        if self.suffix:
            body["suffix"] = self.suffix
        if self.seed is not None:
            body["seed"] = self.seed
        metadata = dict(self.metadata)
        if launch_tag is not None:
            metadata[LAUNCH_TAG] = launch_tag
        if metadata:
            body["metadata"] = metadata
        if self.wandb:
            body["integrations"] = [{"type": "wandb", "wandb": dict(self.wandb)}]
        if self.options:
            body["extra_body"] = {"tunedeck": dict(self.options)}
        return body

    # -- saving (presets) and launching again ---------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything but the legacy keywords; paths as text."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("n_epochs", "batch_size", "learning_rate_multiplier"):
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchRequest:
        """A saved request (a preset); unknown keys are ignored, paths become `Path`s."""
        known = {f.name for f in fields(cls)} - {"n_epochs", "batch_size", "learning_rate_multiplier"}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        for key, value in values.items():
            expected = SAVED_TYPES[key]
            if not isinstance(value, expected) or isinstance(value, bool) and expected is not bool:
                names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
                raise ValueError(f"{key!r} must be {names}, not {type(value).__name__}")
        for key in ("metadata", "options", "hyperparameters"):
            if key in values and not all(isinstance(k, str) for k in values[key]):
                raise ValueError(f"{key!r} must have text keys")
        for key in ("training_path", "validation_path"):
            if values.get(key):
                values[key] = Path(values[key])
        return cls(**values)

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> LaunchRequest:
        """A request that launches `job` again: its files (by id), model, method and every
        hyperparameter the user had set (values the server resolved from "auto" are not
        known apart from set ones, so all concrete values are kept)."""
        from tunedeck.core.job_create import LAUNCH_TAG

        method_obj = job.get("method") or {}
        method = method_obj.get("type") or "supervised"
        method_body = method_obj.get(method) or {}
        hyper = dict(method_body.get("hyperparameters") or job.get("hyperparameters") or {})
        metadata = {k: v for k, v in (job.get("metadata") or {}).items() if k != LAUNCH_TAG}
        integrations = job.get("integrations") or []
        wandb = next((i.get("wandb") for i in integrations if isinstance(i, dict) and i.get("type") == "wandb"), None)
        return cls(
            model=job.get("model") or "",
            method=method if method in METHODS else "supervised",
            training_file_id=job.get("training_file"),
            validation_file_id=job.get("validation_file"),
            hyperparameters={k: v for k, v in hyper.items() if v is not None and v != AUTO},
            suffix=job.get("user_provided_suffix") or "",
            seed=job.get("seed"),
            metadata=metadata,
            wandb=wandb,
            options=dict(job.get("tunedeck") or {}),
            grader=method_body.get("grader"),
            response_format=method_body.get("response_format"),
        )

    def with_method(self, method: str) -> LaunchRequest:
        return replace(self, method=method)
