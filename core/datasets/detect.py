"""The dataset formats' vocabulary (names, keys, roles) and which format a line, and a file,
is in: from the keys, never the method.

Formats: "sft" (chat examples ending in an assistant answer), "dpo" (an `input` prompt with a
preferred and a rejected answer), "rft" (a chat prompt ending in a user turn, plus free fields
for the grader), "legacy" (`prompt` / `completion`, for babbage-002 and davinci-002 only).
These are the only format names; the API's method types map onto them (`API_METHOD_FORMATS`),
and the local backend words them the way its job errors do, keyed by these names.

Families: "chat" (a `messages` list: SFT or RFT), "dpo" (`input` + preference outputs),
"legacy" (`prompt` / `completion`). Within chat, a line ending in an assistant turn votes SFT;
one ending in a user turn votes RFT, strongly when it also has free reference fields or a
developer message, weakly otherwise (an SFT line missing its answer looks the same).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

FORMATS = ("sft", "dpo", "rft", "legacy")
METHODS = ("auto", *FORMATS[:3])
#: The `method.type` of a fine-tuning job, and the format its files must be in.
API_METHOD_FORMATS = {"supervised": "sft", "dpo": "dpo", "reinforcement": "rft"}
FAMILY = {"sft": "chat", "rft": "chat", "dpo": "dpo", "legacy": "legacy"}
FORMAT_NAMES = {
    "sft": "SFT chat",
    "dpo": "DPO preference",
    "rft": "RFT (reinforcement)",
    "legacy": "legacy prompt/completion",
}
#: Every chat role, in the order error messages list them.
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: The roles each chat-shaped format allows. RFT prompts have no `system` (they use
#: `developer`) and no legacy `function` turns; a DPO input is an SFT conversation.
FORMAT_ROLES = {"sft": CHAT_ROLES, "dpo": CHAT_ROLES, "rft": ("developer", "user", "assistant", "tool")}
#: The top-level keys of a chat example; any other key of an RFT row is a field for the grader.
CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
DPO_KEYS = ("input", "preferred_output", "non_preferred_output", "preferred_completion", "non_preferred_completion")
#: The key a line lacks, by target format, when it is in no known format at all.
MISSING_KEY_CODE = {"sft": "missing_messages_list", "rft": "missing_messages_list", "dpo": "missing_input", "legacy": "missing_prompt"}
MISSING_KEY_FIELD = {"sft": "messages", "rft": "messages", "dpo": "input", "legacy": "prompt"}


def family(obj: dict[str, Any]) -> str | None:
    """The format family of one parsed line (None: no key of any format)."""
    if "messages" in obj:
        return "chat"
    for key in DPO_KEYS:
        if key in obj:
            return "dpo"
    if "prompt" in obj or "completion" in obj:
        return "legacy"
    return None


def vote(obj: dict[str, Any]) -> str | None:
    """One line's vote: sft, rft, "rft?" (weak), dpo, legacy or None."""
    fam = family(obj)
    if fam != "chat":
        return fam
    messages = obj["messages"]
    if type(messages) is not list or not messages or type(messages[-1]) is not dict:
        return None
    if messages[-1].get("role") == "assistant":
        return "sft"
    if obj.keys() - CHAT_KEYS or any(type(m) is dict and m.get("role") == "developer" for m in messages):
        return "rft"
    return "rft?"


def line_format(obj: dict[str, Any], expected: str) -> str | None:
    """The format one line looks like when its file is checked as `expected` (None: no key of
    any format). A chat line with no answer, or whose messages cannot be read, counts as
    `expected` when that is a chat format: an SFT line missing its answer looks the same."""
    found = vote(obj)
    if found is None and family(obj) is None:
        return None
    if found is None or found == "rft?":
        return expected if FAMILY[expected] == "chat" else ("rft" if found else "sft")
    return found


def choose(votes: Counter[str | None] | Iterable[str | None]) -> str | None:
    """The file's format from its lines' votes (None when no line is in a known format)."""
    tally = votes if isinstance(votes, Counter) else Counter(votes)
    sft, rft, weak = tally["sft"], tally["rft"], tally["rft?"]
    if sft or rft:
        chat = ("sft", sft) if sft >= rft else ("rft", rft + weak)
    elif weak:
        chat = ("rft", weak)
    else:
        chat = (None, 0)
    candidates = [chat, ("dpo", tally["dpo"]), ("legacy", tally["legacy"])]
    best, count = max(candidates, key=lambda c: c[1])
    return best if count else None
