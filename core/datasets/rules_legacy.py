"""Legacy completion examples (`prompt` and `completion`; babbage-002 and davinci-002 only)."""

from __future__ import annotations

from typing import Any

from .messages import MISSING, Found, json_type, short

TOP_KEYS = frozenset({"prompt", "completion"})


def check_legacy(example: dict[str, Any], found: Found) -> None:
    prompt = example.get("prompt", MISSING)
    if type(prompt) is not str:
        what = "missing" if prompt is MISSING else json_type(prompt)
        found.append(("missing_prompt", "prompt", f"'prompt' must be a string, not {what}"))
    completion = example.get("completion", MISSING)
    if type(completion) is not str or not completion:
        what = "missing" if completion is MISSING else ("empty" if completion == "" else json_type(completion))
        found.append(("missing_completion", "completion", f"'completion' must be a non-empty string, not {what}"))
    if not example.keys() <= TOP_KEYS:
        for key in example.keys() - TOP_KEYS:
            found.append(("unrecognized_example_key", key, f"legacy examples have no key {short(key)}; it is ignored"))
