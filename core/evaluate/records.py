"""The plain records of an evaluation: what is asked (settings), of what (examples), and what
came back (one result per model and example), with their JSON forms for the cache.

Pure data: no I/O, no SDK types, so both front ends and the cache share one shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("created", "running", "finished", "cancelled", "interrupted")
"""`interrupted`: the process ended mid-run (a crash, a closed terminal); it resumes like a
cancelled one. Only `finished` runs have a result for every example and model."""

MODEL_KINDS = ("base", "fine_tuned", "checkpoint", "model")
GRADER_KINDS = ("exact", "string_check", "text_similarity", "json", "model", "custom")
ERROR_KINDS = ("request", "grader")


@dataclass(frozen=True, slots=True)
class EvalExample:
    """One row of the dataset, ready to ask: `prompt` is sent (after the model's system
    prompt, when it has one), `item` is what a grader reads as `{{item.*}}`."""

    index: int
    """0-based position among the rows that can be evaluated (results are keyed by it)."""
    line: int
    """1-based line of the row in its file."""
    prompt: list[dict[str, Any]]
    reference: str | None
    """The answer to compare with: the row's final assistant message (SFT), its preferred
    answer (DPO), or its `reference_answer` field; None when it has none."""
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExampleProblem:
    """A row that cannot be evaluated, and why (it is listed, never skipped silently)."""

    line: int
    field: str | None
    message: str
    rows: int = 1
    """The rows it stands for: more than one for the entry counting the rows not listed."""

    def describe(self, path: str = "") -> str:
        place = f"{path}:{self.line}" if path else f"line {self.line}"
        where = f" ({self.field})" if self.field else ""
        return f"{place}{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"line": self.line, "field": self.field, "message": self.message}
        if self.rows != 1:
            data["rows"] = self.rows
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExampleProblem:
        return cls(int(data["line"]), data.get("field"), str(data["message"]), int(data.get("rows", 1)))


def skipped_rows(problems: Sequence[ExampleProblem]) -> int:
    """How many rows `problems` stand for (the unlisted ones counted, not their one entry)."""
    return sum(p.rows for p in problems)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model under evaluation. A base model with a `system_prompt` is the prompted
    baseline: the prompt replaces the rows' own system message."""

    model: str
    label: str
    """Short and unique within a run ("base", "fine-tuned", "step 40"): results are keyed by it."""
    kind: str = "model"
    system_prompt: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "label": self.label, "kind": self.kind, "system_prompt": self.system_prompt}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(str(data["model"]), str(data["label"]), str(data.get("kind") or "model"), data.get("system_prompt"))


@dataclass(frozen=True, slots=True)
class GraderChoice:
    """How answers are scored. `exact`: the answer equals the reference (surrounding
    whitespace ignored); `string_check`: `operation` (eq, ne, like = contains, ilike =
    contains ignoring case); `text_similarity`: `metric` (fuzzy_match, bleu, rouge_l, ...);
    `json`: the answer's JSON fields equal the reference's (`fields`, or all of them), one
    sub-score per field; `model`: `judge_model` scores 0..1 against the reference; `custom`:
    `grader`, a grader object as RFT jobs take (a job's own grader)."""

    kind: str = "exact"
    operation: str = "ilike"
    metric: str = "fuzzy_match"
    fields: tuple[str, ...] = ()
    judge_model: str | None = None
    grader: dict[str, Any] | None = None
    pass_threshold: float | None = None
    """A score at or above it passes (paired tests count passes); None: the kind's default."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "operation": self.operation,
            "metric": self.metric,
            "fields": list(self.fields),
            "judge_model": self.judge_model,
            "grader": self.grader,
            "pass_threshold": self.pass_threshold,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GraderChoice:
        return cls(
            kind=str(data.get("kind") or "exact"),
            operation=str(data.get("operation") or "ilike"),
            metric=str(data.get("metric") or "fuzzy_match"),
            fields=tuple(data.get("fields") or ()),
            judge_model=data.get("judge_model"),
            grader=data.get("grader"),
            pass_threshold=data.get("pass_threshold"),
        )


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    """Sent as is: an RFT job's own (its grader then reads `{{sample.output_json.*}}`)."""
    reasoning_effort: str | None = None
    """Sent to reasoning models: an RFT job's own."""
    max_tokens_set: bool = False
    """The user chose `max_tokens`. A reasoning model's thinking counts against the limit (a
    default 256 leaves it no words), so it is sent to them only when chosen; chat models
    always get it."""

    def max_tokens_for(self, reasons: bool) -> int | None:
        """The limit to send a model (`reasons`: it is a reasoning model); None: its own."""
        return self.max_tokens if self.max_tokens_set or not reasons else None

    def to_json(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "response_format": self.response_format,
            "reasoning_effort": self.reasoning_effort,
            "max_tokens_set": self.max_tokens_set,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sampling:
        return cls(
            float(data.get("temperature", 0.0)),
            int(data.get("max_tokens", 256)),
            data.get("seed"),
            data.get("response_format"),
            data.get("reasoning_effort"),
            # a run stored before the flag sent its limit to every model: a resume asks the same
            bool(data.get("max_tokens_set", True)),
        )


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """Everything a run asks; stored with the run, so a resume asks exactly the same."""

    data_path: str
    data_sha256: str
    models: tuple[ModelSpec, ...]
    grader: GraderChoice = field(default_factory=GraderChoice)
    sampling: Sampling = field(default_factory=Sampling)
    concurrency: int = 4
    limit: int | None = None
    """Only the first `limit` evaluable rows."""
    job_id: str | None = None
    """The job this run evaluates, when started from one."""

    def to_json(self) -> dict[str, Any]:
        return {
            "data_path": self.data_path,
            "data_sha256": self.data_sha256,
            "models": [m.to_json() for m in self.models],
            "grader": self.grader.to_json(),
            "sampling": self.sampling.to_json(),
            "concurrency": self.concurrency,
            "limit": self.limit,
            "job_id": self.job_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSettings:
        return cls(
            data_path=str(data["data_path"]),
            data_sha256=str(data["data_sha256"]),
            models=tuple(ModelSpec.from_json(m) for m in data["models"]),
            grader=GraderChoice.from_json(data.get("grader") or {}),
            sampling=Sampling.from_json(data.get("sampling") or {}),
            concurrency=int(data.get("concurrency") or 4),
            limit=data.get("limit"),
            job_id=data.get("job_id"),
        )


@dataclass(frozen=True, slots=True)
class EvalRunInfo:
    """One run as cached: its settings, where it stands, and the failure notes once written."""

    id: str
    created_at: float
    settings: EvalSettings
    status: str = "created"
    examples: int = 0
    """Rows evaluated (each is asked of every model)."""
    done: int = 0
    """Results stored (examples x models when finished)."""
    errors: int = 0
    """Results with a request or grader error."""
    skipped: tuple[ExampleProblem, ...] = ()
    notes: str | None = None
    notes_model: str | None = None

    @property
    def total(self) -> int:
        return self.examples * len(self.settings.models)


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """One model's answer to one example and its grade."""

    model_key: str
    """The `ModelSpec.label` it answers for."""
    example_index: int
    answer: str | None
    """None when the request failed."""
    score: float | None
    """None when there is no grade (the request or the grader failed)."""
    passed: bool | None
    sub_scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    """"request" (the API refused or failed) or "grader" (the grader could not score it)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    finished_at: float = 0.0
    judge_prompt_tokens: int | None = None
    """The judge model's tokens for grading this answer (a model grader only)."""
    judge_completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class EvalProgress:
    """Where a running evaluation stands (front ends draw a bar with an ETA)."""

    run_id: str
    done: int
    total: int
    errors: int
    elapsed_s: float
    eta_s: float | None
