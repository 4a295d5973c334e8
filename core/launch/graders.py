"""RFT graders for the launch: a starting grader of each type, the check the editor runs as
the user types, a test run on one dataset row, and graders saved by name.

The check has two halves. The `{{item.*}}` / `{{sample.*}}` templates are read with the
dataset rules' own grammar (`tunedeck.core.datasets.grader`), and each `item` path is looked
up in the sampled rows, so "missing in rows 3, 7" means what the validator will say. The
structure is checked by the local backend's grader code through its front door
(`tunedeck.backend.check_grader`, loaded on first use; the import contracts let core use the
front door, never `tunedeck.backend.<sub>`), so the editor and a job agree on what a valid
grader is. The graders the backend cannot run (score_model and label_model: it refuses
them as `unsupported_grader`) get a light structural check here instead, and inside a multi
grader a placeholder stands in for them so the backend still checks the rest and the formula.

A test run asks the provider's `graders/run` when there is an API; when it has none (404) or
there is no API, the backend's grader code runs it here.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import json
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tunedeck.core.api import ApiError
from tunedeck.core.datasets.checker import BOM, is_blank, parse_line
from tunedeck.core.datasets.grader import TEMPLATE, TemplateError, Variable, parse_variable, resolve
from tunedeck.core.paths import AppPaths
from tunedeck.core.text import strip_controls

GRADER_TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi")
READS_THE_ANSWER = ("string_check", "text_similarity", "score_model", "label_model")
"""Types whose templates should read the sample (else every answer scores the same)."""
MODEL_ROLES = ("system", "developer", "user", "assistant")
DEFAULT_GRADER_MODEL = "gpt-4o-mini-2024-07-18"
"""The judge model a new score_model or label_model grader names (one the OpenAI grader guides use)."""
PLACEHOLDER_REFERENCE = "reference_answer"
"""The field a new grader reads when the dataset has no field besides the conversation."""
CONVERSATION_FIELDS = ("messages", "tools", "parallel_tool_calls", "functions")

GRADERS_FOLDER = "graders"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")
MAX_SAVED_BYTES = 1 << 20
MAX_LINE_BYTES = 16 << 20
"""A dataset line longer than this is skipped (counted as bad) when rows are sampled."""
MAX_SAMPLE_BYTES = 64 << 20
"""Sampling stops after reading this much, however few rows it found."""
ROWS_NAMED = 8
"""How many row numbers a missing-field warning lists before "…"."""

PROVIDER = "provider"
LOCAL_CODE = "local grader code"

ApiRun = Callable[[dict[str, Any], str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""The provider's `graders/run`: `Api.run_grader` (grader, model_sample, item) -> response."""


# -- starting graders -----------------------------------------------------------------------


def dataset_fields(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The top-level keys of `rows`, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def template_for(grader_type: str, dataset_fields: Sequence[str]) -> dict[str, Any]:
    """A working starting grader of `grader_type` that reads the dataset's first field beside
    the conversation (`reference_answer` when there is none)."""
    field_name = next((f for f in dataset_fields if f not in CONVERSATION_FIELDS), PLACEHOLDER_REFERENCE)
    reference = "{{item.%s}}" % field_name if _is_plain_key(field_name) else "{{item.%s}}" % PLACEHOLDER_REFERENCE
    compare = f"Reference answer: {reference}\nModel answer: {{{{sample.output_text}}}}"
    if grader_type == "string_check":
        return {"type": "string_check", "name": "exact_match", "input": "{{sample.output_text}}",
                "reference": reference, "operation": "eq"}  # fmt: skip
    if grader_type == "text_similarity":
        return {"type": "text_similarity", "name": "similarity", "input": "{{sample.output_text}}",
                "reference": reference, "evaluation_metric": "fuzzy_match"}  # fmt: skip
    if grader_type == "score_model":
        return {
            "type": "score_model",
            "name": "judge",
            "model": DEFAULT_GRADER_MODEL,
            "input": [
                {"role": "system", "content": "Score how well the model answer matches the reference answer, "
                                              "from 0 (wrong) to 1 (right). Reply with the number only."},
                {"role": "user", "content": compare},
            ],
            "range": [0, 1],
        }  # fmt: skip
    if grader_type == "label_model":
        return {
            "type": "label_model",
            "name": "labeler",
            "model": DEFAULT_GRADER_MODEL,
            "input": [
                {"role": "system", "content": "Label the model answer `correct` if it means the same as the "
                                              "reference answer, else `incorrect`."},
                {"role": "user", "content": compare},
            ],
            "labels": ["correct", "incorrect"],
            "passing_labels": ["correct"],
        }  # fmt: skip
    if grader_type == "python":
        key = field_name if _is_plain_key(field_name) else PLACEHOLDER_REFERENCE
        source = (
            "def grade(sample, item) -> float:\n"
            f"    wanted = str(item.get({key!r}, '')).strip()\n"
            "    return 1.0 if sample['output_text'].strip() == wanted else 0.0\n"
        )
        return {"type": "python", "name": "python_grader", "source": source}
    if grader_type == "multi":
        exact = template_for("string_check", dataset_fields)
        close = template_for("text_similarity", dataset_fields)
        return {
            "type": "multi",
            "name": "combined",
            "graders": {"exact": {**exact, "name": "exact"}, "close": {**close, "name": "close"}},
            "calculate_output": "0.5 * exact + 0.5 * close",
        }
    raise ValueError(f"unknown grader type {grader_type!r}; expected one of {', '.join(GRADER_TYPES)}")


def editor_text(grader: Any) -> str:
    """`grader` as indented JSON for an editor, with every character a terminal would act on
    or hide (controls, bidi, zero-width: `core.text`'s list) written as a JSON escape, so a
    saved grader shows what it holds and still parses to the same value."""
    text = json.dumps(grader, indent=2, ensure_ascii=False)
    if strip_controls(text) == text:
        return text
    return "".join(json.dumps(c)[1:-1] if strip_controls(c) != c else c for c in text)


def _is_plain_key(name: str) -> bool:
    """Whether `{{item.<name>}}` reads exactly this key (the grammar splits on dots, brackets,
    braces and spaces)."""
    return bool(name) and not any(c in name for c in ".[]{} \t\n\r")


# -- the check ------------------------------------------------------------------------------


class Reference(NamedTuple):
    """An `{{item.*}}` path the grader reads, and in how many of the sampled rows it is."""

    path: str  # "item.answer"
    found_in: int
    of_rows: int


@dataclass
class GraderCheck:
    grader: dict[str, Any] | None
    """The parsed grader (None when the text is not a JSON object)."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.grader is not None and not self.errors


class RowSample(list):
    """The first rows of a dataset (`list[dict]`), with the 1-based line of each in `lines`,
    the number of lines skipped as not a JSON object in `skipped`, and whether the whole
    file was read (`complete`: no rows after these)."""

    def __init__(
        self, rows: Sequence[dict[str, Any]] = (), lines: Sequence[int] = (), skipped: int = 0, complete: bool = False
    ) -> None:
        super().__init__(rows)
        self.lines = list(lines)
        self.skipped = skipped
        self.complete = complete

    def row_at(self, line: int) -> dict[str, Any] | None:
        """The row on 1-based `line`, when it is among the sampled ones."""
        try:
            return self[self.lines.index(line)]
        except ValueError:
            return None


def check_grader_text(
    text: str, rows: Sequence[dict[str, Any]], method_allows_label_model: bool = False
) -> GraderCheck:
    """Everything wrong with the grader typed as `text`, checked against the dataset's `rows`
    (a `RowSample` names rows by line; a plain list by position from 1). Fast enough to run
    on each pause in typing: no I/O, one pass over the rows per `item` path."""
    try:
        grader = json.loads(text)
    except json.JSONDecodeError as exc:
        return GraderCheck(None, [f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"])
    except RecursionError:
        return GraderCheck(None, ["not JSON: nested too deeply"])
    if not isinstance(grader, dict):
        return GraderCheck(None, ["a grader is a JSON object with a \"type\" ({...})"])
    check = GraderCheck(grader)
    reported: set[str] = set()  # params with a problem already said here (the backend's would repeat it)

    def problem(param: str, message: str) -> None:
        reported.add(param)
        check.errors.append(f"{param}: {message}")

    _check_structure(grader, "grader", problem, nested=False)
    if grader.get("type") == "label_model" and not method_allows_label_model:
        problem("grader.type", "an RFT job takes label_model only inside a multi grader")
    item_variables = _check_templates(grader, "grader", problem, check.warnings)
    backend_error = _backend_check(grader)
    if backend_error is not None and backend_error.get("param") not in reported:
        check.errors.append(str(backend_error.get("message") or backend_error))
    _check_references(item_variables, rows, check)
    return check


def _check_structure(grader: Any, param: str, problem: Callable[[str, str], None], nested: bool) -> None:
    """What the backend's check does not cover: the type itself, the graders it cannot run,
    and the sub-graders of a multi that it stops at."""
    if not isinstance(grader, dict):
        problem(param, "expected a grader object with a \"type\"")
        return
    kind = grader.get("type")
    if kind not in GRADER_TYPES:
        problem(f"{param}.type", f"expected one of {', '.join(GRADER_TYPES)}; got {json.dumps(kind)[:40]}")
        return
    if not isinstance(grader.get("name"), str) or not grader["name"].strip():
        problem(f"{param}.name", "required: a name for this grader")
    if kind in ("score_model", "label_model"):
        _check_model_grader(grader, param, problem)
    elif kind == "python":
        if not isinstance(grader.get("source"), str) or not grader["source"].strip():
            problem(f"{param}.source", "required: the Python source, defining grade(sample, item)")
        if "image_tag" in grader and not isinstance(grader["image_tag"], str):
            problem(f"{param}.image_tag", "expected a string")
    elif kind == "multi":
        if nested:
            problem(f"{param}.type", "multi graders cannot be nested")
            return
        for key, sub in _sub_graders(grader):
            _check_structure(sub, f"{param}.graders.{key}", problem, nested=True)


def _check_model_grader(grader: dict[str, Any], param: str, problem: Callable[[str, str], None]) -> None:
    if not isinstance(grader.get("model"), str) or not grader["model"].strip():
        problem(f"{param}.model", "required: the model that grades")
    messages = grader.get("input")
    if not isinstance(messages, list) or not messages:
        problem(f"{param}.input", "required: a list of messages ({\"role\": ..., \"content\": ...})")
    else:
        for n, message in enumerate(messages):
            where = f"{param}.input[{n}]"
            if not isinstance(message, dict):
                problem(where, "expected a message object")
            elif message.get("role") not in MODEL_ROLES:
                problem(f"{where}.role", f"expected one of {', '.join(MODEL_ROLES)}")
            elif not isinstance(message.get("content"), (str, list, dict)):
                problem(f"{where}.content", "required: the message text")
    if grader["type"] == "score_model":
        span = grader.get("range")
        if span is not None:
            numbers = isinstance(span, list) and len(span) == 2 and all(_is_number(v) for v in span)
            if not numbers:
                problem(f"{param}.range", "expected [lowest, highest], two numbers")
            elif span[0] >= span[1]:
                problem(f"{param}.range", "the lowest score must be below the highest")
        return
    labels = grader.get("labels")
    passing = grader.get("passing_labels")
    if not _strings_list(labels):
        problem(f"{param}.labels", "required: a list of the labels the model may give")
    if not _strings_list(passing):
        problem(f"{param}.passing_labels", "required: the labels that pass (some of labels)")
    elif _strings_list(labels):
        unknown = [label for label in passing if label not in labels]
        if unknown:
            problem(f"{param}.passing_labels", f"not among labels: {', '.join(map(json.dumps, unknown))}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _strings_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _sub_graders(grader: dict[str, Any]) -> list[tuple[str, Any]]:
    """A multi grader's members as (formula name, grader): an object map, a list or a single
    grader (the shapes the API takes; in the last two the name is the grader's)."""
    members = grader.get("graders")
    if isinstance(members, dict) and isinstance(members.get("type"), str):
        members = [members]
    if isinstance(members, list):
        return [(str(sub.get("name")) if isinstance(sub, dict) else str(n), sub) for n, sub in enumerate(members)]
    if isinstance(members, dict):
        return [(str(key), sub) for key, sub in members.items()]
    return []


def _check_templates(
    grader: Any, param: str, problem: Callable[[str, str], None], warnings: list[str]
) -> list[Variable]:
    """Every `{{...}}` in the fields graders render, parsed; the distinct `item` variables,
    in first-seen order."""
    items: dict[str, Variable] = {}
    for where, kind, texts in _graders_in(grader, param):
        reads_sample = False
        for at, text in texts:
            for match in TEMPLATE.finditer(text):
                try:
                    variable = parse_variable(match.group(1))
                except TemplateError as exc:
                    problem(at, str(exc))
                    continue
                if variable.root == "sample":
                    reads_sample = True
                elif variable.parts:
                    items.setdefault(variable.text, variable)
                else:
                    problem(at, "{{item}} needs a field: {{item.<field>}}")
        if not reads_sample and texts and kind in READS_THE_ANSWER:
            warnings.append(f"{where} never reads the answer ({{{{sample.*}}}}): every answer scores the same")
    return list(items.values())


def _graders_in(grader: Any, param: str) -> list[tuple[str, Any, list[tuple[str, str]]]]:
    """(param, type, [(param, text)...]) for `grader` and a multi grader's members: the strings
    each renders (`input`, `reference`, the contents of a model grader's messages)."""
    if not isinstance(grader, dict):
        return []
    texts: list[tuple[str, str]] = []
    for key in ("input", "reference"):
        value = grader.get(key)
        if isinstance(value, str):
            texts.append((f"{param}.{key}", value))
        elif isinstance(value, (list, dict)) and key == "input":
            texts.extend(_strings_under(value, f"{param}.input"))
    found = [(param, grader.get("type"), texts)]
    if grader.get("type") == "multi":
        for key, sub in _sub_graders(grader):
            found.extend(_graders_in(sub, f"{param}.graders.{key}"))
    return found


def _strings_under(value: Any, param: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(param, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            found.append((where, node))
        elif isinstance(node, dict):
            stack.extend((f"{where}.{k}", v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((f"{where}[{n}]", v) for n, v in reversed(list(enumerate(node))))
    return found


def _backend_check(grader: dict[str, Any]) -> dict[str, Any] | None:
    """The backend's own check (what a job or `graders/validate` would answer). A grader type
    it cannot run is checked here instead: at the top it is left alone, inside a multi a
    placeholder takes its place so the rest and the formula are still checked."""
    from tunedeck.backend import check_grader

    candidate = grader
    for _ in range(len(_sub_graders(grader)) + 1):
        error = check_grader(candidate)
        if error is None or error.get("code") != "unsupported_grader":
            return error
        key = _unsupported_member(str(error.get("param") or ""))
        if key is None or candidate.get("type") != "multi":
            return None
        candidate = _with_placeholder(candidate, key)
        if candidate is None:
            return None
    return None


def _unsupported_member(param: str) -> str | None:
    """`grader.graders.<key>.type` -> `<key>` (None for the top grader's type)."""
    prefix, suffix = "grader.graders.", ".type"
    if param.startswith(prefix) and param.endswith(suffix):
        return param[len(prefix) : -len(suffix)]
    return None


def _with_placeholder(grader: dict[str, Any], key: str) -> dict[str, Any] | None:
    stand_in = {"type": "string_check", "name": key, "input": "", "reference": "", "operation": "eq"}
    changed = copy.deepcopy(grader)
    members = changed.get("graders")
    if isinstance(members, dict) and not isinstance(members.get("type"), str):
        if key not in members:
            return None
        members[key] = stand_in
    elif isinstance(members, list):
        at = next((n for n, sub in enumerate(members) if isinstance(sub, dict) and sub.get("name") == key), None)
        if at is None:
            return None
        members[at] = stand_in
    else:
        changed["graders"] = stand_in
    return changed


def _check_references(variables: list[Variable], rows: Sequence[dict[str, Any]], check: GraderCheck) -> None:
    lines = rows.lines if isinstance(rows, RowSample) else list(range(1, len(rows) + 1))
    fields = dataset_fields(rows)
    for variable in variables:
        path = f"item.{variable.text}"
        missing = [line for line, row in zip(lines, rows) if not resolve(row, variable.parts)]
        check.references.append(Reference(path, len(rows) - len(missing), len(rows)))
        if not missing:
            continue
        if len(missing) == len(rows):
            guess = difflib.get_close_matches(str(variable.parts[0]), fields, n=1)
            hint = f"; did you mean item.{guess[0]}?" if guess else f"; the rows have {', '.join(fields[:8])}"
            check.errors.append(f"{path}: in none of the {len(rows)} rows read{hint}")
        else:
            named = ", ".join(map(str, missing[:ROWS_NAMED])) + (", …" if len(missing) > ROWS_NAMED else "")
            check.warnings.append(f"{path}: missing in rows {named} ({len(missing)} of {len(rows)})")


# -- the dataset's rows ------------------------------------------------------------------------


def sample_rows(path: Path, limit: int = 200) -> RowSample:
    """The first `limit` rows of a JSONL dataset, read line by line (never the whole file).
    Blank lines are passed over; a line that is not a JSON object is skipped and counted."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    skipped = 0
    read = 0
    with open(path, "rb") as source:
        number = 0
        while len(rows) < limit and read < MAX_SAMPLE_BYTES:
            raw = source.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return RowSample(rows, lines, skipped, complete=True)
            number += 1
            read += len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                skipped += 1
                read += _skip_rest_of_line(source)
                continue
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if is_blank(raw.strip()):
                continue
            value, _ = parse_line(raw)
            if isinstance(value, dict):
                rows.append(value)
                lines.append(number)
            else:
                skipped += 1
    return RowSample(rows, lines, skipped)


def _skip_rest_of_line(source: Any) -> int:
    skipped = 0
    while True:
        chunk = source.readline(1 << 20)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def row_at(path: Path, line: int) -> dict[str, Any]:
    """The row on 1-based `line` of a JSONL file, read up to that line; raises ValueError
    saying why there is none (past the end, blank, not a JSON object)."""
    if line < 1:
        raise ValueError("rows are numbered from 1")
    with open(path, "rb") as source:
        for number in range(1, line + 1):
            raw = source.readline(MAX_LINE_BYTES + 1)
            if not raw:
                raise ValueError(f"the file has {number - 1} lines")
            if number < line and len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                _skip_rest_of_line(source)
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
        raise ValueError(f"line {line} is longer than {MAX_LINE_BYTES >> 20} MiB")
    if line == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    value, problem = parse_line(raw)
    if problem is not None or not isinstance(value, dict):
        raise ValueError(f"line {line} is {'blank' if is_blank(raw.strip()) else 'not a JSON object'}")
    return value


# -- saved graders -------------------------------------------------------------------------------


class SavedGraders(NamedTuple):
    graders: dict[str, dict[str, Any]]
    """Name -> grader, sorted by name."""
    errors: list[str]
    """One line per saved file that could not be read (damaged files are reported, not dropped)."""


def graders_dir(paths: AppPaths) -> Path:
    return paths.config_dir / GRADERS_FOLDER


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a saved grader (None when it can): 1 to 64 letters, digits,
    spaces, `_ . -`, starting with a letter or digit (so never a path or a hidden file)."""
    if NAME.fullmatch(name):
        return None
    if not name or len(name) > 64:
        return "a grader's name is 1 to 64 characters"
    return "a grader's name uses letters, digits, spaces and _ . - (starting with a letter or digit)"


def save_grader(paths: AppPaths, name: str, grader: dict[str, Any]) -> Path:
    """Write `grader` as `<config>/graders/<name>.json`, owner-only, replaced atomically;
    raises ValueError for a bad name."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    folder = graders_dir(paths)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    temporary = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(grader, out, indent=2, ensure_ascii=False)
            out.write("\n")
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def saved_graders(paths: AppPaths) -> SavedGraders:
    """Every saved grader by name, and a line for each file that could not be read."""
    graders: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    try:
        files = sorted(graders_dir(paths).glob("*.json"))
    except OSError as exc:
        return SavedGraders({}, [f"{graders_dir(paths)}: {exc.strerror or exc}"])
    for file in files:
        if name_problem(file.stem) is not None:
            errors.append(f"{file.name}: not a grader name this app saves (left alone)")
            continue
        try:
            if file.stat().st_size > MAX_SAVED_BYTES:
                errors.append(f"{file.name}: larger than {MAX_SAVED_BYTES >> 20} MiB")
                continue
            grader = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            errors.append(f"{file.name}: cannot read it ({exc.strerror or exc})")
            continue
        except UnicodeDecodeError:
            errors.append(f"{file.name}: not UTF-8 text")
            continue
        except json.JSONDecodeError as exc:
            errors.append(f"{file.name}: damaged, not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
            continue
        if not isinstance(grader, dict):
            errors.append(f"{file.name}: damaged, not a grader object")
            continue
        graders[file.stem] = grader
    return SavedGraders(graders, errors)


# -- test runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraderRun:
    """One graded sample."""

    reward: float | None
    """None when it did not run (`message` says why)."""
    scores: dict[str, float]
    """Sub-scores by name (a multi grader's members)."""
    errors: list[str]
    """The error flags that were set (`invalid_variable_error`...), with their details."""
    source: str
    """Where it ran: `PROVIDER` ("provider") or `LOCAL_CODE` ("local grader code")."""
    message: str = ""
    """Why it did not run, or a note on where it ran."""
    seconds: float | None = None


async def test_run(api_run: ApiRun | None, grader: dict[str, Any], sample: str, item: dict[str, Any]) -> GraderRun:
    """Grade the answer `sample` for the dataset row `item`: on the provider (`api_run`, its
    `graders/run`) when there is one, else (no API, not connected yet, or a provider without
    `graders/run`) with the local backend's grader code, off the event loop. A refusal (a 400 such as
    `unsupported_grader`, a connection failure) comes back as a `GraderRun` with no reward
    and the reason in `message`; it is an answer, not a crash."""
    from tunedeck.core.service import ServiceError  # here: the service imports the launch package

    note = ""
    if api_run is not None:
        try:
            response = await api_run(grader, sample, item)
        except ApiError as exc:
            if exc.kind != "not_found":
                return GraderRun(None, {}, [], PROVIDER, _refusal("The provider did not run it", exc.message, exc.code))
            note = "the provider has no graders/run: ran the local grader code"
        except ServiceError as exc:  # `Service.run_grader` before it connected: there is no API yet
            note = f"{exc}: ran the local grader code"
        else:
            return _run_from(response, PROVIDER)
    from tunedeck.backend import run_grader

    response = await asyncio.to_thread(run_grader, grader, sample, item)
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict):
        message = _refusal("The local grader code did not run it", str(error.get("message")), error.get("code"))
        return GraderRun(None, {}, [], LOCAL_CODE, f"{note}; {message}" if note else message)
    return _run_from(response, LOCAL_CODE, note)


test_run.__test__ = False  # type: ignore[attr-defined]  # a function, not a pytest test, when imported by name


def _refusal(lead: str, message: str, code: Any) -> str:
    return f"{lead}: {message}" + (f" ({code})" if code else "")


def _run_from(response: Any, source: str, note: str = "") -> GraderRun:
    if not isinstance(response, dict) or not _is_number(response.get("reward")):
        return GraderRun(None, {}, [], source, "the answer had no reward")
    metadata = response.get("metadata") if isinstance(response.get("metadata"), dict) else {}
    flags = metadata.get("errors") if isinstance(metadata.get("errors"), dict) else {}
    errors = []
    for flag, value in flags.items():
        # The SDK names `model_grader_*` fields `api_model_grader_*` (pydantic reserves `model_`),
        # and a dump holds both: one error each.
        name = flag.removeprefix("api_")
        if value is True and not any(e == name or e.startswith(name + ":") for e in errors):
            detail = next(
                (flags.get(f"{p}{name}{s}") for p in ("", "api_") for s in ("_details", "_type") if flags.get(f"{p}{name}{s}")),
                None,
            )
            errors.append(f"{name}: {detail}" if isinstance(detail, str) and detail else name)
    subs = response.get("sub_rewards") or metadata.get("scores") or {}
    scores = {str(k): float(v) for k, v in subs.items() if _is_number(v)} if isinstance(subs, dict) else {}
    seconds = metadata.get("execution_time")
    return GraderRun(float(response["reward"]), scores, errors, source, note, seconds if _is_number(seconds) else None)
