"""RFT examples: `messages` with roles developer/user/assistant/tool (no
`system`) ending in a user turn, optional `tools`, and any other keys as free-form reference
fields for the grader. With a grader, every `{{item.x}}` it reads must exist in every row."""

from __future__ import annotations

from typing import Any, Sequence

from .grader import ItemPath, resolve
from .messages import MISSING, RFT_ROLES, Found, MessagesInfo, check_messages, check_tools
from .tokens import Count


def check_rft(
    example: dict[str, Any],
    found: Found,
    grader_paths: Sequence[ItemPath] = (),
    count: Count | None = None,
    by_role: dict[str, int] | None = None,
) -> MessagesInfo | None:
    info = check_messages(
        example.get("messages", MISSING), "messages", found, roles=RFT_ROLES, allow_weight=False, rft=True,
        count=count, by_role=by_role,
    )
    if "tools" in example or "parallel_tool_calls" in example:
        check_tools(example, "", found)
    if info is not None and info.last_role is not None and info.last_role != "user":
        last = len(example["messages"]) - 1
        found.append(
            ("rft_last_message_not_user", f"messages[{last}]", "the prompt must end with a user message (the model answers it)")
        )
    for path in grader_paths:
        if not resolve(example, path.parts):
            found.append(("grader_field_missing", path.text, f"the grader reads {{{{item.{path.text}}}}}, which this row lacks"))
    return info
