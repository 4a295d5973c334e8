"""Convert legacy prompt/completion data (babbage-002, davinci-002) to the chat format.

Each `{"prompt": P, "completion": C}` becomes `{"messages": [{"role": "user", "content": P},
{"role": "assistant", "content": C}]}`, after an optional system message. The legacy
conventions are undone on request: a fixed separator at the end of every prompt
(`prompt_suffix`, e.g. "\\n\\n###\\n\\n"), a stop sequence at the end of every completion
(`completion_suffix`, e.g. " END"), and the leading space of completions (whitespace is
stripped from both unless `strip=False`). Nothing is written unless every line converts: the
output goes to a temporary file renamed into place, and every bad line is reported. A file
with no legacy line, in a chat format already, is said to be so (`ConvertResult.already`)
rather than reported line by line.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checker import BOM, parse_line
from .codes import Issue
from .detect import choose, family, vote
from .messages import json_type
from .rules_legacy import check_legacy


class ConvertError(Exception):
    """The input cannot be read or the output cannot be written."""


@dataclass
class ConvertResult:
    output: Path | None  # None when nothing was written (there were errors, or nothing to convert)
    examples: int = 0
    errors: list[Issue] = field(default_factory=list)
    error_count: int = 0
    already: str | None = None
    """The chat format ("sft", "dpo", "rft") the file is in already, when no line is legacy
    data: nothing to convert and nothing written, and its lines are not errors of a
    conversion (validating the file is what tells its errors)."""

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output) if self.output else None,
            "examples": self.examples,
            "ok": self.ok,
            "already": self.already,
            "error_count": self.error_count,
            "errors": [i.to_json() for i in self.errors],
        }


def default_output(path: Path) -> Path:
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    return path.with_name(f"{stem}_chat.jsonl")


def convert_example(
    obj: dict[str, Any], system: str | None = None, prompt_suffix: str = "", completion_suffix: str = "", strip: bool = True
) -> dict[str, Any]:
    prompt, completion = obj["prompt"], obj["completion"]
    if prompt_suffix and prompt.endswith(prompt_suffix):
        prompt = prompt[: -len(prompt_suffix)]
    if completion_suffix and completion.endswith(completion_suffix):
        completion = completion[: -len(completion_suffix)]
    if strip:
        prompt, completion = prompt.strip(), completion.strip()
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return {"messages": messages}


def convert_file(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    system: str | None = None,
    prompt_suffix: str = "",
    completion_suffix: str = "",
    strip: bool = True,
    overwrite: bool = False,
    max_issues: int = 1000,
) -> ConvertResult:
    source = Path(path)
    target = Path(output) if output else default_output(source)
    if target.exists() and not overwrite:
        raise ConvertError(f"{target} exists; pass --force to overwrite it")
    if target.resolve() == source.resolve():
        raise ConvertError(f"{target} is the input file")
    result = ConvertResult(output=None)
    tmp = target.with_name(target.name + ".part")
    legacy_lines = 0
    other_formats: Counter[str | None] = Counter()  # the votes of the lines in another format

    def bad(line: int, code: str, message: str, fld: str | None = None) -> None:
        result.error_count += 1
        if len(result.errors) < max_issues:
            result.errors.append(Issue(line, code, message, fld))

    try:
        with source.open("rb") as f, tmp.open("w", encoding="utf-8") as out:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]
                if raw.isspace() or not raw:
                    bad(number, "blank_line", "the line is empty; remove it")
                    continue
                obj, problem = parse_line(raw)
                if problem is not None:
                    bad(number, *problem)
                    continue
                if type(obj) is not dict:
                    bad(number, "not_an_object", f"each line must be a JSON object, not {json_type(obj)}")
                    continue
                if family(obj) != "legacy":
                    other_formats[vote(obj)] += 1
                    bad(number, "format_mismatch", "not a legacy prompt/completion example (is it chat already?)")
                    continue
                legacy_lines += 1
                found: list = []
                check_legacy(obj, found)
                errors = [f for f in found if f[0] in ("missing_prompt", "missing_completion")]
                for code, fld, message in errors:
                    bad(number, code, message, fld)
                if errors:
                    continue
                example = convert_example(obj, system, prompt_suffix, completion_suffix, strip)
                try:
                    out.write(json.dumps(example, ensure_ascii=False) + "\n")
                except UnicodeEncodeError:  # a lone surrogate (only the stdlib parser lets one through)
                    out.write(json.dumps(example) + "\n")
                result.examples += 1
        if result.error_count:
            tmp.unlink(missing_ok=True)
            already = choose(other_formats) if not legacy_lines else None
            if already is not None:
                return ConvertResult(output=None, already=already)
            return result
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConvertError(f"cannot convert {source}: {exc.strerror or exc}") from None
    result.output = target
    return result
