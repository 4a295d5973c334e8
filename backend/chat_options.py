"""The parts of a chat completions request that shape the answer rather than the sampling:
`tools`, `tool_choice`, `parallel_tool_calls` (and the older `functions`/`function_call`),
`response_format`, and the parameters the local models cannot honour.

Checked as the API checks them, with its words: a malformed tool, a `tool_choice` naming a
function that is not offered, `tool_choice` without tools, a JSON mode whose messages never
say "json", a schema that is not a valid JSON Schema: each is a 400 naming the parameter.
What the local models cannot do (log probabilities, penalties, logit bias, audio,
predicted outputs, web search) is refused with `unsupported_parameter` when it is asked
for, never silently ignored; its default value (`logprobs: false`, a penalty of 0) is fine.

Answers are checked against the format asked for (`format_error`): the local models learn
JSON and are kept to a schema's keys while decoding, but cannot promise a schema, so a
failure is reported in the choice (`tunedeck.response_format_error`), next to the answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, bad_request
from .trainers.ngram.structured import AnswerRules

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TOOLS = 128
UNSUPPORTED = {
    "logprobs": (False, "log probabilities are not computed here"),
    "top_logprobs": (0, "log probabilities are not computed here"),
    "logit_bias": ({}, "logit bias is not applied here"),
    "presence_penalty": (0, "penalties are not applied here"),
    "frequency_penalty": (0, "penalties are not applied here"),
    "audio": (None, "the local models answer in text only"),
    "prediction": (None, "predicted outputs are not used here"),
    "web_search_options": (None, "the local models do not search the web"),
}
"""Parameters the local models cannot honour: their harmless value, and why any other is refused."""


@dataclass(frozen=True, slots=True)
class AnswerShape:
    """What the answer may be: the tools offered and how to choose, and the format asked for."""

    tools: tuple[dict[str, Any], ...] = ()  # each {"type": "function", "function": {...}}, as given
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a function's name
    allowed: tuple[str, ...] | None = None  # `allowed_tools`: the functions that may be called
    parallel_tool_calls: bool = True
    legacy_functions: bool = False  # asked with `functions`: the answer uses `function_call`
    response_format: dict[str, Any] | None = None  # json_object or json_schema; None for text
    schema: dict[str, Any] | None = field(default=None, compare=False)

    def offered_tools(self) -> list[dict[str, Any]]:
        """The tools a call may go to: those given, narrowed by `allowed_tools`."""
        return [t for t in self.tools if self.allowed is None or t["function"]["name"] in self.allowed]

    def rules(self) -> AnswerRules:
        """The decoding rules for the built-in model."""
        return AnswerRules(
            tools={t["function"]["name"]: _top_keys(t["function"].get("parameters")) for t in self.offered_tools()},
            tool_choice=self.tool_choice,
            parallel=self.parallel_tool_calls and not self.legacy_functions,
            json_keys=_top_keys(self.schema),
            wants_json=self.response_format is not None,
        )


def _top_keys(schema: Any) -> frozenset[str] | None:
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return frozenset(schema["properties"])
    return None


# -- the request ------------------------------------------------------------------------------


def parse_answer_shape(body: dict[str, Any], messages: list[Any]) -> AnswerShape:
    for key, (harmless, why) in UNSUPPORTED.items():
        value = body.get(key)
        if value is not None and value != harmless:
            raise unsupported(key, why)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported("modalities", "the local models answer in text only")
    legacy = body.get("functions") is not None
    if legacy and body.get("tools") is not None:
        raise bad_request("Invalid request: use 'tools' or 'functions', not both.", param="functions")
    tools = _legacy_tools(body.get("functions")) if legacy else _tools(body.get("tools"))
    choice_key = "function_call" if legacy else "tool_choice"
    choice, allowed = _tool_choice(body.get(choice_key), tools, choice_key, legacy)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("Invalid 'parallel_tool_calls': expected true or false.", param="parallel_tool_calls")
    response_format, schema = response_format_of(body.get("response_format"), messages)
    return AnswerShape(
        tools=tools,
        tool_choice=choice,
        allowed=allowed,
        parallel_tool_calls=parallel is not False,
        legacy_functions=legacy,
        response_format=response_format,
        schema=schema,
    )


def _tools(raw: Any) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad_request("Invalid type for 'tools': expected an array of tools.", param="tools")
    if len(raw) > MAX_TOOLS:
        raise bad_request(f"Invalid 'tools': at most {MAX_TOOLS} tools.", param="tools")
    tools = []
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise bad_request(f"Invalid type for '{where}': expected an object.", param=where)
        kind = tool.get("type")
        if kind == "custom":
            raise unsupported(f"{where}.type", "custom tools are not served here, only functions")
        if kind != "function":
            raise bad_request(f"Invalid value for '{where}.type': expected 'function'.", param=f"{where}.type")
        tools.append({"type": "function", "function": _function(tool.get("function"), f"{where}.function")})
    _no_repeats([t["function"]["name"] for t in tools], "tools")
    return tuple(tools)


def _legacy_tools(raw: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("Invalid 'functions': expected a non-empty array of functions.", param="functions")
    tools = [{"type": "function", "function": _function(f, f"functions[{i}]")} for i, f in enumerate(raw)]
    _no_repeats([t["function"]["name"] for t in tools], "functions")
    return tuple(tools)


def _function(function: Any, where: str) -> dict[str, Any]:
    if not isinstance(function, dict):
        raise missing_or_invalid(function, where, "an object with a 'name'")
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        if name is None:
            raise missing_or_invalid(None, f"{where}.name", "")
        raise bad_request(
            f"Invalid '{where}.name': expected 1 to 64 letters, digits, underscores or dashes.", param=f"{where}.name"
        )
    parameters = function.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise bad_request(f"Invalid type for '{where}.parameters': expected an object.", param=f"{where}.parameters")
        _check_schema(parameters, f"{where}.parameters", f"Invalid schema for function '{name}'")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request(f"Invalid type for '{where}.description': expected a string.", param=f"{where}.description")
    return dict(function)


def _no_repeats(names: list[str], param: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise bad_request(f"Invalid '{param}': function names must be unique; '{repeated[0]}' is repeated.", param=param)


def _tool_choice(
    raw: Any, tools: tuple[dict[str, Any], ...], key: str, legacy: bool
) -> tuple[str, tuple[str, ...] | None]:
    if raw is None:
        return ("auto" if tools else "none"), None
    if not tools:
        raise bad_request(
            f"Invalid value for '{key}': '{key}' is only allowed when '{'functions' if legacy else 'tools'}' are specified.",
            param=key,
        )
    names = [t["function"]["name"] for t in tools]
    if raw in ("auto", "none") or (raw == "required" and not legacy):
        return raw, None
    if isinstance(raw, dict):
        kind = raw.get("type", "function" if legacy else None)
        if kind == "allowed_tools" and not legacy:
            return _allowed_tools(raw.get("allowed_tools"), names, key)
        if kind == "custom":
            raise unsupported(key, "custom tools are not served here, only functions")
        function = raw if legacy else raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if kind == "function" and isinstance(name, str):
            if name not in names:
                raise bad_request(f"Invalid value for '{key}': no function named '{name[:64]}' is offered.", param=key)
            return name, None
    expected = "'none', 'auto'" + ("" if legacy else ", 'required'") + " or a function to call"
    raise bad_request(f"Invalid value for '{key}': expected {expected}.", param=key)


def _allowed_tools(raw: Any, names: list[str], key: str) -> tuple[str, tuple[str, ...]]:
    mode = raw.get("mode") if isinstance(raw, dict) else None
    listed = raw.get("tools") if isinstance(raw, dict) else None
    if mode not in ("auto", "required") or not isinstance(listed, list) or not listed:
        raise bad_request(f"Invalid '{key}.allowed_tools': expected a mode (auto or required) and tools.", param=key)
    allowed = []
    for tool in listed:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise bad_request(f"Invalid '{key}.allowed_tools': {str(name)[:64]!r} is not among 'tools'.", param=key)
        allowed.append(name)
    return mode, tuple(allowed)


def response_format_of(
    raw: Any, messages: list[Any], param: str = "response_format", messages_param: str = "messages"
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The JSON format asked for (None for text) and its schema, if any. (`param`: where the
    format sits in the request, for the Responses API's `text.format`.)"""
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        if not any("json" in _words(m).lower() for m in messages):
            raise bad_request(
                f"'{messages_param}' must contain the word 'json' in some form, to use '{param}' of type 'json_object'.",
                param=messages_param,
            )
        return raw, None
    if kind == "json_schema":
        nested = param == "response_format"  # chat nests the schema; the Responses API does not
        spec = raw.get("json_schema") if nested else raw
        where = f"{param}.json_schema" if nested else param
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise bad_request(
                f"Invalid '{where}.name': expected 1 to 64 letters, digits, underscores or dashes.", param=f"{where}.name"
            )
        schema = spec.get("schema", {})
        if not isinstance(schema, dict):
            raise bad_request(f"Invalid '{where}.schema': expected an object.", param=f"{where}.schema")
        _check_schema(schema, f"{where}.schema", f"Invalid schema for {param} '{name}'")
        return raw, schema
    raise bad_request(
        f"Invalid value for '{param}.type': expected 'text', 'json_object' or 'json_schema'.", param=f"{param}.type"
    )


def _words(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _check_schema(schema: dict[str, Any], param: str, what: str) -> None:
    import jsonschema  # only requests with a schema pay for it

    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as problem:
        where = "/".join(str(p) for p in problem.absolute_path) or "(top)"
        raise bad_request(f"{what}: at {where}: {problem.message[:300]}", param=param) from None


# -- the answer --------------------------------------------------------------------------------


def format_error(shape: AnswerShape, text: str) -> str | None:
    """Why an answer's text does not keep to the format asked for, or None when it does."""
    if shape.response_format is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as problem:
        return f"the answer is not JSON: {problem}"
    if not isinstance(value, dict):
        return "the answer is JSON but not an object"
    if shape.schema is None:
        return None
    import jsonschema

    validator_class = jsonschema.validators.validator_for(shape.schema, default=jsonschema.Draft202012Validator)
    problem = jsonschema.exceptions.best_match(validator_class(shape.schema).iter_errors(value))
    if problem is None:
        return None
    where = "/".join(str(p) for p in problem.absolute_path) or "(top)"
    return f"the answer does not match the schema at {where}: {problem.message[:300]}"


def unsupported(param: str, why: str) -> ApiError:
    return bad_request(f"'{param}' is not supported by the local backend: {why}.", param=param, code="unsupported_parameter")


def missing_or_invalid(value: Any, param: str, what: str) -> ApiError:
    if value is None:
        return bad_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    return bad_request(f"Invalid '{param}': expected {what}.", param=param)
