"""The body of `POST /v1/fine_tuning/jobs`: checked field by field, then shaped into a job.

Checks follow the ranges OpenAI's API documents; a bad field is a 400 naming
it, e.g. param `method.supervised.hyperparameters.n_epochs`. "auto" hyperparameters are
resolved later, when the job leaves validation and the example count is known.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..checks import integer_between, number_between
from ..errors import ApiError, bad_request
from ..graders.grader import compile_grader
from ..storage.ids import model_tag_for, new_seed
from ..trainers.options import OptionError, check_options

METHODS = ("supervised", "dpo", "reinforcement")
AUTO = "auto"
ORGANIZATION = "local"  # the org slug in `ft:<base>:local:<suffix>:<id>`
SUFFIX_PATTERN = re.compile(r"[A-Za-z0-9._-]{0,64}")
MAX_SEED = 2_147_483_647
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
MAX_INTEGRATIONS = 5

# Auto hyperparameters. Epochs: the OpenAI cookbook's heuristic (aim at 3 epochs, more for
# under 100 examples, fewer above 25,000, within 1..25). Batch size:
# about 0.2 % of the examples, which matches the small sizes the API reports. Learning rate
# multiplier: 1, i.e. the trainer's documented base rate.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 1, 25
AUTO_BATCH_FRACTION, MAX_BATCH_SIZE = 0.002, 256
AUTO_LEARNING_RATE_MULTIPLIER = 1.0
# DPO and RFT autos (the API does not say what it picks): DPO's customary beta; RFT one unit
# of compute, one sample per validation example, and about AUTO_EVALUATIONS evaluations per run.
AUTO_METHOD_VALUES = {"beta": 0.1, "compute_multiplier": 1.0, "eval_samples": 1, "reasoning_effort": "default"}
AUTO_EVALUATIONS = 10


# name -> (check, what the error says is expected); "auto" is accepted for all but the effort.
HYPERPARAMETER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_epochs": (integer_between(1, 50), "an integer from 1 to 50"),
    "batch_size": (integer_between(1, MAX_BATCH_SIZE), "an integer from 1 to 256"),
    "learning_rate_multiplier": (number_between(0, 1e6), "a number greater than 0"),
    "beta": (number_between(0, 2), "a number in (0, 2]"),
    "compute_multiplier": (number_between(0.00001, 10), "a number in (0.00001, 10]"),
    "eval_interval": (integer_between(1, 10**9), "a positive integer"),
    "eval_samples": (integer_between(1, 10**9), "a positive integer"),
    "reasoning_effort": (lambda v: v in ("default", "low", "medium", "high"), "default, low, medium or high"),
}
COMMON_HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
METHOD_HYPERPARAMETERS = {
    "supervised": COMMON_HYPERPARAMETERS,
    "dpo": (*COMMON_HYPERPARAMETERS, "beta"),
    "reinforcement": (
        *COMMON_HYPERPARAMETERS,
        "reasoning_effort",
        "compute_multiplier",
        "eval_interval",
        "eval_samples",
    ),
}


@dataclass(frozen=True, slots=True)
class JobRequest:
    model: str
    training_file: str
    validation_file: str | None
    method: str
    hyperparameters: dict[str, Any]  # every key of the method, "auto" where not given
    method_extra: dict[str, Any] = field(default_factory=dict)  # e.g. RFT `grader`, `response_format`
    suffix: str = ""
    seed: int = 0
    metadata: dict[str, str] | None = None
    integrations: list[Any] = field(default_factory=list)
    options: dict[str, Any] | None = None  # the `tunedeck` extension field


def _options(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return check_options(raw)
    except OptionError as exc:
        raise bad_request(exc.message, param=exc.param) from None


def parse_job_request(body: dict[str, Any]) -> JobRequest:
    model = _required_string(body, "model")
    training_file = _required_string(body, "training_file")
    validation_file = body.get("validation_file")
    if validation_file is not None and (not isinstance(validation_file, str) or not validation_file):
        raise bad_request("Invalid 'validation_file': expected a file id.", param="validation_file")
    method, method_body = _method(body.get("method"))
    if method == "reinforcement":
        _check_grader(method_body.get("grader"))
    return JobRequest(
        model=model,
        training_file=training_file,
        validation_file=validation_file,
        method=method,
        hyperparameters=_hyperparameters(body, method, method_body),
        method_extra={k: v for k, v in method_body.items() if k != "hyperparameters"},
        suffix=_suffix(body.get("suffix")),
        seed=_seed(body.get("seed")),
        metadata=_metadata(body.get("metadata")),
        integrations=_integrations(body.get("integrations")),
        options=_options(body.get("tunedeck")),
    )


def _required_string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        raise bad_request(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid '{key}': expected a non-empty string.", param=key)
    return value


def _method(raw: Any) -> tuple[str, dict[str, Any]]:
    if raw is None:
        return "supervised", {}
    if not isinstance(raw, dict):
        raise bad_request("Invalid 'method': expected an object with a 'type'.", param="method")
    kind = raw.get("type")
    if kind not in METHODS:
        raise bad_request(
            f"Invalid 'method.type': expected one of {', '.join(METHODS)}, got {str(kind)[:40]!r}.", param="method.type"
        )
    body = raw.get(kind) or {}
    if not isinstance(body, dict):
        raise bad_request(f"Invalid 'method.{kind}': expected an object.", param=f"method.{kind}")
    return kind, body


def _check_grader(grader: Any) -> None:
    """RFT needs a grader the local backend can run; a bad one is a 400 naming its field."""
    param = "method.reinforcement.grader"
    if grader is None:
        raise bad_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    compile_grader(grader, param)


def _hyperparameters(body: dict[str, Any], method: str, method_body: dict[str, Any]) -> dict[str, Any]:
    """Method hyperparameters win over the deprecated top-level ones, key by key."""
    resolved = {name: AUTO for name in METHOD_HYPERPARAMETERS[method]}
    sources = (
        ("hyperparameters", body.get("hyperparameters")),
        (f"method.{method}.hyperparameters", method_body.get("hyperparameters")),
    )
    for prefix, given in sources:
        if given is None:
            continue
        if not isinstance(given, dict):
            raise bad_request(f"Invalid '{prefix}': expected an object.", param=prefix)
        for name, value in given.items():
            if name in resolved and value is not None:
                resolved[name] = _checked_hyperparameter(prefix, name, value)
    return resolved


def _checked_hyperparameter(prefix: str, name: str, value: Any) -> Any:
    check, expected = HYPERPARAMETER_RULES[name]
    if (value == AUTO and name != "reasoning_effort") or check(value):
        return value
    shown = repr(value)[:40]
    param = f"{prefix}.{name}"
    raise bad_request(f"Invalid '{param}': expected {expected} or 'auto', got {shown}.", param=param)


def _suffix(raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or not SUFFIX_PATTERN.fullmatch(raw):
        raise bad_request(
            "Invalid 'suffix': up to 64 characters from letters, digits, '.', '_' and '-'.", param="suffix"
        )
    return raw


def _seed(raw: Any) -> int:
    if raw is None:
        return new_seed()
    if not integer_between(0, MAX_SEED)(raw):
        raise bad_request(f"Invalid 'seed': expected an integer from 0 to {MAX_SEED}.", param="seed")
    return raw


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    problem = None
    if not isinstance(raw, dict) or len(raw) > MAX_METADATA_PAIRS:
        problem = f"expected an object of at most {MAX_METADATA_PAIRS} pairs"
    elif any(not isinstance(k, str) or len(k) > MAX_METADATA_KEY for k in raw):
        problem = f"keys must be strings of at most {MAX_METADATA_KEY} characters"
    elif any(not isinstance(v, str) or len(v) > MAX_METADATA_VALUE for v in raw.values()):
        problem = f"values must be strings of at most {MAX_METADATA_VALUE} characters"
    if problem:
        raise bad_request(f"Invalid 'metadata': {problem}.", param="metadata")
    return dict(raw)


def _integrations(raw: Any) -> list[Any]:
    """Only Weights & Biases, at most 5, as the API accepts. They are echoed, not run."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_INTEGRATIONS:
        message = f"Invalid 'integrations': expected a list of at most {MAX_INTEGRATIONS}."
        raise bad_request(message, param="integrations")
    for index, item in enumerate(raw):
        wandb = item.get("wandb") if isinstance(item, dict) and item.get("type") == "wandb" else None
        if not isinstance(wandb, dict) or not isinstance(wandb.get("project"), str):
            raise bad_request(
                f"Invalid 'integrations[{index}]': only type 'wandb' with a 'wandb.project' is supported.",
                param=f"integrations[{index}]",
            )
    return raw


# -- the job object -----------------------------------------------------------------------


def new_job(request: JobRequest, job_id: str, created_at: int) -> dict[str, Any]:
    job = {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": created_at,
        "model": request.model,
        "training_file": request.training_file,
        "validation_file": request.validation_file,
        "status": "validating_files",
        "fine_tuned_model": None,
        "finished_at": None,
        "estimated_finish": None,
        "trained_tokens": None,
        "hyperparameters": {k: request.hyperparameters[k] for k in COMMON_HYPERPARAMETERS},
        "method": {
            "type": request.method,
            request.method: {**request.method_extra, "hyperparameters": dict(request.hyperparameters)},
        },
        "result_files": [],
        "error": {},  # what the real API sends on healthy jobs
        "organization_id": f"org-{ORGANIZATION}",
        "seed": request.seed,
        "integrations": request.integrations,
        "metadata": request.metadata,
        "user_provided_suffix": request.suffix or None,
        "usage_metrics": None,
        "shared_with_openai": False,
    }
    if request.options is not None:
        job["tunedeck"] = request.options
    return job


def set_hyperparameters(job: dict[str, Any], values: dict[str, Any]) -> None:
    """Echo resolved values in both places the API shows them."""
    method = job["method"]["type"]
    job["method"][method]["hyperparameters"] = dict(values)
    job["hyperparameters"] = {k: values[k] for k in COMMON_HYPERPARAMETERS}


def resolve_hyperparameters(requested: dict[str, Any], n_examples: int) -> dict[str, Any]:
    resolved = dict(requested)
    if resolved.get("n_epochs") == AUTO:
        resolved["n_epochs"] = auto_epochs(n_examples)
    if resolved.get("batch_size") == AUTO:
        resolved["batch_size"] = auto_batch_size(n_examples)
    if resolved.get("learning_rate_multiplier") == AUTO:
        resolved["learning_rate_multiplier"] = AUTO_LEARNING_RATE_MULTIPLIER
    for name, value in AUTO_METHOD_VALUES.items():
        if resolved.get(name) == AUTO:
            resolved[name] = value
    if resolved.get("eval_interval") == AUTO:
        steps = math.ceil(max(1, n_examples) / resolved["batch_size"]) * resolved["n_epochs"]
        resolved["eval_interval"] = max(1, steps // AUTO_EVALUATIONS)
    return resolved


def auto_epochs(n_examples: int) -> int:
    n = max(1, n_examples)
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, MIN_TARGET_EXAMPLES // n)
    if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_AUTO_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(MAX_BATCH_SIZE, round(n_examples * AUTO_BATCH_FRACTION)))


def fine_tuned_model_name(base: str, suffix: str, tag: str) -> str:
    return f"ft:{base}:{ORGANIZATION}:{suffix}:{tag}"


def final_model_name(job: dict[str, Any]) -> str:
    """The name the job's fine-tuned model gets (checkpoints add `:ckpt-step-N`). A job that
    continues a fine-tuned model names the base model, as the API does."""
    base = base_model_name(job["model"])
    return fine_tuned_model_name(base, job.get("user_provided_suffix") or "", model_tag_for(job["id"]))


def base_model_name(model: str) -> str:
    """The base model in a model name: `ft:<base>:<org>:<suffix>:<tag>[:ckpt-step-N]` names it second."""
    parts = model.split(":")
    return parts[1] if parts[0] == "ft" and len(parts) >= 5 else model


def raise_if_terminal(job: dict[str, Any], action: str) -> None:
    if job["status"] in ("succeeded", "failed", "cancelled"):
        raise ApiError(400, f"Job {job['id']} is already {job['status']} and cannot be {action}.", param=None)
