"""Tool calls and JSON answers as the n-gram model's tokens, and the rules that keep an
answer to what the request allows.

The model predicts words. A tool call or a JSON object written as words would come back
mangled: its quotes, braces and spacing re-joined by guesswork. So structure has tokens of
its own:
- `<call:NAME>` starts a call of the function NAME;
- `<json>` starts an answer that is one JSON object;
- each leaf value of the call's arguments (or of the object) starts with `<arg:s:PATH>` (a
  string; its words and whitespace follow as tokens and are re-joined exactly) or
  `<arg:j:PATH>` (any other JSON value: its JSON text follows). PATH is the list of keys
  and indexes from the top as compact JSON, `["address","city"]`, so no key can be misread.
  Arguments that are not a JSON object are kept whole as one string at PATH `[]`.

No text token can look like one of these: the text tokenizer splits `<` from what follows.
An answer is its text tokens, then its calls (or `<json>` and its fields), then `<end>`.
Decoding re-assembles the calls' arguments and the object as JSON text, so what the model
writes is always valid JSON; which keys and values it writes is what it learned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from ..base import ToolCall, Turn

END_ID = 1  # where features.build_vocabulary puts `<end>`
CALL_PREFIX = "<call:"
JSON_TOKEN = "<json>"
ARG_PREFIX = "<arg:"
VALUE_PATTERN = re.compile(r"\w+|\s+|[^\w\s]")
"""A value's tokens: words, whitespace runs and single symbols, so "".join gives it back."""


def is_marker(token: str) -> bool:
    return token.startswith((CALL_PREFIX, ARG_PREFIX)) or token == JSON_TOKEN


def call_token(name: str) -> str:
    return f"{CALL_PREFIX}{name}>"


# -- encoding ---------------------------------------------------------------------------------


def structure_tokens(turn: Turn) -> list[str] | None:
    """The structured tokens of an assistant message (after its text tokens, for calls), or
    None when it has neither calls nor a JSON-object answer."""
    if turn.tool_calls:
        tokens: list[str] = []
        for call in turn.tool_calls:
            tokens.append(call_token(call.name))
            tokens.extend(_fields(_arguments_value(call.arguments)))
        return tokens
    value = json_object(turn.text)
    if value is None:
        return None
    return [JSON_TOKEN, *_fields(value)]


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a text is, or None (only an object is an answer the model structures)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _arguments_value(arguments: str) -> Any:
    value = json_object(arguments)
    return RawArguments(arguments) if value is None else value


@dataclass(frozen=True, slots=True)
class RawArguments:
    """Arguments that are not a JSON object: kept as the text they were."""

    text: str


def _fields(value: Any) -> list[str]:
    tokens: list[str] = []
    if isinstance(value, RawArguments):
        tokens.append(_arg_token("s", []))
        tokens.extend(VALUE_PATTERN.findall(value.text))
        return tokens
    for path, leaf in _leaves(value, []):
        if isinstance(leaf, str):
            tokens.append(_arg_token("s", path))
            tokens.extend(VALUE_PATTERN.findall(leaf))
        else:
            tokens.append(_arg_token("j", path))
            tokens.extend(VALUE_PATTERN.findall(json.dumps(leaf, ensure_ascii=False, separators=(",", ":"))))
    return tokens


def _leaves(value: Any, path: list[Any]) -> Iterator[tuple[list[Any], Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, [*path, key])
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, [*path, index])
    elif path:  # an empty object at the top is an answer with no fields
        yield path, value


def _arg_token(kind: str, path: list[Any]) -> str:
    return f"{ARG_PREFIX}{kind}:{json.dumps(path, ensure_ascii=False, separators=(',', ':'))}>"


def _parse_arg_token(token: str) -> tuple[str, list[Any]] | None:
    kind, _, rest = token[len(ARG_PREFIX) : -1].partition(":")
    try:
        path = json.loads(rest)
    except ValueError:
        return None
    if kind not in ("s", "j") or not isinstance(path, list):
        return None
    return kind, path


# -- decoding ---------------------------------------------------------------------------------


@dataclass
class Answer:
    """A decoded answer: its text tokens, then its calls or its JSON object."""

    text_tokens: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    json_text: str | None = None


def read_answer(tokens: Sequence[str]) -> Answer:
    answer = Answer()
    index = 0
    while index < len(tokens) and not is_marker(tokens[index]):
        index += 1
    answer.text_tokens = list(tokens[:index])
    groups: list[tuple[str, list[str]]] = []  # (the call or <json> token, the tokens after it)
    for token in tokens[index:]:
        if token.startswith(CALL_PREFIX) or token == JSON_TOKEN:
            groups.append((token, []))
        elif groups:
            groups[-1][1].append(token)
    for head, body in groups:
        value = _assemble(body)
        text = value.text if isinstance(value, RawArguments) else json.dumps(value, ensure_ascii=False)
        if head != JSON_TOKEN:
            answer.tool_calls.append(ToolCall(head[len(CALL_PREFIX) : -1], text))
        elif answer.json_text is None:
            answer.json_text = text
    return answer


def _assemble(tokens: Sequence[str]) -> Any:
    """The JSON value the field tokens describe (a dict), or RawArguments."""
    root: Any = {}
    fields: list[tuple[tuple[str, list[Any]], list[str]]] = []
    for token in tokens:
        if token.startswith(ARG_PREFIX):
            parsed = _parse_arg_token(token)
            fields.append((parsed, []) if parsed else (("s", ["?"]), []))
        elif fields:
            fields[-1][1].append(token)
    for (kind, path), value_tokens in fields:
        text = "".join(value_tokens)
        if not path:
            return RawArguments(text)
        value: Any = text
        if kind == "j":
            try:
                value = json.loads(text)
            except ValueError:
                value = text  # a value the model left unfinished stays as what it wrote
        root = _put(root, path, value)
    return root


def _put(container: Any, path: list[Any], value: Any) -> Any:
    """`container` with `value` at `path`, making the objects and arrays on the way (a path
    that disagrees with what is there replaces it: the latest field wins)."""
    key, rest = path[0], path[1:]
    if isinstance(key, int) and key >= 0:
        if not isinstance(container, list):
            container = []
        while len(container) <= key:
            container.append(None)
        container[key] = _put(container[key], rest, value) if rest else value
        return container
    if not isinstance(container, dict):
        container = {}
    key = str(key)
    container[key] = _put(container.get(key), rest, value) if rest else value
    return container


# -- what an answer may say -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerRules:
    """What the request allows: the tools offered (name -> the argument names its schema
    lists, None when any), `tool_choice` ("auto", "none", "required" or a function's name),
    whether calls may be parallel, and whether a JSON object is asked for (with the keys its
    schema lists, None when any)."""

    tools: dict[str, frozenset[str] | None] = field(default_factory=dict)
    tool_choice: str = "auto"
    parallel: bool = True
    json_keys: frozenset[str] | None = None
    wants_json: bool = False

    @property
    def must_call(self) -> bool:
        return bool(self.tools) and self.tool_choice not in ("auto", "none")

    def callable_names(self) -> list[str]:
        if self.tool_choice == "none":
            return []
        if self.tool_choice in ("auto", "required"):
            return list(self.tools)
        return [self.tool_choice] if self.tool_choice in self.tools else []


class Constraint:
    """Which tokens an answer may take next, under `AnswerRules`, for one vocabulary."""

    def __init__(self, vocabulary: Sequence[str], rules: AnswerRules) -> None:
        self.rules = rules
        size = len(vocabulary)
        self._markers = np.zeros(size, dtype=bool)
        self._calls: dict[int, str] = {}
        self._args: dict[int, str | None] = {}  # id -> the top-level key it sets (None: raw arguments)
        self._json = -1
        for index, token in enumerate(vocabulary):
            if token.startswith(CALL_PREFIX):
                self._calls[index] = token[len(CALL_PREFIX) : -1]
            elif token == JSON_TOKEN:
                self._json = index
            elif token.startswith(ARG_PREFIX):
                parsed = _parse_arg_token(token)
                self._args[index] = None if parsed is None or not parsed[1] else str(parsed[1][0])
            else:
                continue
            self._markers[index] = True
        allowed = set(rules.callable_names())
        self._allowed_calls = np.array([i for i, name in self._calls.items() if name in allowed], dtype=np.int64)
        self._seen, self._calls_made, self._group_at = 0, 0, None
        self._used: set[int] = set()
        self._group_args = np.zeros(0, dtype=np.int64)

    @property
    def known_calls(self) -> list[str]:
        """The offered functions this model learned to call."""
        allowed = set(self.rules.callable_names())
        return [name for name in self._calls.values() if name in allowed]

    def banned(self, ids: Sequence[int]) -> np.ndarray:
        """A boolean mask of the token ids the answer may not take after `ids` (the answer so
        far: each call extends the last one's, as decoding goes, so the state is kept)."""
        if not self._markers.any():
            return self._markers  # a model that learned no structure: nothing to keep it from
        self._follow(ids)
        banned = self._markers.copy()  # every structure token, until allowed below
        rules = self.rules
        may_call = self._calls_made == 0 or (rules.parallel and rules.tool_choice in ("auto", "required"))
        if may_call:
            banned[self._allowed_calls] = False
        if not ids:
            if self._json >= 0 and not rules.must_call:
                banned[self._json] = False
            if rules.must_call and len(self._allowed_calls):
                banned[:] = True
                banned[self._allowed_calls] = False
            elif rules.wants_json and self._json >= 0:
                banned[~self._markers] = True  # a JSON answer starts at once
            return banned
        if self._group_at is None:
            return banned  # text so far: more text, a call, or the end
        # Inside a call or the JSON object: its fields (each once), then another call or the end.
        banned[self._group_args] = False
        banned[list(self._used)] = True
        if self._group_at == len(ids) - 1:
            banned[~self._markers] = True  # a call's name is followed by its fields, not by text
            banned[END_ID] = False  # (or by nothing: a call without arguments)
        return banned

    def _follow(self, ids: Sequence[int]) -> None:
        """Take in the tokens decoded since the last call: calls made, the call or object being
        written, and the fields it has."""
        if len(ids) < self._seen:  # a new answer
            self._seen, self._calls_made, self._group_at, self._used = 0, 0, None, set()
        for position in range(self._seen, len(ids)):
            token = ids[position]
            if token in self._calls or token == self._json:
                self._calls_made += token in self._calls
                self._group_at, self._used = position, set()
                keys = self.rules.json_keys if token == self._json else self.rules.tools.get(self._calls[token])
                allowed = [a for a, key in self._args.items() if keys is None or key is None or key in keys]
                self._group_args = np.asarray(allowed, dtype=np.int64)
            elif token in self._args:
                self._used.add(token)
        self._seen = len(ids)
