"""Reading tool calls back out of what a transformer wrote.

An open model calls a tool by writing text in its chat template's tool format, and each
family writes its own:
- Qwen2.5, Hermes, SmolLM3 (and tunedeck's tiny test model): `<tool_call>{"name": ...,
  "arguments": {...}}</tool_call>`, one block per call;
- Llama 3.1+: `<|python_tag|>{"name": ..., "parameters": {...}}` or the bare object,
  several joined by `;`;
- Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]`;
- models that answer in a fenced block: ```` ```json {...} ``` ```` or ```` ```tool_call ```` .

Special tokens are gone by the time the text is decoded, so the reader does not rely on
them: it finds every JSON object or array in the text, and one whose shape is a call
(`name` plus `arguments` or `parameters`, or OpenAI's own `{"type": "function",
"function": {...}}`) naming an offered function is a call. What is left, with the wrappers
taken out, is the message's text. A JSON answer that names no offered function stays text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from .trainers.base import ToolCall

WRAPPERS = re.compile(
    r"</?tool_call>|</?function_call>|<\|python_tag\|>|\[TOOL_CALLS\]|\[/?TOOL_CALL\]|```(?:json|tool_call|tool_code)?"
)
_DECODER = json.JSONDecoder()


def parse_tool_calls(text: str, offered: Sequence[str]) -> tuple[str, list[ToolCall]]:
    """The text left and the calls of offered functions found in `text`, in order."""
    names = set(offered)
    calls: list[ToolCall] = []
    kept: list[str] = []
    cursor = index = 0
    while index < len(text):
        if text[index] not in "{[":
            index += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, index)
        except ValueError:
            index += 1
            continue
        found = _calls_in(value, names)
        if found:
            kept.append(text[cursor:index])
            calls.extend(found)
            cursor = end
        index = end
    if not calls:
        return text, []
    kept.append(text[cursor:])
    left = WRAPPERS.sub("", "".join(kept))
    left = re.sub(r"(?m)^\s*;\s*$", "", left)  # the `;` that joins Llama's calls
    return left.strip(), calls


def _calls_in(value: Any, names: set[str]) -> list[ToolCall]:
    if isinstance(value, list):
        calls = [_call(item, names) for item in value]
        return [c for c in calls if c is not None] if calls and all(calls) else []
    call = _call(value, names)
    return [call] if call else []


def _call(value: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    if value.get("type") == "function" and isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    extra = set(value) - {"name", "arguments", "parameters", "id", "type"}
    if extra:
        return None  # an object that has a `name` but is not a call
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return ToolCall(name, arguments)
    return ToolCall(name, json.dumps(arguments, ensure_ascii=False))
