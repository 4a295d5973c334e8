"""The dataset engine: validate, count tokens, estimate cost, split, convert (issue 4).

    from tunedeck.core.datasets import validate_file
    report = validate_file("train.jsonl", method="auto", model=None, grader=None)
    report.ok, report.error_count, report.errors[0].line, report.to_json()

Modules: `codes` (stable issue codes), `checker` (the pure per-line checker), `rules_*`
(one per format), `detect`, `tokens` and `models` (tokenizers, context limits, prices),
`scan` (one worker's pass over a byte range), `validate` (the streaming driver), `dedup`,
`stats`, `report`, `split`, `convert`. Nothing here imports Textual; numpy is loaded only
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
