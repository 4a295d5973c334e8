"""Uploaded JSONL training data, checked the way the API checks it when a job starts.

What is valid is decided by `tunedeck.core.datasets`, the rules the app's validator reports
with: its `ExampleReader` reads the file line by line (never whole) as the format the job's
method needs, and stops at the first error. This module words that error the way the API
does, naming the line (and the message or field), e.g. "Invalid file format. Line 7,
message 2: 'role' is missing", and turns the valid examples into what the trainers consume.
Files are untrusted: a bad file raises `DatasetError`, nothing else escapes.

It also counts the file's billed tokens the way the validator does (`tokens.example_tokens`
by the model's encoding, each example capped at the model's context), so the `trained_tokens`
of a built-in job is the figure the app's pre-flight showed before the launch.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tunedeck.core.datasets.codes import Issue
from tunedeck.core.datasets.detect import API_METHOD_FORMATS, FORMAT_ROLES, MISSING_KEY_FIELD, line_format
from tunedeck.core.datasets.grader import MISSING, lookup, parse_path
from tunedeck.core.datasets.messages import short
from tunedeck.core.datasets.models import model_info
from tunedeck.core.datasets.reader import MIN_EXAMPLES, ExampleReader, InvalidExample
from tunedeck.core.datasets.tokens import Count, counter, example_tokens

from ..trainers.base import ChatExample, ToolCall, Turn

#: How job errors name the formats (the core's names: sft, dpo, rft, legacy).
FORMAT_NAMES = {
    "sft": "the chat format",
    "dpo": "the preference (DPO) format",
    "rft": "the reinforcement format",
    "legacy": "the legacy prompt/completion format (babbage-002 and davinci-002 only)",
}
FORMAT_SHAPES = {
    "sft": '{"messages": [...]} ending with an assistant answer',
    "dpo": '{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}',
    "rft": '{"messages": [...]} ending with a user turn, plus fields for the grader',
    "legacy": '{"prompt": "...", "completion": "..."}',
}
NOTHING_TO_LEARN = "Invalid file format. No assistant message has weight 1, so there is nothing to learn"


class DatasetError(Exception):
    """A file that cannot be trained on; becomes the job's `error`."""

    def __init__(self, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class Dataset:
    format: str  # the core's format name: "sft", "dpo" or "rft"
    examples: list[Any]  # ChatExample for chat files; the parsed JSON objects otherwise
    n_tokens: int
    """Billed tokens of the whole file, as the validator counts them (what the built-in
    trainer's `trained_tokens` bills per epoch)."""

    @property
    def n_examples(self) -> int:
        return len(self.examples)


def load_dataset(path: Path, method: str, purpose: str = "training", model: str = "") -> Dataset:
    """Parse and check `path` for a `method` job; `purpose` is "training" or "validation";
    `model` (the job's) settles the encoding and context its tokens are billed by."""
    param = f"{purpose}_file"
    code = f"invalid_{purpose}_file"
    expected = API_METHOD_FORMATS.get(method, "sft")
    # Blank lines and the targets of image parts are let through: see the reader's module doc.
    reader = ExampleReader(expected, purpose, skip_blank_lines=True, check_image_targets=False)
    convert = CONVERTERS[expected]
    info = model_info(model)
    count, context = _counter(info.encoding), info.context
    examples: list[Any] = []
    n_tokens = 0
    try:
        handle = path.open("rb")
    except OSError:
        raise DatasetError(code, param, f"The {purpose} file could not be read; was it deleted?") from None
    with handle:
        try:
            for _, obj in reader.read(handle):
                examples.append(convert(obj))
                # The validator bills a longer example as the context it is cut to.
                n_tokens += min(example_tokens(obj, expected, count), context)
        except InvalidExample as exc:
            message = _line_message(exc.issue, exc.example, expected, method, len(examples) + 1)
            raise DatasetError(code, param, f"Invalid file format. {message}") from None
    for issue in reader.file_issues():
        raise _file_error(issue, reader.examples, purpose, param)
    return Dataset(expected, examples, n_tokens)


def _file_error(issue: Issue, count: int, purpose: str, param: str) -> DatasetError:
    if issue.code == "nothing_to_learn":
        return DatasetError(f"invalid_{purpose}_file", param, NOTHING_TO_LEARN)
    code = "invalid_n_examples" if purpose == "training" else f"invalid_{purpose}_file"
    if issue.code == "too_few_examples":
        minimum = MIN_EXAMPLES[purpose]
        plural = "examples" if minimum > 1 else "example"
        message = f"{purpose.capitalize()} file has {count} example(s), but must have at least {minimum} {plural}"
        return DatasetError(code, param, message)
    return DatasetError(code, param, f"{purpose.capitalize()} file has too many examples: {issue.message}")


# -- the first error, as a job reports it ---------------------------------------------------

#: A field inside one message: `messages[2].role`, `input.messages[0]`, `preferred_output[0].content`.
_IN_MESSAGE = re.compile(
    r"(?:(?P<owner>\w+)\.)?(?P<list>messages|preferred_output|non_preferred_output)\[(?P<index>\d+)\](?:\.(?P<rest>.+))?"
)
_MESSAGES_OF = re.compile(r"(?P<owner>\w+)\.messages")


def _line_message(issue: Issue, example: Any, expected: str, method: str, number: int) -> str:
    """The first error of a line: its format when that is not the method's (whatever the
    error, the format is what to fix first), else where it is and what is wrong. It starts as
    the API's does ("Example 12, message 2"), `number` counting examples from 1, and names the
    line too, which is what an editor goes to."""
    at = f"Example {number} (line {issue.line})"
    if isinstance(example, dict):
        found = line_format(example, expected)
        if found is None:
            return (
                f"{at}: not an example in {FORMAT_NAMES[expected]} ({FORMAT_SHAPES[expected]}); "
                f"the '{MISSING_KEY_FIELD[expected]}' key is missing"
            )
        if found != expected:
            return (
                f"{at}: the example is in {FORMAT_NAMES[found]}, but the job's method is {method}, "
                f"which needs {FORMAT_NAMES[expected]}: {FORMAT_SHAPES[expected]}"
            )
    return f"{at}{_where(issue.field)}: {_what(issue, example, expected)}"


def _where(field: str | None) -> str:
    """Where in the line: ", message 2" (counted from 1), ", input, message 1", plus the part of
    the message when the wording does not name it; a top-level key is named by the wording."""
    if not field:
        return ""
    match = _IN_MESSAGE.fullmatch(field)
    if match:
        owner = match["owner"] or (match["list"] if match["list"] != "messages" else None)
        rest = match["rest"]
        where = (f", {owner}" if owner else "") + f", message {int(match['index']) + 1}"
        return where + (f", {rest}" if rest and not rest.isidentifier() else "")
    match = _MESSAGES_OF.fullmatch(field)
    if match:
        return f", {match['owner']}"
    return "" if field.isidentifier() else f", {field}"


def _what(issue: Issue, example: Any, expected: str) -> str:
    """What is wrong, in the API's words where they differ from the validator's."""
    value = lookup(example, parse_path(issue.field)) if issue.field and example is not None else None
    if issue.code == "invalid_utf8":
        return "not valid UTF-8 text"
    if issue.code == "message_missing_key":
        return "'role' is missing"
    if issue.code == "unrecognized_role":
        return f"unknown role {short(value)} (expected one of {', '.join(FORMAT_ROLES[expected])})"
    if issue.code == "missing_content" and (value is None or value is MISSING):
        return "'content' is missing"
    if issue.code == "invalid_weight" and issue.message.startswith("'weight' must be"):
        return f"'weight' must be 0 or 1, not {short(value)}"
    return issue.message


# -- what the trainers consume --------------------------------------------------------------


def chat_turns(messages: Any) -> list[Turn]:
    """The turns of a `messages` list already checked by `load_dataset` (DPO and RFT keep
    their rows as parsed JSON and read the messages again when training starts)."""
    return [_turn(message) for message in messages]


def _turn(message: dict[str, Any]) -> Turn:
    return Turn(
        role=message["role"],
        text=_message_text(message),
        weight=int(message.get("weight", 1)),
        tool_calls=message_calls(message),
    )


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:  # an assistant turn that only calls tools
        return ""
    if isinstance(content, list):
        # images are accepted (as the API does) but the built-in trainer reads text only
        return " ".join(part["text"] if part.get("type") == "text" else "" for part in content)
    return content


def message_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """An assistant message's function calls (`tool_calls`, or the older `function_call`)."""
    calls = message.get("tool_calls")
    if not calls and isinstance(message.get("function_call"), dict):
        calls = [{"function": message["function_call"]}]
    found = []
    for call in calls or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments")
            found.append(ToolCall(function["name"], arguments if isinstance(arguments, str) else "{}"))
    return tuple(found)


def tool_names(tools: Any) -> list[str]:
    """The names of the functions a row (or a request) offers, in order."""
    names = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
        elif isinstance(tool, dict) and isinstance(tool.get("name"), str):  # the older `functions` list
            names.append(tool["name"])
    return names


@functools.lru_cache(maxsize=None)
def _counter(encoding: str) -> Count:
    """One counter per encoding for the process: its cache of repeated strings (roles,
    system prompts) serves every job."""
    return counter(encoding)


def _convert_chat(obj: dict[str, Any]) -> ChatExample:
    tools = tool_names(obj.get("tools")) or tool_names(obj.get("functions"))
    return ChatExample(tuple(chat_turns(obj["messages"])), tuple(tools))


def _keep_row(obj: dict[str, Any]) -> dict[str, Any]:
    """DPO and RFT rows stay parsed JSON: their trainers read the messages when they start."""
    return obj


CONVERTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "sft": _convert_chat,
    "dpo": _keep_row,
    "rft": _keep_row,
}
