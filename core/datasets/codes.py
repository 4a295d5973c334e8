"""The stable issue codes of the dataset validator, and the record that carries one.

Codes are part of the output contract (`tunedeck data validate --json`): scripts match on
them, so a code is never renamed or reused for something else. Add new ones at the end of
their table. Each code has a one-line description, shown in the human summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR, WARNING = "error", "warning"

#: Problems that make the file unacceptable (the API would fail the job).
ERRORS: dict[str, str] = {
    # reading a line
    "invalid_utf8": "the line is not valid UTF-8",
    "invalid_json": "the line is not valid JSON",
    "blank_line": "the line is empty; every line must hold one example",
    "line_too_long": "the line is longer than the validator reads in one piece",
    "not_an_object": "the line is JSON but not an object",
    # chat messages (SFT, RFT, the input of DPO)
    "missing_messages_list": "no non-empty 'messages' list",
    "message_not_object": "a message is not a JSON object",
    "message_missing_key": "a message has no 'role'",
    "message_unrecognized_key": "a message has a key the format does not allow",
    "unrecognized_role": "a message has a role the format does not allow",
    "missing_content": "a message has no content",
    "invalid_content": "a message's content is neither a string nor a list of parts",
    "invalid_content_part": "a content part is not valid text or image",
    "invalid_field_type": "a field has the wrong JSON type",
    "example_missing_assistant_message": "an SFT example has no assistant message to learn from",
    "invalid_weight": "'weight' is not 0 or 1, or is on a non-assistant message",
    "invalid_tool_call": "a tool call (or tool message) is malformed",
    "invalid_tools": "the 'tools' (or 'functions') list is malformed",
    "too_many_images": "an example holds more than 10 images",
    # DPO
    "missing_input": "a DPO example has no 'input' object",
    "missing_preferred_output": "a DPO example has no 'preferred_output'",
    "missing_non_preferred_output": "a DPO example has no 'non_preferred_output'",
    "invalid_preference_output": "a preference output is not exactly one assistant text message",
    # RFT
    "rft_system_role": "RFT messages may not use the 'system' role (use 'developer')",
    "rft_last_message_not_user": "an RFT prompt does not end with a user message",
    "grader_field_missing": "a field the grader reads ({{item.x}}) is missing from the row",
    # legacy prompt/completion
    "missing_prompt": "a legacy example has no string 'prompt'",
    "missing_completion": "a legacy example has no non-empty string 'completion'",
    # the file as a whole
    "format_mismatch": "the data's format does not match the method (or model)",
    "too_few_examples": "fewer examples than the API's minimum (10)",
    "too_many_examples": "more examples than the method allows",
    "nothing_to_learn": "no assistant message of an SFT training file has weight 1",
}

#: Problems worth knowing that do not stop the job.
WARNINGS: dict[str, str] = {
    "example_too_long": "an example is longer than the model's context; it will be truncated",
    "duplicate_example": "an example repeats an earlier one",
    "train_validation_overlap": "a training example also appears in the validation file",
    "missing_system_message": "an SFT example has no system message",
    "identical_preference_outputs": "a DPO example prefers an answer identical to the rejected one",
    "unrecognized_example_key": "an example has a top-level key the format ignores",
    "no_trained_messages": "every assistant message of an example has weight 0",
    "byte_order_mark": "the file starts with a UTF-8 byte order mark",
    "unsupported_model": "the model is not listed as a base for this method",
    "unknown_model": "the model is unknown; tokens use o200k_base and no price is known",
}

ALL_CODES: dict[str, str] = {**ERRORS, **WARNINGS}


def severity(code: str) -> str:
    return WARNING if code in WARNINGS else ERROR


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding: `line` is 1-based (None for the file as a whole); `field` is a path
    into the example such as `messages[2].role` (None when the whole line is meant)."""

    line: int | None
    code: str
    message: str
    field: str | None = None

    @property
    def severity(self) -> str:
        return severity(self.code)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out

    def location(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}, {self.field}" if self.field else where
