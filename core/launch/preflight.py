"""The pre-flight: everything about a launch that can be said before anything is spent.

    preflight = build_preflight(request, local=True, model_info={"shutdown_date": ...})
    preflight.ok, preflight.blocking, preflight.warnings, preflight.to_json()

It checks every field by the shared job rules (`core.datasets.jobrules`), runs the dataset
validator on the file(s) as the method's format (with the RFT grader), resolves the "auto"
hyperparameters for the training file's example count, and estimates trained tokens, cost
and the request body that will be sent. Synchronous and slow on big files: callers run it
in a thread (`progress` and `cancel` go to the validator).

It agrees with the local backend by construction: the backend reads a file with the same
rules (`ExampleReader`), resolves "auto" with the same function, and bills its built-in
model's `trained_tokens` as the validator counts billed tokens (`backend/jobs/training_data.py`).
Where the backend is more lenient than OpenAI (it skips blank lines, and reads only the text
of image parts), those findings block only a launch to another provider.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.datasets import DatasetIOError, GraderError, ValidationReport, validate_file
from tunedeck.core.datasets.codes import WARNINGS, Issue
from tunedeck.core.datasets.detect import API_METHOD_FORMATS
from tunedeck.core.datasets.jobrules import METHOD_HYPERPARAMETERS, resolve_hyperparameters
from tunedeck.core.datasets.messages import is_image_target_issue
from tunedeck.core.datasets.models import base_model
from tunedeck.core.text import strip_controls

from ..describe import duration_text
from .request import METHOD_LABELS, LaunchRequest, Problem, wire_body

"""The method -> the dataset format the validator checks its files as."""
SHUTDOWN_WARNING_DAYS = 90
LISTED_ERRORS = 5
"""Errors named one by one per file; the rest are counted (`tunedeck data validate` lists all)."""

Progress = Callable[[int, int], None]


@dataclass
class Preflight:
    request: LaunchRequest
    local: bool
    problems: list[Problem] = field(default_factory=list)
    """The fields the server would refuse (also in `blocking`)."""
    training: ValidationReport | None = None
    validation: ValidationReport | None = None
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the figures mean where that is not obvious; nothing to fix."""
    training_examples: int | None = None
    validation_examples: int | None = None
    training_tokens: int | None = None
    """Billed tokens of one pass over the training file (the validator's count)."""
    validation_tokens: int | None = None
    encoding: str | None = None
    hyperparameters: dict[str, Any] | None = None
    """The method's hyperparameters with "auto" resolved for the training file's size: what
    the local backend will show on the job. None when a value is refused or the size unknown."""
    steps: int | None = None
    trained_tokens: int | None = None
    cost_usd: float | None = None
    cost_note: str = ""
    duration_s: float | None = None
    duration_note: str = "unknown"
    deprecation: dict[str, Any] | None = None
    """{"shutdown_date": "YYYY-MM-DD", "days_left": n} when the provider says the model retires."""
    request_body: dict[str, Any] = field(default_factory=dict)
    """The JSON body of `POST /fine_tuning/jobs` as it goes on the wire (the launch tag,
    made at launch, is not in it yet)."""

    @property
    def ok(self) -> bool:
        return not self.blocking

    def to_json(self) -> dict[str, Any]:
        """The `--dry-run --json` object."""
        return {
            "ok": self.ok,
            "local": self.local,
            "model": self.request.model,
            "method": self.request.method,
            "blocking": list(self.blocking),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "problems": [{"field": p.field, "message": p.message} for p in self.problems],
            "training_examples": self.training_examples,
            "validation_examples": self.validation_examples,
            "training_tokens": self.training_tokens,
            "validation_tokens": self.validation_tokens,
            "encoding": self.encoding,
            "hyperparameters": self.hyperparameters,
            "steps": self.steps,
            "trained_tokens": self.trained_tokens,
            "cost_usd": self.cost_usd,
            "cost_note": self.cost_note,
            "duration_s": self.duration_s,
            "duration_note": self.duration_note,
            "deprecation": self.deprecation,
            "request_body": self.request_body,
            "training_report": self.training.to_json() if self.training is not None else None,
        }

    def render_text(self, problems: bool = False) -> list[str]:
        """The summary, one terminal-safe line each. `problems`: also list the blocking
        problems and the warnings (the CLI; the app shows them apart)."""
        r = self.request
        where = "the local backend" if self.local else "the provider"
        lines = [f"{METHOD_LABELS.get(r.method, r.method)} of {r.model or '(no model)'} on {where}"]
        training = _file_name(r.training_path, r.training_file_id)
        figures = _file_line(training, self.training_examples, self.training_tokens, self.encoding)
        lines.append(f"  training    {figures}")
        if r.validation_path is not None or r.validation_file_id:
            name = _file_name(r.validation_path, r.validation_file_id)
            figures = _file_line(name, self.validation_examples, self.validation_tokens, self.encoding)
            lines.append(f"  validation  {figures}")
        if self.hyperparameters is not None:
            given = {k for k, v in r.hyperparameters.items() if v not in (None, "", "auto")}
            shown = [f"{k} {v}{'' if k in given else ' (auto)'}" for k, v in self.hyperparameters.items()]
            lines.append(f"  hyperparams {', '.join(shown)}")
        if self.steps is not None:
            lines.append(f"  steps       {self.steps:,}")
        if self.trained_tokens is not None:
            epochs = (self.hyperparameters or {}).get("n_epochs")
            lines.append(f"  trained     {self.trained_tokens:,} tokens ({self.training_tokens:,} × {epochs} epochs)")
        cost = f"${self.cost_usd:,.2f}" if self.cost_usd is not None else "unknown"
        lines.append(f"  cost        {cost}" + (f" ({self.cost_note})" if self.cost_note else ""))
        duration = duration_text(self.duration_s) if self.duration_s is not None else self.duration_note
        lines.append(f"  duration    {duration}")
        if self.deprecation is not None:
            date, days = self.deprecation["shutdown_date"], self.deprecation["days_left"]
            lines.append(f"  shut down   {date}" if days <= 0 else f"  retires     {date} (in {days} days)")
        lines += [f"  note: {note}" for note in self.notes]
        if problems:
            lines += [f"✖ {line}" for line in self.blocking]
            lines += [f"⚠ {line}" for line in self.warnings]
        if self.blocking:
            lines.append(f"BLOCKED: {len(self.blocking)} problem(s) to fix before launching")
        else:
            lines.append("READY" + (f" ({len(self.warnings)} warning(s))" if self.warnings else ""))
        return [strip_controls(line) for line in lines]


def build_preflight(
    request: LaunchRequest,
    *,
    local: bool,
    model_info: dict[str, Any] | None = None,
    today: datetime.date | None = None,
    progress: Progress | None = None,
    cancel: Any = None,
) -> Preflight:
    """The pre-flight of `request` for a `local` (tunedeck's backend) or other provider.
    `model_info`: what the provider's model list says of the model (`shutdown_date`).
    Raises `ValidationCancelled` when `cancel` is set; bad files and fields never raise."""
    result = Preflight(request, local)
    result.problems = request.problems(local=local)
    result.blocking += [p.message for p in result.problems]
    _check_model(result, model_info, today or datetime.date.today())
    _check_grader(result)
    _check_files(result, progress, cancel)
    _resolve(result)
    _estimate_cost(result)
    if request.method in METHOD_HYPERPARAMETERS:  # an unknown one is a field problem, with no body to show
        body = request.body(
            _sent_file(request.training_path, request.training_file_id),
            _sent_file(request.validation_path, request.validation_file_id),
        )
        result.request_body = wire_body(body)
    # Model names, file ids and dataset text are untrusted: every line is safe for a terminal.
    for lines in (result.blocking, result.warnings, result.notes):
        lines[:] = [strip_controls(line) for line in lines]
    return result


# -- the model ------------------------------------------------------------------------------


def _check_model(result: Preflight, model_info: dict[str, Any] | None, today: datetime.date) -> None:
    shutdown = (model_info or {}).get("shutdown_date")
    if not isinstance(shutdown, str) or not shutdown:
        return
    try:
        date = datetime.date.fromisoformat(shutdown[:10])
    except ValueError:
        result.notes.append(f"the provider gives the model's shutdown date as {shutdown!r}, which is not a date")
        return
    days = (date - today).days
    result.deprecation = {"shutdown_date": date.isoformat(), "days_left": days}
    model = result.request.model
    if days <= 0:
        result.blocking.append(f"{model} was shut down on {date.isoformat()}: choose another model")
    elif days <= SHUTDOWN_WARNING_DAYS:
        result.warnings.append(f"{model} shuts down on {date.isoformat()} (in {days} day{'s' if days != 1 else ''})")


def _check_grader(result: Preflight) -> None:
    """An RFT grader as the server will judge it: its structure and templates (the rows it
    reads are checked with the files), and on a tunedeck backend, whether it can run it."""
    r = result.request
    if r.method != "reinforcement" or not isinstance(r.grader, dict):
        return  # no grader is a field problem already
    from .graders import check_grader_text

    check = check_grader_text(json.dumps(r.grader), [])
    result.blocking += [f"grader: {error}" for error in check.errors]
    if result.local:
        from tunedeck.backend import check_grader

        refusal = check_grader(r.grader)
        if refusal is not None and refusal.get("code") == "unsupported_grader":
            result.blocking.append(f"grader: {refusal.get('message')}")


# -- the files ------------------------------------------------------------------------------


def _check_files(result: Preflight, progress: Progress | None, cancel: Any) -> None:
    r = result.request
    if r.training_path is None:
        if r.training_file_id:
            result.warnings.append(
                f"the training file {r.training_file_id} is on the provider: it cannot be checked here, "
                "so its size, tokens and cost are unknown"
            )
        if r.validation_path is not None:
            _check_validation_alone(result, Path(r.validation_path), cancel)
        return
    if r.validation_path is None and r.validation_file_id:
        result.warnings.append(
            f"the validation file {r.validation_file_id} is on the provider: it cannot be checked here"
        )
    method = API_METHOD_FORMATS.get(r.method)
    if method is None:
        return  # the method is a field problem already
    grader = r.grader if method == "rft" and isinstance(r.grader, dict) else None
    try:
        report = validate_file(
            r.training_path,
            method=method,
            model=r.model.strip() or None,
            grader=grader,
            validation_file=r.validation_path,
            progress=progress,
            cancel=cancel,
        )
    except DatasetIOError as exc:
        result.blocking.append(strip_controls(str(exc)))
        return
    except GraderError as exc:
        result.blocking.append(f"grader: {strip_controls(str(exc))}")
        return
    result.training, result.validation = report, report.validation
    result.encoding = report.encoding
    for one in (report, report.validation):
        if one is not None:
            _summarize(result, one, Path(one.path).name)
    result.training_examples, result.training_tokens = report.examples, report.tokens.get("billed")
    if report.validation is not None:
        result.validation_examples = report.validation.examples
        result.validation_tokens = report.validation.tokens.get("billed")
    if result.local and base_model(r.model) != BUILTIN_BASE_MODEL:  # the built-in model bills these very tokens
        result.notes.append(
            f"tokens are counted by {report.encoding}; {r.model} bills by its own tokenizer, "
            "so its trained tokens will differ somewhat"
        )


def _check_validation_alone(result: Preflight, path: Path, cancel: Any) -> None:
    """A local validation file next to a training file on the provider: checked on its own.
    The validator checks a lone file as a training file, so its training-only minimum of
    examples is left out (a validation file needs one)."""
    r = result.request
    method = API_METHOD_FORMATS.get(r.method)
    if method is None:
        return
    grader = r.grader if method == "rft" and isinstance(r.grader, dict) else None
    try:
        report = validate_file(path, method=method, model=r.model.strip() or None, grader=grader, cancel=cancel)
    except (DatasetIOError, GraderError) as exc:
        result.blocking.append(strip_controls(str(exc)))
        return
    report.purpose = "validation"
    kept = [issue for issue in report.errors if issue.code != "too_few_examples"]
    report.error_count -= len(report.errors) - len(kept)
    report.errors = kept
    result.validation = report
    _summarize(result, report, path.name)
    result.validation_examples = report.examples
    result.validation_tokens = report.tokens.get("billed")


def _summarize(result: Preflight, report: ValidationReport, name: str) -> None:
    """The report's errors as blocking lines (the first few by line, then the count) and its
    warnings, one line per kind."""
    name = strip_controls(name)
    # Findings the local backend lets through: blank lines (counted exactly) and what image
    # parts point to (counted from the listed errors: a capped list leaves the rest blocking).
    lenient = [i for i in report.errors if _lenient(i)] if result.local else []
    lenient_count = report.counts.get("blank_line", 0) if result.local else 0
    lenient_count += sum(1 for i in lenient if i.code != "blank_line")
    count = report.error_count - lenient_count
    if count > 0:
        errors = [i for i in report.errors if not (result.local and _lenient(i))]
        result.blocking.append(f"{name} has {count:,} error{'s' if count != 1 else ''} the job would fail on")
        result.blocking += [_issue_line(name, issue) for issue in errors[:LISTED_ERRORS]]
        if count > LISTED_ERRORS:
            result.blocking.append(f"{name}: {count - LISTED_ERRORS:,} more; `tunedeck data validate` lists every one")
    if lenient:
        result.warnings.append(
            f"{name}: {lenient_count:,} finding(s) the local backend lets through, another provider refuses the "
            f"file for; first: {_issue_line(name, lenient[0])}"
        )
    by_code: dict[str, list[Issue]] = {}
    for issue in report.warnings:
        by_code.setdefault(issue.code, []).append(issue)
    for code, issues in by_code.items():
        if result.local and code == "unknown_model":
            continue  # every local model is unknown to the price table; the notes say what counts
        total = report.counts.get(code, len(issues))
        first = issues[0]
        if total <= 1 or first.line is None:
            result.warnings.append(_issue_line(name, first))
        else:
            first_line = _issue_line(name, first)
            result.warnings.append(f"{name}: {total:,} × {WARNINGS.get(code, code)}; first: {first_line}")


def _lenient(issue: Issue) -> bool:
    """An error the local backend does not fail a job for (`ExampleReader`'s options there)."""
    return issue.code == "blank_line" or is_image_target_issue(issue.code, issue.field)


def _issue_line(name: str, issue: Issue) -> str:
    where = f"{name} line {issue.line}" if issue.line is not None else name
    at = f" (at {issue.field})" if issue.field else ""
    return strip_controls(f"{where}: {issue.message}{at}")


# -- what it will be ------------------------------------------------------------------------


def _resolve(result: Preflight) -> None:
    r = result.request
    if r.method not in METHOD_HYPERPARAMETERS or any(p.field.startswith("hyperparameters.") for p in result.problems):
        return
    requested = {name: r.hyperparameter(name) for name in METHOD_HYPERPARAMETERS[r.method]}
    if result.training_examples is None:
        result.hyperparameters = requested  # "auto" stays: the size is not known here
        return
    n = result.training_examples
    resolved = resolve_hyperparameters(requested, n)
    result.hyperparameters = resolved
    batch = max(1, min(resolved["batch_size"], n))
    result.steps = math.ceil(n / batch) * resolved["n_epochs"] if n else 0
    if result.training_tokens is not None:
        result.trained_tokens = result.training_tokens * resolved["n_epochs"]


def _estimate_cost(result: Preflight) -> None:
    r = result.request
    if result.local:
        result.cost_usd, result.cost_note = 0.0, "the local backend trains on this machine: nothing is billed"
        return
    price = (result.training.estimate.get("price") if result.training is not None else None) or {}
    per_million = price.get("usd_per_1m_training_tokens")
    if r.method == "reinforcement":
        result.cost_note = "RFT is billed per hour of training ($100/h), not per token"
        result.warnings.append(f"{result.cost_note}: the cost depends on how long training takes")
    elif result.trained_tokens is None:
        result.cost_note = "the training tokens are not known here"
    elif per_million is None:
        result.cost_note = f"no price is known for {r.model}"
        result.warnings.append(f"{result.cost_note}: the cost cannot be estimated")
    else:
        result.cost_usd = round(result.trained_tokens / 1e6 * per_million, 6)
        result.cost_note = (
            f"{price.get('model')} at ${per_million:.2f} per 1M training tokens, prices of {price.get('table_date')}"
            + (f"; {price['note']}" if price.get("note") else "")
        )
    result.duration_note = (
        "unknown until training starts (the job then shows its estimated finish)"
        if result.local
        else "unknown: it depends on the provider's queue and the model (the job shows its estimated finish once running)"
    )


# -- text -----------------------------------------------------------------------------------


def _sent_file(path: Path | str | None, file_id: str | None) -> str | None:
    """What the body names a file by: its id, or a placeholder for the upload to come."""
    if file_id:
        return file_id
    return f"<uploaded at launch: {_file_name(path, None)}>" if path is not None else None


def _file_name(path: Path | str | None, file_id: str | None) -> str:
    return strip_controls(Path(path).name) if path is not None else (file_id or "(none)")


def _file_line(name: str, examples: int | None, tokens: int | None, encoding: str | None) -> str:
    if examples is None:
        return f"{name}: not checked here"
    counted = f", {tokens:,} billed tokens per epoch ({encoding})" if tokens is not None else ""
    return f"{name}: {examples:,} examples{counted}"
