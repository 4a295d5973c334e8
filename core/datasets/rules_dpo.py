"""DPO (preference) examples: `input.messages` plus `preferred_output` and
`non_preferred_output`, each a list holding exactly one assistant text message."""

from __future__ import annotations

from typing import Any

from .messages import MISSING, SFT_ROLES, Found, check_messages, check_tools, json_type, short

TOP_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
OLD_NAMES = {"preferred_output": "preferred_completion", "non_preferred_output": "non_preferred_completion"}


def check_dpo(example: dict[str, Any], found: Found) -> None:
    source = example.get("input", MISSING)
    if type(source) is not dict:
        what = "missing" if source is MISSING else json_type(source)
        found.append(("missing_input", "input", f"'input' must be an object holding 'messages', not {what}"))
    else:
        check_messages(source.get("messages", MISSING), "input.messages", found, roles=SFT_ROLES, allow_weight=False)
        if not source.keys() <= INPUT_KEYS:
            for key in source.keys() - INPUT_KEYS:
                found.append(("unrecognized_example_key", f"input.{key}", f"'input' has no key {short(key)}; it is ignored"))
        check_tools(source, "input.", found)
    answers = []
    for key, code in (("preferred_output", "missing_preferred_output"), ("non_preferred_output", "missing_non_preferred_output")):
        output = example.get(key, MISSING)
        if output is MISSING:
            hint = f" (found the old name '{OLD_NAMES[key]}'; rename it)" if OLD_NAMES[key] in example else ""
            found.append((code, key, f"the example has no '{key}'{hint}"))
            continue
        answers.append(_check_output(output, key, found))
    if len(answers) == 2 and answers[0] is not None and answers[0] == answers[1]:
        found.append(
            ("identical_preference_outputs", "non_preferred_output[0].content", "the preferred and rejected answers are identical")
        )
    if not example.keys() <= TOP_KEYS:
        for key in example.keys() - TOP_KEYS:
            if key not in OLD_NAMES.values():
                found.append(("unrecognized_example_key", key, f"DPO examples have no key {short(key)}; it is ignored"))


def _check_output(output: Any, key: str, found: Found) -> str | None:
    """Check one preference output; returns its text when it is valid."""
    if type(output) is not list or len(output) != 1:
        what = f"a list of {len(output)}" if type(output) is list else json_type(output)
        found.append(("invalid_preference_output", key, f"'{key}' must be a list holding exactly one assistant message, not {what}"))
        return None
    before = len(found)
    check_messages(output, key, found, roles=SFT_ROLES, allow_weight=False)
    message = output[0]
    if type(message) is not dict:
        return None
    role = message.get("role")
    if role != "assistant" and type(role) is str and role in SFT_ROLES:  # other roles are already reported
        found.append(("invalid_preference_output", f"{key}[0].role", f"the {key} message must have role 'assistant', not {short(role)}"))
    content = message.get("content")
    if content is not None and type(content) is not str:
        found.append(("invalid_preference_output", f"{key}[0].content", "preference outputs must be plain text"))
    for calls in ("tool_calls", "function_call"):
        if calls in message:
            found.append(("invalid_preference_output", f"{key}[0].{calls}", "preference outputs must be plain text, not calls"))
    return content if type(content) is str and len(found) == before else None
