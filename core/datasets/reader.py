"""A file read the way a fine-tuning job's start reads it: example by example, stopping at the
first error.

    reader = ExampleReader("sft", "training")
    with open(path, "rb") as f:
        for line, example in reader.read(f):  # raises InvalidExample at the first error
            ...
    problems = reader.file_issues()  # too few or too many examples, nothing to learn

Each line goes through the checks `validate_file` reports with (`checker.check_object`, the
same reading of bytes, BOM and long lines), and `count_issues` holds the file-level rules of
both, so a file the app's validator passes is a file a job accepts, and the first error a job
names is one the validator lists. The local backend runs this when a job starts.

Two options let through what the app reports as errors, for the local backend's sake:
`skip_blank_lines` skips a whitespace-only line rather than failing on it (`blank_line`), so a
stray empty line does not fail a job; `check_image_targets=False` leaves unchecked what an
image part points to (its URL, data or detail), since the local trainers read only the text
of a conversation and never fetch an image. Where an image may be still is checked.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Iterator

from .checker import BOM, check_object, is_blank, parse_line
from .codes import WARNINGS, Issue
from .messages import is_image_target_issue
from .scan import BLANK_LINE_MESSAGE, MAX_LINE_BYTES, line_too_long_message, skip_long_line

MIN_EXAMPLES = {"training": 10, "validation": 1}
MAX_RFT_EXAMPLES = {"training": 50_000, "validation": 1_000}
MAX_IMAGE_EXAMPLES = 50_000


class InvalidExample(Exception):
    """The first error of a file: `issue` (its line, code, field and message) and the line's
    parsed JSON (`example`; None when the line is not JSON)."""

    def __init__(self, issue: Issue, example: Any = None) -> None:
        super().__init__(f"line {issue.line}: {issue.message}")
        self.issue = issue
        self.example = example


def count_issues(
    purpose: str, fmt: str, examples: int, *, shaped: int = 0, trained: int = 0, with_images: int = 0
) -> list[Issue]:
    """The file-level errors of a `purpose` ("training" or "validation") file checked as `fmt`,
    from its counts: `examples` (lines that are not blank), `shaped` (SFT examples whose
    messages could be read), `trained` (those with an assistant message of weight 1) and
    `with_images` (examples holding an image)."""
    found: list[tuple[str, str]] = []
    minimum = MIN_EXAMPLES[purpose]
    if examples < minimum:
        message = f"the {purpose} file has {examples} example(s); the API needs at least {minimum}"
        found.append(("too_few_examples", message))
    limit = MAX_RFT_EXAMPLES[purpose]
    if fmt == "rft" and examples > limit:
        message = f"RFT allows at most {limit:,} {purpose} examples; the file has {examples:,}"
        found.append(("too_many_examples", message))
    if with_images > MAX_IMAGE_EXAMPLES:
        message = f"at most {MAX_IMAGE_EXAMPLES:,} examples may hold images; the file has {with_images:,}"
        found.append(("too_many_examples", message))
    if fmt == "sft" and purpose == "training" and shaped and not trained:
        found.append(("nothing_to_learn", "no assistant message of any example has weight 1: nothing is learned"))
    return [Issue(None, code, message) for code, message in found]


class ExampleReader:
    """Reads the examples of one file checked as `fmt`, counting what `file_issues` needs."""

    def __init__(
        self, fmt: str, purpose: str = "training", *, skip_blank_lines: bool = False, check_image_targets: bool = True
    ) -> None:
        self.fmt = fmt
        self.purpose = purpose
        self.skip_blank_lines = skip_blank_lines
        self.check_image_targets = check_image_targets
        self.examples = 0
        self.shaped = 0
        self.trained = 0
        self.with_images = 0

    def read(self, handle: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
        """`(line number, example)` for each example of `handle` (a file opened for bytes);
        raises `InvalidExample` at the first line with an error. Warnings never stop it."""
        limit = MAX_LINE_BYTES + 1
        readline = handle.readline
        number = 0
        while raw := readline(limit):
            number += 1
            if len(raw) == limit and raw[-1] != 10:
                size = skip_long_line(readline, raw, limit)
                raise InvalidExample(Issue(number, "line_too_long", line_too_long_message(size)))
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]  # a warning for the app; the JSON after it is read as usual
            if is_blank(raw):
                if self.skip_blank_lines:
                    continue
                raise InvalidExample(Issue(number, "blank_line", BLANK_LINE_MESSAGE))
            obj, bad = parse_line(raw)
            if bad is not None:
                raise InvalidExample(Issue(number, bad[0], bad[1]))
            found, info = check_object(obj, self.fmt)
            for code, field, message in found:
                if code in WARNINGS or (not self.check_image_targets and is_image_target_issue(code, field)):
                    continue
                raise InvalidExample(Issue(number, code, message, field), obj)
            self.examples += 1
            if info is not None:
                self.shaped += 1
                self.trained += info.trained > 0
                self.with_images += info.images > 0
            yield number, obj

    def file_issues(self) -> list[Issue]:
        """The file-level errors, once `read` is done (the first is what fails a job)."""
        counts = {"shaped": self.shaped, "trained": self.trained, "with_images": self.with_images}
        return count_issues(self.purpose, self.fmt, self.examples, **counts)
