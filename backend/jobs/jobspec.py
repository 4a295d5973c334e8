"""The body of `POST /v1/fine_tuning/jobs`: checked field by field, then shaped into a job.

Checks follow the ranges OpenAI's API documents; a bad field is a 400 naming
it, e.g. param `method.supervised.hyperparameters.n_epochs`. "auto" hyperparameters are
resolved later, when the job leaves validation and the example count is known.

Every rule (ranges, the auto resolution, the `tunedeck` options) is
`tunedeck.core.datasets.jobrules`, which the app's launch form checks by too: this module
only words a refusal as the API does and shapes the job object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunedeck.core.datasets.jobrules import (
    AUTO,
    AUTO_METHOD_VALUES,
    COMMON_HYPERPARAMETERS,
    HYPERPARAMETER_RULES,
    MAX_INTEGRATIONS,
    METHOD_HYPERPARAMETERS,
    METHODS,
    SEED_EXPECTED,
    SUFFIX_EXPECTED,
    OptionError,
    auto_batch_size,  # noqa: F401  (the resolution lives with the rules; still named here for older callers)
    auto_epochs,  # noqa: F401
    check_options,
    hyperparameter_problem,
    metadata_problem,
    seed_ok,
    suffix_ok,
    wandb_ok,
)

from ..errors import ApiError, bad_request
from ..graders.grader import compile_grader
from ..storage.ids import model_tag_for, new_seed

ORGANIZATION = "local"  # the org slug in `ft:<base>:local:<suffix>:<id>`


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
    """Method hyperparameters win over the deprecated top-level ones, key by key. A name with no
    "auto" (reasoning_effort) reads its default from the start: "auto" is not a value its type
    allows, and the SDK's models would read the job wrongly while it validates."""
    resolved = {
        name: AUTO if HYPERPARAMETER_RULES[name].auto else AUTO_METHOD_VALUES[name]
        for name in METHOD_HYPERPARAMETERS[method]
    }
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
    problem = hyperparameter_problem(name, value)
    if problem is None:
        return value
    param = f"{prefix}.{name}"
    raise bad_request(f"Invalid '{param}': {problem}.", param=param)


def _suffix(raw: Any) -> str:
    if raw is None:
        return ""
    if not suffix_ok(raw):
        raise bad_request(f"Invalid 'suffix': {SUFFIX_EXPECTED}.", param="suffix")
    return raw


def _seed(raw: Any) -> int:
    if raw is None:
        return new_seed()
    if not seed_ok(raw):
        raise bad_request(f"Invalid 'seed': expected {SEED_EXPECTED}.", param="seed")
    return raw


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    problem = metadata_problem(raw)
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
        if not wandb_ok(wandb):
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
