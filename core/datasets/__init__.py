"""The dataset engine: validate, count tokens, estimate cost, split, convert.

    from tunedeck.core.datasets import validate_file
    report = validate_file("train.jsonl", method="auto", model=None, grader=None)
    report.ok, report.error_count, report.errors[0].line, report.to_json()

Modules: `codes` (stable issue codes), `detect` (format names, keys and roles; which format
a line and a file are in), `checker` (the pure per-line checker), `rules_*` (one per format),
`messages` (the checks of a chat conversation), `grader` (the `{{item.*}}` / `{{sample.*}}`
template grammar), `tokens` and `models` (tokenizers, context limits, prices), `scan` (one
worker's pass over a byte range), `validate` (the streaming driver), `reader` (a file read to
its first error, as a job's start reads it: the local backend's entry point), `dedup`,
`stats`, `report`, `split`, `convert`, and `jobrules` (what a valid job request is). The local
backend imports this package for its dataset rules, so nothing here imports the backend, the
front ends or Textual; numpy is loaded only once a scan is assembled. The names below load
on first use: the service and the CLI read the job rules at start-up, and the validator
costs tens of milliseconds to import.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .checker import check_line, check_object
    from .codes import ERRORS, WARNINGS, Issue
    from .grader import GraderError
    from .report import ValidationReport, render_text
    from .validate import DatasetIOError, ValidationCancelled, validate_file

# name -> the module that defines it, imported on first use: the job rules and the format
# names are read at start-up (the service, the CLI), the validator only when a file is checked.
_LAZY = {
    "check_line": ".checker",
    "check_object": ".checker",
    "ERRORS": ".codes",
    "WARNINGS": ".codes",
    "Issue": ".codes",
    "GraderError": ".grader",
    "ValidationReport": ".report",
    "render_text": ".report",
    "DatasetIOError": ".validate",
    "ValidationCancelled": ".validate",
    "validate_file": ".validate",
}

__all__ = [
    "ERRORS",
    "WARNINGS",
    "DatasetIOError",
    "GraderError",
    "Issue",
    "ValidationCancelled",
    "ValidationReport",
    "check_line",
    "check_object",
    "render_text",
    "validate_file",
]
assert set(__all__) == set(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
