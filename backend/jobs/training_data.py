"""Validation of uploaded JSONL training data, the way the API checks it when a job starts.

A file is read line by line (never whole), each line's format is recognised (chat,
preference, reinforcement, legacy completion) and checked against the job's method.
The first problem fails the job with an error that names the line, e.g.
"Invalid file format. Line 7, message 2: 'role' is missing". Files are untrusted:
every check raises `DatasetError`, nothing else escapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..trainers.base import ChatExample, Turn
from ..trainers.ngram.features import tokenize

MIN_TRAINING_EXAMPLES = 10
MIN_VALIDATION_EXAMPLES = 1
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
TOKENS_PER_MESSAGE = 3  # the cookbook's estimate: 3 per message + 3 priming tokens per example
TOKENS_PER_EXAMPLE = 3

FORMAT_NAMES = {
    "chat": "the chat format",
    "preference": "the preference (DPO) format",
    "reinforcement": "the reinforcement format",
    "completion": "the legacy prompt/completion format (babbage-002 and davinci-002 only)",
}
FORMAT_SHAPES = {
    "chat": '{"messages": [...]} ending with an assistant answer',
    "preference": '{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}',
    "reinforcement": '{"messages": [...]} ending with a user turn, plus fields for the grader',
    "completion": '{"prompt": "...", "completion": "..."}',
}
METHOD_FORMATS = {"supervised": "chat", "dpo": "preference", "reinforcement": "reinforcement"}


class DatasetError(Exception):
    """A file that cannot be trained on; becomes the job's `error`."""

    def __init__(self, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


class LineError(Exception):
    """A problem with one line; the caller adds the line number."""


@dataclass(frozen=True, slots=True)
class Dataset:
    format: str
    examples: list[Any]  # ChatExample for chat files; the parsed JSON objects otherwise
    n_tokens: int  # tokens of the whole file by our tokenizer (what `trained_tokens` bills per epoch)

    @property
    def n_examples(self) -> int:
        return len(self.examples)


def load_dataset(path: Path, method: str, purpose: str = "training") -> Dataset:
    """Parse and check `path` for a `method` job; `purpose` is "training" or "validation"."""
    param = f"{purpose}_file"
    code = f"invalid_{purpose}_file"
    expected = METHOD_FORMATS.get(method, "chat")
    examples: list[Any] = []
    n_tokens = 0
    try:
        handle = path.open("rb")
    except OSError:
        raise DatasetError(code, param, f"The {purpose} file could not be read; was it deleted?") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # blank lines (a trailing newline, say) are not examples
            try:
                example, tokens = _parse_line(raw, expected, method)
            except LineError as exc:
                raise DatasetError(code, param, f"Invalid file format. Line {number}{exc}") from None
            examples.append(example)
            n_tokens += tokens
    _check_count(len(examples), purpose, param)
    if expected == "chat" and purpose == "training" and not any(_has_trainable_turn(e) for e in examples):
        message = "Invalid file format. No assistant message has weight 1, so there is nothing to learn"
        raise DatasetError(code, param, message)
    return Dataset(expected, examples, n_tokens)


def _check_count(count: int, purpose: str, param: str) -> None:
    minimum = MIN_TRAINING_EXAMPLES if purpose == "training" else MIN_VALIDATION_EXAMPLES
    if count >= minimum:
        return
    code = "invalid_n_examples" if purpose == "training" else f"invalid_{purpose}_file"
    plural = "examples" if minimum > 1 else "example"
    raise DatasetError(
        code, param, f"{purpose.capitalize()} file has {count} example(s), but must have at least {minimum} {plural}"
    )


def _has_trainable_turn(example: ChatExample) -> bool:
    return any(t.role == "assistant" and t.weight for t in example.turns)


def _parse_line(raw: bytes, expected: str, method: str) -> tuple[Any, int]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError(": not valid UTF-8 text") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise LineError(f": not valid JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise LineError(": not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise LineError(f": each line must be a JSON object, not {_json_type(obj)}")
    found = detect_format(obj)
    if found is None:
        raise LineError(
            f": not an example in {FORMAT_NAMES[expected]} ({FORMAT_SHAPES[expected]}); "
            f"the {_key_hint(expected)} key is missing"
        )
    if found != expected:
        raise LineError(
            f": the example is in {FORMAT_NAMES[found]}, but the job's method is {method}, "
            f"which needs {FORMAT_NAMES[expected]}: {FORMAT_SHAPES[expected]}"
        )
    return PARSERS[expected](obj)


def _key_hint(expected: str) -> str:
    return {"preference": "'input'", "completion": "'prompt'"}.get(expected, "'messages'")


def detect_format(obj: dict[str, Any]) -> str | None:
    """Which dataset format a line is in, from its keys (None: none we know)."""
    if "input" in obj and ("preferred_output" in obj or "non_preferred_output" in obj):
        return "preference"
    if "prompt" in obj and "completion" in obj:
        return "completion"
    if "messages" not in obj:
        return None
    messages = obj["messages"]
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        if messages[-1].get("role") == "assistant":
            return "chat"
    # A prompt with no answer plus free-form keys for graders is an RFT example.
    return "reinforcement" if set(obj) - CHAT_KEYS else "chat"


# -- chat messages ----------------------------------------------------------------------------


def chat_turns(messages: Any) -> list[Turn]:
    """The turns of a `messages` list this module has already checked (DPO and RFT keep
    their rows as parsed JSON and read the messages again when training starts)."""
    return _parse_messages(messages)


def _parse_messages(messages: Any, where: str = "") -> list[Turn]:
    if not isinstance(messages, list) or not messages:
        raise LineError(f"{where}: 'messages' must be a non-empty list")
    return [_parse_message(message, index, where) for index, message in enumerate(messages, start=1)]


def _parse_message(message: Any, index: int, where: str) -> Turn:
    at = f"{where}, message {index}"
    if not isinstance(message, dict):
        raise LineError(f"{at}: must be an object, not {_json_type(message)}")
    role = message.get("role")
    if role is None:
        raise LineError(f"{at}: 'role' is missing")
    if role not in CHAT_ROLES:
        raise LineError(f"{at}: unknown role {_short(role)} (expected one of {', '.join(CHAT_ROLES)})")
    weight = 1
    if "weight" in message:
        weight = message["weight"]
        if role != "assistant":
            raise LineError(f"{at}: only assistant messages may have a 'weight'")
        if isinstance(weight, bool) or weight not in (0, 1):
            raise LineError(f"{at}: 'weight' must be 0 or 1, not {_short(weight)}")
    return Turn(role=role, text=_message_text(message, role, at), weight=int(weight))


def _message_text(message: dict[str, Any], role: str, at: str) -> str:
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return _render_calls(message, at)
        raise LineError(f"{at}: 'content' is missing")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_part_text(part, role, at) for part in content)
    raise LineError(f"{at}: 'content' must be a string or a list of content parts, not {_json_type(content)}")


def _part_text(part: Any, role: str, at: str) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return part["text"]
    if kind == "image_url" and role == "user":
        return ""  # images are accepted (as the API does) but the built-in trainer reads text only
    raise LineError(f"{at}: unsupported content part {_short(part)}")


def _render_calls(message: dict[str, Any], at: str) -> str:
    """Tool calls as text, so the model can still learn which function to call."""
    calls = message.get("tool_calls") or [{"function": message.get("function_call")}]
    if not isinstance(calls, list):
        raise LineError(f"{at}: 'tool_calls' must be a list")
    rendered = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise LineError(f"{at}: each tool call needs a function with a name")
        rendered.append(f"{function['name']}({function.get('arguments', '')})")
    return " ".join(rendered)


def _count_tokens(turns: list[Turn]) -> int:
    return TOKENS_PER_EXAMPLE + sum(TOKENS_PER_MESSAGE + len(tokenize(t.text)) for t in turns)


# -- one parser per format ------------------------------------------------------------------


def _parse_chat(obj: dict[str, Any]) -> tuple[ChatExample, int]:
    turns = _parse_messages(obj.get("messages"))
    if not any(t.role == "assistant" for t in turns):
        raise LineError(": the example has no assistant message to learn from")
    return ChatExample(tuple(turns)), _count_tokens(turns)


def _parse_preference(obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
    source = obj.get("input")
    if not isinstance(source, dict):
        raise LineError(": 'input' must be an object with 'messages'")
    turns = _parse_messages(source.get("messages"), where=", input")
    for key in ("preferred_output", "non_preferred_output"):
        output = obj.get(key)
        if not isinstance(output, list) or len(output) != 1:
            raise LineError(f": '{key}' must be a list holding exactly one assistant message")
        answer = _parse_messages(output, where=f", {key}")
        if answer[0].role != "assistant":
            raise LineError(f", {key}: the message must have role assistant")
        turns += answer
    return obj, _count_tokens(turns)


def _parse_reinforcement(obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
    turns = _parse_messages(obj.get("messages"))
    return obj, _count_tokens(turns)


def _parse_completion(obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise LineError(": 'prompt' and 'completion' must be strings")
    return obj, TOKENS_PER_EXAMPLE + len(tokenize(prompt)) + len(tokenize(completion))


PARSERS: dict[str, Callable[[dict[str, Any]], tuple[Any, int]]] = {
    "chat": _parse_chat,
    "preference": _parse_preference,
    "reinforcement": _parse_reinforcement,
    "completion": _parse_completion,
}


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a boolean"


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut short (file contents can be huge)."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
