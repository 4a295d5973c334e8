"""Grader templates: the one grammar of `{{item.<path>}}` and `{{sample.<field>}}` variables,
and the dataset fields a grader file reads.

A template is text with variables in double braces. A variable is a root, `item` (the
dataset row) or `sample` (the model's answer: `output_text`, `output_json` when the answer
is JSON, `output_tools`), then keys and list indices, with spaces allowed inside the braces:
`{{item.meta.level}}`, `{{ item.tags[0] }}`, `{{sample.output_json.answer[0]}}`. A key is a
run of any characters but dots, brackets, braces and spaces; `[n]` indexes a list and a key
reads an object, never the other way round (`.0` is the key "0", not an index).

The local backend's graders parse and render their templates with `parse_template` and
`lookup`; the validator reads the `item` paths of a grader file with `item_paths` and checks
every row has them with `resolve`, so a row the validator passes is one the grader can read.
A grader file is JSON: a grader object, `{"grader": {...}}`, or a whole method object; every
string in it is searched, so multi-graders and nested graders are covered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
VARIABLE = re.compile(r"\s*(item|sample)((?:\.[^.\[\]\s{}]+|\[\d+\])*)\s*")
PATH_PART = re.compile(r"\.([^.\[\]\s{}]+)|\[(\d+)\]")
SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")
MISSING: Any = object()

Parts = tuple[str | int, ...]


class GraderError(Exception):
    """The grader file cannot be read or is not JSON."""


class TemplateError(ValueError):
    """A `{{...}}` that is not a variable of the grammar; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Variable:
    root: str  # "item" or "sample"
    parts: Parts  # keys (str) and list indices (int)
    text: str  # the path as written after the root and its dot, e.g. "meta.level", "tags[0]"


#: An `{{item.x}}` path a grader reads (the validator checks every row has it).
ItemPath = Variable


def parse_variable(inner: str) -> Variable:
    """The variable between one pair of braces; raises `TemplateError` if it is none."""
    match = VARIABLE.fullmatch(inner)
    if match is None:
        raise TemplateError(
            f"{{{{{inner[:60]}}}}} is not a template variable; use {{{{item.<field>}}}} "
            "or {{sample.output_text}}, {{sample.output_json.<field>}}, {{sample.output_tools[0]...}}."
        )
    root, written = match.group(1), match.group(2)
    parts = parse_path(written)
    if root == "sample" and (not parts or parts[0] not in SAMPLE_FIELDS):
        raise TemplateError(f"the sample namespace has {', '.join(SAMPLE_FIELDS)}; got {{{{{inner.strip()[:60]}}}}}.")
    return Variable(root, parts, written[1:] if written.startswith(".") else written)


def parse_path(written: str) -> Parts:
    """Keys and indices of a path such as `.meta.level`, `.tags[0]` or `messages[2].role`
    (a path with no leading dot starts with a key)."""
    if written and written[0] not in ".[":
        written = "." + written
    return tuple(key if key else int(index) for key, index in PATH_PART.findall(written))


def parse_template(text: str) -> tuple[str | Variable, ...]:
    """Literal text and variables, in order; raises `TemplateError` at the first `{{...}}`
    that is not a variable."""
    parts: list[str | Variable] = []
    position = 0
    for match in TEMPLATE.finditer(text):
        parts.append(text[position : match.start()])
        parts.append(parse_variable(match.group(1)))
        position = match.end()
    parts.append(text[position:])
    return tuple(p for p in parts if p != "")


def lookup(value: Any, parts: Parts) -> Any:
    """The value at `parts` under `value`, or `MISSING` (a null value is there)."""
    for key in parts:
        if isinstance(key, int) and isinstance(value, list) and key < len(value):
            value = value[key]
        elif isinstance(key, str) and isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return MISSING
    return value


def resolve(example: Any, parts: Parts) -> bool:
    """Whether the path exists in the example (a null value exists)."""
    return lookup(example, parts) is not MISSING


def item_paths(grader: Any) -> tuple[ItemPath, ...]:
    """The distinct `{{item.x}}` paths used anywhere in `grader`, in first-seen order. Text in
    braces that is no variable is left to the grader's own check (a job or `graders/validate`
    refuses it); it names no field of the rows."""
    seen: dict[str, ItemPath] = {}
    for text in _strings(grader):
        for match in TEMPLATE.finditer(text):
            try:
                variable = parse_variable(match.group(1))
            except TemplateError:
                continue
            if variable.root == "item" and variable.parts and variable.text not in seen:
                seen[variable.text] = variable
    return tuple(seen.values())


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_grader(source: str | Path | dict[str, Any]) -> tuple[ItemPath, ...]:
    """The item paths of a grader given as a file path or as parsed JSON."""
    if isinstance(source, dict):
        return item_paths(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraderError(f"cannot read the grader {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise GraderError(f"the grader {path} is not UTF-8 text") from None
    try:
        grader = json.loads(text)
    except ValueError as exc:
        raise GraderError(f"the grader {path} is not valid JSON ({exc})") from None
    if not isinstance(grader, dict):
        raise GraderError(f"the grader {path} must be a JSON object")
    return item_paths(grader)
