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
`stats`, `report`, `split`, `convert`. The local backend imports this package for its dataset
rules, so nothing here imports the backend, the front ends or Textual; numpy is loaded only
once a scan is assembled.
"""

from .checker import check_line, check_object
from .codes import ERRORS, WARNINGS, Issue
from .grader import GraderError
from .report import ValidationReport, render_text
from .validate import DatasetIOError, ValidationCancelled, validate_file

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
