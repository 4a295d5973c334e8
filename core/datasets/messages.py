"""Checks shared by every chat-shaped format: a list of messages, and `tools`.

Each check appends `(code, field, message)` triples to a list; nothing raises. Fields are
paths into the example with 0-based indices, e.g. `messages[2].tool_calls[0].function.name`.
These are pure functions of the parsed JSON, fast on the common case (a dict with role and
string content), and used by SFT, DPO and RFT with different role sets.
"""

from __future__ import annotations

import json
from typing import Any

from .detect import FORMAT_ROLES
from .tokens import TOKENS_PER_MESSAGE, Count, message_tokens

Found = list[tuple[str, "str | None", str]]

SFT_ROLES = frozenset(FORMAT_ROLES["sft"])  # every chat role; DPO inputs use the same
RFT_ROLES = frozenset(FORMAT_ROLES["rft"])
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"})
IMAGE_DETAILS = ("low", "high", "auto")
IMAGE_TYPES = ("image/jpeg", "image/jpg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGES_PER_EXAMPLE = 10
_MISSING = object()


def short(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut short (dataset values can be huge)."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):  # pragma: no cover - parsed JSON always dumps
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class MessagesInfo:
    """What the format-specific rules need to know about a list of messages."""

    __slots__ = ("count", "roles", "last_role", "images", "trained", "assistants", "tokens")

    def __init__(self) -> None:
        self.count = 0
        self.tokens = 0  # the messages' tokens (3 each + values), when a counter was given
        self.roles: set[str] = set()
        self.last_role: Any = None
        self.images = 0
        self.trained = 0  # assistant messages with weight 1 (or no weight)
        self.assistants = 0


def check_messages(
    messages: Any,
    prefix: str,
    found: Found,
    *,
    roles: frozenset[str] = SFT_ROLES,
    allow_weight: bool = True,
    rft: bool = False,
    count: Count | None = None,
    by_role: dict[str, int] | None = None,
) -> MessagesInfo | None:
    """Check `messages` (the value at `prefix`); None when it is not a non-empty list.

    With `count`, the messages' tokens are counted in the same pass (`info.tokens`, and
    per role into `by_role`): the validator's hot loop, so the common message (role and
    string content) takes a fast path with no field paths formatted."""
    if type(messages) is not list or not messages:
        what = "missing" if messages is _MISSING or messages is None else f"{json_type(messages)}"
        if type(messages) is list:
            what = "an empty list"
        found.append(("missing_messages_list", prefix, f"'{prefix}' must be a non-empty list of messages, not {what}"))
        return None
    info = MessagesInfo()
    info.count = len(messages)
    seen = info.roles
    last_role: Any = None
    assistants = trained = tokens = 0
    cached = getattr(count, "cached", None) or (lambda text: None)
    for index, m in enumerate(messages):
        if type(m) is dict and len(m) == 2:  # the common case: role and non-empty string content
            role = m.get("role")
            content = m.get("content")
            if type(content) is str and content and type(role) is str and role in roles and role != "tool":
                seen.add(role)
                last_role = role
                if role == "assistant":
                    assistants += 1
                    trained += 1
                if count is not None:
                    n = cached(role) or count(role)
                    c = cached(content)
                    n += TOKENS_PER_MESSAGE + (count(content) if c is None else c)
                    tokens += n
                    if by_role is not None:
                        by_role[role] = by_role.get(role, 0) + n
                continue
        last_role = _check_message(m, index, prefix, found, roles, allow_weight, rft, info)
        if last_role == "assistant":
            assistants += 1
            if m.get("weight", 1) != 0:
                trained += 1
        if count is not None and type(m) is dict:
            n = message_tokens(m, count)
            tokens += n
            if by_role is not None:
                role = m.get("role")
                key = role if type(role) is str and role in SFT_ROLES else "other"
                by_role[key] = by_role.get(key, 0) + n
    info.tokens = tokens
    info.last_role = last_role
    info.assistants = assistants
    info.trained = trained
    if info.images > MAX_IMAGES_PER_EXAMPLE:
        found.append(
            ("too_many_images", prefix, f"the example has {info.images} images; at most {MAX_IMAGES_PER_EXAMPLE} are allowed")
        )
    return info


def _check_message(
    m: Any, index: int, prefix: str, found: Found, roles: frozenset[str], allow_weight: bool, rft: bool, info: MessagesInfo
) -> Any:
    """Every check of one message; returns its role when valid (else None)."""
    at = f"{prefix}[{index}]"
    if type(m) is not dict:
        found.append(("message_not_object", at, f"each message must be an object, not {json_type(m)}"))
        return None
    role = m.get("role", _MISSING)
    if role is _MISSING:
        found.append(("message_missing_key", f"{at}.role", "the message has no 'role'"))
        role = None
    elif type(role) is not str or role not in roles:
        if rft and role == "system":
            found.append(("rft_system_role", f"{at}.role", "RFT prompts may not use 'system'; use 'developer' instead"))
        else:
            found.append(("unrecognized_role", f"{at}.role", f"role {short(role)} is not one of {', '.join(sorted(roles))}"))
        role = None
    else:
        info.roles.add(role)
    if not m.keys() <= MESSAGE_KEYS:
        for key in sorted(m.keys() - MESSAGE_KEYS):
            found.append(("message_unrecognized_key", f"{at}.{key}", f"messages may not have the key {short(key)}"))
    content = m.get("content", _MISSING)
    has_calls = "tool_calls" in m or "function_call" in m
    if type(content) is str:
        if not content and not (role == "assistant" and has_calls):
            found.append(("missing_content", f"{at}.content", "the message's content is empty"))
    elif content is _MISSING or content is None:
        if not (role == "assistant" and has_calls):
            found.append(("missing_content", f"{at}.content", "the message has no content"))
    elif type(content) is list:
        info.images += _check_parts(content, role, f"{at}.content", found)
    else:
        found.append(
            ("invalid_content", f"{at}.content", f"content must be a string or a list of parts, not {json_type(content)}")
        )
    _check_rare_keys(m, role, at, found, allow_weight, info)
    return role


def _check_rare_keys(m: dict[str, Any], role: Any, at: str, found: Found, allow_weight: bool, info: MessagesInfo) -> None:
    """name, weight, tool calls, tool_call_id: the keys beyond role and content."""
    if "name" in m and type(m["name"]) is not str:
        found.append(("invalid_field_type", f"{at}.name", f"'name' must be a string, not {json_type(m['name'])}"))
    if "weight" in m:
        weight = m["weight"]
        if not allow_weight:
            found.append(("invalid_weight", f"{at}.weight", "'weight' applies only to SFT examples"))
        elif role != "assistant":
            found.append(("invalid_weight", f"{at}.weight", "only assistant messages may have a 'weight'"))
        elif type(weight) is not int or weight not in (0, 1):
            found.append(("invalid_weight", f"{at}.weight", f"'weight' must be the integer 0 or 1, not {short(weight)}"))
    if "tool_calls" in m:
        if role != "assistant":
            found.append(("invalid_tool_call", f"{at}.tool_calls", "only assistant messages may carry 'tool_calls'"))
        else:
            _check_tool_calls(m["tool_calls"], f"{at}.tool_calls", found)
    if "function_call" in m:
        if role != "assistant":
            found.append(("invalid_tool_call", f"{at}.function_call", "only assistant messages may carry 'function_call'"))
        else:
            _check_function(m["function_call"], f"{at}.function_call", found)
    if "tool_call_id" in m:
        if role != "tool":
            found.append(("message_unrecognized_key", f"{at}.tool_call_id", "only tool messages may have 'tool_call_id'"))
        elif type(m["tool_call_id"]) is not str or not m["tool_call_id"]:
            found.append(("invalid_tool_call", f"{at}.tool_call_id", "'tool_call_id' must be a non-empty string"))
    elif role == "tool":
        found.append(("invalid_tool_call", f"{at}.tool_call_id", "a tool message needs the 'tool_call_id' it answers"))


def _check_tool_calls(calls: Any, at: str, found: Found) -> None:
    if type(calls) is not list or not calls:
        found.append(("invalid_tool_call", at, f"'tool_calls' must be a non-empty list, not {short(calls)}"))
        return
    for index, call in enumerate(calls):
        where = f"{at}[{index}]"
        if type(call) is not dict:
            found.append(("invalid_tool_call", where, f"a tool call must be an object, not {json_type(call)}"))
            continue
        if type(call.get("id")) is not str or not call.get("id"):
            found.append(("invalid_tool_call", f"{where}.id", "a tool call needs a non-empty string 'id'"))
        if call.get("type", "function") != "function":
            found.append(("invalid_tool_call", f"{where}.type", f"tool call type must be 'function', not {short(call.get('type'))}"))
        _check_function(call.get("function", _MISSING), f"{where}.function", found)


def _check_function(function: Any, at: str, found: Found) -> None:
    if type(function) is not dict:
        found.append(("invalid_tool_call", at, "a call needs a 'function' object with 'name' and 'arguments'"))
        return
    name = function.get("name")
    if type(name) is not str or not name:
        found.append(("invalid_tool_call", f"{at}.name", "the call needs a non-empty string 'name'"))
    arguments = function.get("arguments", _MISSING)
    if type(arguments) is not str:
        what = "missing" if arguments is _MISSING else json_type(arguments)
        found.append(("invalid_tool_call", f"{at}.arguments", f"'arguments' must be a JSON string, not {what}"))
        return
    try:
        json.loads(arguments)
    except ValueError as exc:
        found.append(("invalid_tool_call", f"{at}.arguments", f"'arguments' is not valid JSON ({getattr(exc, 'msg', exc)})"))
    except RecursionError:
        found.append(("invalid_tool_call", f"{at}.arguments", "'arguments' is nested too deeply"))


def _check_parts(parts: list[Any], role: Any, at: str, found: Found) -> int:
    """Check content parts; returns the number of images."""
    if not parts:
        found.append(("missing_content", at, "the message's content list is empty"))
        return 0
    images = 0
    for index, part in enumerate(parts):
        where = f"{at}[{index}]"
        kind = part.get("type") if type(part) is dict else None
        if kind == "text":
            if type(part.get("text")) is not str:
                found.append(("invalid_content_part", f"{where}.text", "a text part needs a string 'text'"))
        elif kind == "image_url":
            images += 1
            if role != "user":
                found.append(("invalid_content_part", where, "images are allowed only in user messages"))
            else:
                _check_image(part.get("image_url"), f"{where}.image_url", found)
        elif type(part) is not dict:
            found.append(("invalid_content_part", where, f"a content part must be an object, not {json_type(part)}"))
        else:
            found.append(
                ("invalid_content_part", f"{where}.type", f"part type {short(kind)} is not supported (only text and image_url)")
            )
    return images


def is_image_target_issue(code: str, field: str | None) -> bool:
    """Whether a finding is about what an image part points to (its URL, its data, its
    detail) rather than about where the image is: `_check_image`'s findings, every one of
    them at or under the part's `image_url`."""
    return code == "invalid_content_part" and field is not None and ".image_url" in field


def _check_image(image: Any, at: str, found: Found) -> None:
    if type(image) is not dict or type(image.get("url")) is not str:
        found.append(("invalid_content_part", at, "an image part needs 'image_url': {'url': ...}"))
        return
    url: str = image["url"]
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        mime = header[5:].split(";")[0].lower()
        if mime not in IMAGE_TYPES or ";base64" not in header:
            found.append(("invalid_content_part", f"{at}.url", f"images must be base64 JPEG, PNG or WEBP data, not {short(header)}"))
        elif len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
            found.append(("invalid_content_part", f"{at}.url", "the image is larger than 10 MB"))
    elif not url.startswith(("https://", "http://")):
        found.append(("invalid_content_part", f"{at}.url", f"an image URL must be http(s) or a data: URL, not {short(url)}"))
    detail = image.get("detail", "auto")
    if detail not in IMAGE_DETAILS:
        found.append(("invalid_content_part", f"{at}.detail", f"'detail' must be low, high or auto, not {short(detail)}"))


def check_tools(example: dict[str, Any], prefix: str, found: Found) -> None:
    """`tools`, `functions` and `parallel_tool_calls`, where present."""
    if "tools" in example:
        tools = example["tools"]
        if type(tools) is not list:
            found.append(("invalid_tools", f"{prefix}tools", f"'tools' must be a list, not {json_type(tools)}"))
        else:
            for index, tool in enumerate(tools):
                where = f"{prefix}tools[{index}]"
                if type(tool) is not dict or tool.get("type", "function") != "function":
                    found.append(("invalid_tools", where, "each tool must be {'type': 'function', 'function': {...}}"))
                    continue
                _check_function_schema(tool.get("function"), f"{where}.function", found)
    if "functions" in example:
        functions = example["functions"]
        if type(functions) is not list:
            found.append(("invalid_tools", f"{prefix}functions", f"'functions' must be a list, not {json_type(functions)}"))
        else:
            for index, function in enumerate(functions):
                _check_function_schema(function, f"{prefix}functions[{index}]", found)
    if "parallel_tool_calls" in example and type(example["parallel_tool_calls"]) is not bool:
        found.append(("invalid_field_type", f"{prefix}parallel_tool_calls", "'parallel_tool_calls' must be true or false"))


def _check_function_schema(function: Any, at: str, found: Found) -> None:
    if type(function) is not dict:
        found.append(("invalid_tools", at, "a function definition must be an object with a 'name'"))
        return
    if type(function.get("name")) is not str or not function["name"]:
        found.append(("invalid_tools", f"{at}.name", "a function definition needs a non-empty string 'name'"))
    if "parameters" in function and type(function["parameters"]) is not dict:
        found.append(("invalid_tools", f"{at}.parameters", "'parameters' must be a JSON Schema object"))
    if "description" in function and type(function["description"]) is not str:
        found.append(("invalid_tools", f"{at}.description", "'description' must be a string"))


MISSING = _MISSING
