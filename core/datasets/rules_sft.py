"""SFT chat examples: `messages` with at least one assistant turn, optional
`tools` / `functions` / `parallel_tool_calls`; `weight` 0/1 on assistant turns; images only
in user turns."""

from __future__ import annotations

from typing import Any

from .detect import CHAT_KEYS
from .messages import MISSING, SFT_ROLES, Found, MessagesInfo, check_messages, check_tools, short
from .tokens import Count

TOP_KEYS = CHAT_KEYS


def check_sft(
    example: dict[str, Any], found: Found, count: Count | None = None, by_role: dict[str, int] | None = None
) -> MessagesInfo | None:
    """Check one SFT example; returns what its messages hold (None: no messages list).
    With `count`, its messages' tokens are counted in the same pass."""
    info = check_messages(example.get("messages", MISSING), "messages", found, roles=SFT_ROLES, count=count, by_role=by_role)
    if len(example) > 1:
        if not example.keys() <= TOP_KEYS:
            for key in example.keys() - TOP_KEYS:
                found.append(("unrecognized_example_key", key, f"SFT examples have no key {short(key)}; it is ignored"))
        check_tools(example, "", found)
    if info is None:
        return None
    if not info.assistants:
        found.append(
            ("example_missing_assistant_message", "messages", "the example has no assistant message, so nothing is learned")
        )
    elif not info.trained:
        found.append(("no_trained_messages", "messages", "every assistant message has weight 0, so nothing is learned"))
    return info
