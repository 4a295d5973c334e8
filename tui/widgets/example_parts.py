"""The pieces of an example on screen: contents, content parts, tool calls, field marks.

Pure functions returning Rich `Text`; every piece of dataset text enters through `safe()`
or `one_line()`, so markup and escape sequences in the data are shown, never obeyed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.highlighter import JSONHighlighter
from rich.text import Text

from ..safe_text import one_line, safe

MAX_CONTENT_CHARS = 20_000
"""Longer contents are cut on screen (the raw view shows more); keeps a render under ~10 ms."""
MARK_STYLE = "bold white on red"
_json_highlighter = JSONHighlighter()


# -- field paths ----------------------------------------------------------------------------


def field_parts(path: str | None) -> list[str | int]:
    """`messages[2].tool_calls[0].id` -> ['messages', 2, 'tool_calls', 0, 'id']."""
    if not path:
        return []
    return [int(index) if index else name for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]


class Mark:
    """The field a selected issue names, and what to say there."""

    def __init__(self, field: str | None, message: str) -> None:
        self.parts = field_parts(field)
        self.field = field or ""
        self.message = message

    def names(self, *prefix: str | int) -> bool:
        """True when the marked field is `prefix` or inside it."""
        return len(self.parts) >= len(prefix) and tuple(self.parts[: len(prefix)]) == prefix

    def text(self) -> Text:
        label = Text.assemble(" ✖ ", one_line(self.field), " " if self.field else "", style=MARK_STYLE)
        return Text.assemble(label, " ", safe(self.message, "bold red"))


# -- pieces ----------------------------------------------------------------------------------


def cut(text: str, limit: int = MAX_CONTENT_CHARS) -> Text:
    """`text` literally, cut at `limit` characters with a note saying how much is left."""
    if len(text) <= limit:
        return safe(text)
    shown = safe(text[:limit])
    shown.append(f"\n… {len(text) - limit:,} more characters (r shows the raw line)", style="dim italic")
    return shown


def pretty_json(value: Any, indent: int = 2) -> Text:
    """A JSON value pretty-printed and highlighted (literal text, styles added by regex)."""
    text = cut(json.dumps(value, indent=indent, ensure_ascii=False))
    _json_highlighter.highlight(text)
    return text


def arguments_text(arguments: Any) -> Text:
    """A tool call's `arguments` (a JSON string) pretty-printed when it parses."""
    if isinstance(arguments, str):
        try:
            return pretty_json(json.loads(arguments))
        except ValueError:
            return cut(arguments)
    return pretty_json(arguments)


def part_text(part: Any) -> Text:
    """One content part: text as is, images and audio as their URL or size."""
    if not isinstance(part, dict):
        return pretty_json(part)
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return cut(part["text"])
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        detail = image.get("detail") if isinstance(image, dict) else None
        text = Text("▣ image ", style="bold blue", end="")
        text.append_text(url_text(url))
        if detail:
            text.append_text(one_line(f" (detail {detail})", "dim"))
        return text
    if kind == "input_audio" and isinstance(part.get("input_audio"), dict):
        audio = part["input_audio"]
        data = audio.get("data")
        size = f"{len(data) * 3 // 4 / 1024:,.0f} KB" if isinstance(data, str) else "?"
        return Text.assemble(("♪ audio ", "bold blue"), one_line(audio.get("format") or ""), f" ({size})")
    return pretty_json(part)


def url_text(url: Any) -> Text:
    """A URL shown whole, except data URLs, shown as their media type and size."""
    if not isinstance(url, str):
        return pretty_json(url)
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        return Text.assemble(one_line(head[:80]), (f" ({len(data) * 3 // 4 / 1024:,.1f} KB inline)", "dim"))
    return one_line(url if len(url) <= 500 else url[:500] + "…", "underline")


def content_text(content: Any) -> Text:
    if content is None:
        return Text("(no content)", style="dim italic")
    if isinstance(content, str):
        return cut(content)
    if isinstance(content, list):
        return Text("\n", end="").join(part_text(part) for part in content) if content else Text("(empty)", style="dim")
    return pretty_json(content)


def tool_call_text(call: Any) -> Text:
    if not isinstance(call, dict):
        return pretty_json(call)
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    text = Text("→ call ", style="bold yellow", end="")
    text.append_text(one_line(function.get("name") or "?", "bold"))
    if call.get("id"):
        text.append("  id ", style="dim")
        text.append_text(one_line(call["id"], "dim"))
    text.append("\n")
    text.append_text(arguments_text(function.get("arguments")))
    return text
