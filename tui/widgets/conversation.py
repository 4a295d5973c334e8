"""One dataset example drawn as a conversation (pure functions returning Rich renderables).

Chat examples (SFT, RFT) show role-coloured turns, tool calls with their arguments
pretty-printed, `weight: 0` turns dimmed and images as their URL or size; DPO shows the
prompt, then preferred and rejected answers side by side; RFT shows its reference fields.
A validator field path (`messages[2].role`) marks the part it names. Dataset text enters
only through `safe()`/`one_line()` (see `example_parts`).
"""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..safe_text import one_line
from .example_parts import Mark, content_text, cut, pretty_json, tool_call_text

ROLE_STYLES = {
    "system": "bold magenta",
    "developer": "bold magenta",
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "bold yellow",
    "function": "bold yellow",
}
CHAT_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
DPO_KEYS = ("input", "preferred_output", "non_preferred_output")
LEGACY_KEYS = ("prompt", "completion")



def turn(message: Any, at: tuple[str | int, ...], mark: Mark | None) -> list[RenderableType]:
    """One message: a coloured role line, then its content and tool calls, indented."""
    marked = mark is not None and mark.names(*at)
    if not isinstance(message, dict):
        pieces: list[RenderableType] = [Text(f"{label(at)}: not an object", style="bold red"), pretty_json(message)]
        return [*pieces, mark.text()] if marked and mark is not None else pieces
    weight_zero = message.get("weight") == 0
    header = role_line(message, weight_zero)
    body: list[Text] = []
    calls = message.get("tool_calls")
    if "content" in message or not calls:
        body.append(content_text(message.get("content")))
    for call in calls if isinstance(calls, list) else []:
        body.append(tool_call_text(call))
    if isinstance(message.get("function_call"), dict):
        body.append(tool_call_text({"function": message["function_call"]}))
    block = Text("\n", end="").join(body)
    if weight_zero:
        header.stylize("dim")
        block.stylize("dim")
    pieces = [header, Padding(block, (0, 0, 0, 2))]
    return [*pieces, mark.text()] if marked and mark is not None else pieces


def role_line(message: dict[str, Any], weight_zero: bool) -> Text:
    role = message.get("role")
    header = one_line(role if role is not None else "(no role)", ROLE_STYLES.get(str(role), "bold"))
    if message.get("name"):
        header.append(" · ", style="dim")
        header.append_text(one_line(message["name"]))
    if message.get("tool_call_id"):
        header.append("  for ", style="dim")
        header.append_text(one_line(message["tool_call_id"], "dim"))
    if weight_zero:
        header.append("  weight 0: not trained", style="italic")
    return header


def label(at: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(at))


def messages_block(messages: Any, at: tuple[str | int, ...], mark: Mark | None) -> list[RenderableType]:
    if not isinstance(messages, list):
        return [Text(f"{label(at)} is not a list", style="bold red"), pretty_json(messages)]
    out: list[RenderableType] = []
    for number, message in enumerate(messages):
        out.extend(turn(message, (*at, number), mark))
    return out


def fields_block(title: str, obj: dict[str, Any], keys: list[str], mark: Mark | None) -> list[RenderableType]:
    """Other top-level keys: `key: value`, strings literal, the rest as JSON."""
    if not keys:
        return []
    out: list[RenderableType] = [Text(title, style="bold underline")]
    for key in keys:
        value = obj[key]
        line = Text.assemble(one_line(key, "bold"), ": ")
        line.append_text(cut(value) if isinstance(value, str) else pretty_json(value))
        out.append(line)
        if mark is not None and mark.names(key):
            out.append(mark.text())
    return out


def tools_block(tools: Any, mark: Mark | None) -> list[RenderableType]:
    out: list[RenderableType] = [Text("tools", style="bold underline")]
    for tool in tools if isinstance(tools, list) else [tools]:
        function = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            params = function.get("parameters", {}).get("properties", {}) if isinstance(function.get("parameters"), dict) else {}
            line = Text.assemble(("• ", "yellow"), one_line(function["name"], "bold"), "(", one_line(", ".join(map(str, params))), ")")
            if isinstance(function.get("description"), str):
                line.append("  ")
                line.append_text(one_line(function["description"][:200], "dim"))
            out.append(line)
        else:
            out.append(pretty_json(tool))
    if mark is not None and (mark.names("tools") or mark.names("functions")):
        out.append(mark.text())
    return out


# -- whole examples ----------------------------------------------------------------------------


def stack(*pieces: RenderableType) -> Group:
    """Pieces one under another (`one_line` texts end without a newline; here they get one)."""
    for piece in pieces:
        if isinstance(piece, Text):
            piece.end = "\n"
    return Group(*pieces)


def example_kind(obj: Any, fmt: str | None = None) -> str:
    """'chat', 'rft', 'dpo', 'legacy' or 'other' (`fmt`: the validator's format, a hint)."""
    if not isinstance(obj, dict):
        return "other"
    if any(key in obj for key in DPO_KEYS):
        return "dpo"
    if "messages" in obj:
        extra = [k for k in obj if k not in CHAT_KEYS and k != "metadata"]
        return "rft" if fmt == "rft" or (fmt is None and extra and not has_assistant(obj["messages"])) else "chat"
    if any(key in obj for key in LEGACY_KEYS):
        return "legacy"
    return "other"


def has_assistant(messages: Any) -> bool:
    return isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)


def render_example(obj: Any, fmt: str | None = None, mark: Mark | None = None) -> RenderableType:
    """The example as a conversation; `mark` points at the field an issue names."""
    kind = example_kind(obj, fmt)
    top: list[RenderableType] = []
    if mark is not None and mark.parts and (not isinstance(obj, dict) or mark.parts[0] not in obj):
        top.append(mark.text())  # a field that is missing: nowhere else to mark it
    if kind == "other":
        note = "not a JSON object" if not isinstance(obj, dict) else "not a chat, DPO or prompt/completion example"
        return stack(*top, Text(note, style="bold red"), pretty_json(obj))
    assert isinstance(obj, dict)
    if kind == "dpo":
        return stack(*top, *dpo_blocks(obj, mark))
    if kind == "legacy":
        body = fields_block("prompt / completion", obj, [k for k in LEGACY_KEYS if k in obj], mark)
        rest = [k for k in obj if k not in LEGACY_KEYS]
        return stack(*top, *body, *fields_block("other fields", obj, rest, mark))
    pieces = list(top)
    for key in ("tools", "functions"):
        if key in obj:
            pieces.extend(tools_block(obj[key], mark))
    pieces.extend(messages_block(obj["messages"], ("messages",), mark))
    rest = [k for k in obj if k not in CHAT_KEYS]
    pieces.extend(fields_block("reference fields" if kind == "rft" else "other fields", obj, rest, mark))
    return stack(*pieces)


def dpo_blocks(obj: dict[str, Any], mark: Mark | None) -> list[RenderableType]:
    """The prompt, then preferred and rejected answers side by side."""
    prompt = obj.get("input")
    pieces: list[RenderableType] = [Text("prompt", style="bold underline")]
    if isinstance(prompt, dict):
        if "tools" in prompt:
            pieces.extend(tools_block(prompt["tools"], mark))
        pieces.extend(messages_block(prompt.get("messages"), ("input", "messages"), mark))
    else:
        pieces.append(pretty_json(prompt))
    table = Table(box=box.SQUARE, expand=True, show_edge=False, padding=(0, 1))
    table.add_column(Text("✓ preferred", style="bold green"), ratio=1)
    table.add_column(Text("✗ rejected", style="bold red"), ratio=1)
    sides = [stack(*output_block(obj, key, mark)) for key in ("preferred_output", "non_preferred_output")]
    table.add_row(*sides)
    pieces.append(table)
    rest = [k for k in obj if k not in DPO_KEYS]
    pieces.extend(fields_block("other fields", obj, rest, mark))
    return pieces


def output_block(obj: dict[str, Any], key: str, mark: Mark | None) -> list[RenderableType]:
    if key not in obj:
        return [Text(f"(no {key})", style="bold red")]
    return messages_block(obj[key], (key,), mark)


# -- one-line summaries (the example list) -------------------------------------------------------


def summary_text(obj: Any, limit: int = 300) -> Text:
    """An example in one line: what is asked and what is answered."""
    kind = example_kind(obj)
    if kind == "dpo":
        prompt = obj.get("input", {}).get("messages") if isinstance(obj.get("input"), dict) else None
        return joined(
            [("", last_text(prompt, "user")), ("✓ ", first_text(obj.get("preferred_output"))), ("✗ ", first_text(obj.get("non_preferred_output")))],
            limit,
        )
    if kind in ("chat", "rft"):
        messages = obj["messages"]
        answer = last_text(messages, "assistant")
        parts = [("", last_text(messages, "user"))]
        if answer:
            parts.append(("→ ", answer))
        elif kind == "rft":
            parts.append(("ref ", " ".join(f"{k}={v}" for k, v in obj.items() if k not in CHAT_KEYS)))
        return joined(parts, limit)
    if kind == "legacy":
        return joined([("", obj.get("prompt")), ("→ ", obj.get("completion"))], limit)
    return one_line(json.dumps(obj, ensure_ascii=False)[:limit], "red")


def joined(parts: list[tuple[str, Any]], limit: int) -> Text:
    text = Text(end="")
    for prefix, value in parts:
        if text:
            text.append("  ")
        if prefix:
            text.append(prefix, style="bold green" if prefix.startswith(("→", "✓")) else "bold red" if prefix.startswith("✗") else "dim")
        text.append_text(one_line(value if isinstance(value, str) else "" if value is None else str(value))[:limit])
    return text


def text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "▣") if isinstance(p, dict) else "" for p in content)
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if isinstance(calls, list) and calls and isinstance(calls[0], dict):
        function = calls[0].get("function")
        return f"call {function.get('name')}" if isinstance(function, dict) else "call"
    return ""


def last_text(messages: Any, role: str) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == role:
            return text_of(message)
    return ""


def first_text(messages: Any) -> str:
    return text_of(messages[0]) if isinstance(messages, list) and messages else ""
