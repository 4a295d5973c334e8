"""Dataset rows to evaluation examples: the prompt to send, the reference to compare with,
and the item a grader reads.

One streaming pass over a JSONL file, with the dataset checker's own line parser (the same
JSON the validator accepts, a byte order mark allowed on the first line only). Every row that
cannot be evaluated becomes an `ExampleProblem` naming its line and field; blank lines are
the only ones passed over. `limit` counts evaluable rows, and reading stops once it is met,
so a large file costs only the rows asked for.

What a row gives:
- SFT (`messages` ending in an assistant turn): the turns before it are the prompt, its text
  the reference;
- DPO (`input.messages` with a `preferred_output`): the input is the prompt, the preferred
  answer's final assistant text the reference;
- RFT (`messages` ending in another turn): the messages are the prompt, `reference_answer`
  (JSON text when it is not a string) the reference, or none.

Prompt turns are sent as `{"role", "content"}` with text content (content parts joined
without a separator, as one text), so a row's training-only keys (`weight`) never reach the
API. A turn whose content is not text (an image, a tool call) or a tool turn cannot be asked
as it is, and is a problem rather than an altered question.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, overload

from tunedeck.core.datasets.checker import BOM, is_blank, parse_line
from tunedeck.core.datasets.messages import json_type

from .records import EvalExample, ExampleProblem, skipped_rows

PROMPT_ROLES = ("system", "developer", "user", "assistant")
"""The roles a prompt turn may have (tool turns need the calls they answer, which are not text)."""
INSTRUCTION_ROLES = ("system", "developer")
MAX_LINE_BYTES = 32 << 20
"""A longer line is a problem, read past in chunks rather than held in memory."""
MAX_PROBLEMS = 1000
"""Problems listed one by one; beyond them one last problem counts the rest."""
_CHUNK = 1 << 20


class ExamplesError(Exception):
    """The file cannot be read, or holds no row that can be evaluated."""


class ExampleFile(Sequence[EvalExample]):
    """A file's evaluable rows, read again from disk when asked for: only each row's byte
    offset and line number are held (16 bytes a row), so a run over 100,000 rows costs no
    more memory than one over 100. The rows were checked when the offsets were taken; a file
    changed since raises `ExamplesError` at the row that no longer reads."""

    def __init__(self, path: Path, offsets: array, lines: array) -> None:
        self.path = Path(path)
        self._offsets = offsets
        self._lines = lines

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> EvalExample: ...
    @overload
    def __getitem__(self, index: slice) -> list[EvalExample]: ...
    def __getitem__(self, index: int | slice) -> EvalExample | list[EvalExample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        with open(self.path, "rb") as f:
            return self._at(f, index)

    def __iter__(self) -> Iterator[EvalExample]:
        with open(self.path, "rb") as f:
            for index in range(len(self)):
                yield self._at(f, index)

    def _at(self, f: IO[bytes], index: int) -> EvalExample:
        offset, line = self._offsets[index], self._lines[index]
        f.seek(offset)
        raw = f.readline(MAX_LINE_BYTES + 1)
        if offset == 0 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            return _example(raw, line, index)[1]
        except RowProblem as problem:
            raise ExamplesError(f"{self.path}:{line}: changed since it was read ({problem.message})") from None


@dataclass(frozen=True)
class ExampleSet:
    examples: Sequence[EvalExample]
    problems: list[ExampleProblem]
    method: str
    """"sft", "dpo" or "rft" when every example is of that kind, else "mixed"."""
    sha256: str
    path: str


class RowProblem(Exception):
    """Why one row cannot be evaluated (caught per row; never leaves this module)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- the file -------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_examples(path: Path, limit: int | None = None) -> ExampleSet:
    """The file's evaluable rows (the first `limit` of them) and the problems met on the way.
    Raises `ExamplesError` when the file cannot be read or has no evaluable row."""
    path = Path(path)
    try:
        sha256 = file_sha256(path)
        examples, problems, kinds = _read(path, limit)
    except OSError as exc:
        raise ExamplesError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not examples:
        raise ExamplesError(_nothing_to_evaluate(path, problems))
    method = kinds.pop() if len(kinds) == 1 else "mixed"
    return ExampleSet(examples, problems, method, sha256, str(path))


def _nothing_to_evaluate(path: Path, problems: list[ExampleProblem]) -> str:
    if not problems:
        return f"{path} has no rows to evaluate"
    first = problems[0].describe(str(path))
    rest = skipped_rows(problems) - problems[0].rows
    more = f" and {rest} more" if rest > 0 else ""
    return f"{path} has no row that can be evaluated: {first}{more}"


class ProblemList:
    """Problems in line order, the first `MAX_PROBLEMS` listed and the rest counted, so a file
    of a million bad lines costs no more memory than one of a thousand."""

    def __init__(self) -> None:
        self.items: list[ExampleProblem] = []
        self.unlisted = 0
        self.last_line = 0

    def add(self, problem: ExampleProblem) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)
        else:
            self.unlisted += 1
            self.last_line = problem.line

    def listed(self) -> list[ExampleProblem]:
        if not self.unlisted:
            return list(self.items)
        more = ExampleProblem(
            self.last_line, None, f"and {self.unlisted} more rows that cannot be evaluated (not listed)", self.unlisted
        )
        return [*self.items, more]


def _read(path: Path, limit: int | None) -> tuple[ExampleFile, list[ExampleProblem], set[str]]:
    offsets, lines = array("q"), array("q")
    problems = ProblemList()
    kinds: set[str] = set()
    if limit is not None and limit <= 0:
        return ExampleFile(path, offsets, lines), problems.listed(), kinds
    with open(path, "rb") as f:
        for number, offset, raw in _lines(f):
            if raw is None:
                problems.add(ExampleProblem(number, None, f"the line is longer than {_size(MAX_LINE_BYTES)}"))
                continue
            if is_blank(raw):
                continue
            try:
                kind, _ = _example(raw, number, len(offsets))  # checked now, read again when asked
            except RowProblem as problem:
                problems.add(ExampleProblem(number, problem.field, problem.message))
                continue
            offsets.append(offset)
            lines.append(number)
            kinds.add(kind)
            if limit is not None and len(offsets) >= limit:
                break
    return ExampleFile(path, offsets, lines), problems.listed(), kinds


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def _lines(f: IO[bytes]) -> Iterator[tuple[int, int, bytes | None]]:
    """(1-based line number, byte offset, bytes) for each line; None for a line over
    `MAX_LINE_BYTES`, whose bytes are skipped without being kept. A BOM is dropped from the
    first line only."""
    number = offset = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        start, offset = offset, offset + len(raw)
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            _skip_rest_of_line(f)
            offset = f.tell()
            yield number, start, None
            continue
        yield number, start, raw


def _skip_rest_of_line(f: IO[bytes]) -> None:
    while True:
        chunk = f.readline(_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


# -- one row --------------------------------------------------------------------------------


def _example(raw: bytes, line: int, index: int) -> tuple[str, EvalExample]:
    """The row's kind and example; raises `RowProblem` when it cannot be evaluated."""
    row, error = parse_line(raw)
    if error is not None:
        raise RowProblem(None, error[1])
    if type(row) is not dict:
        raise RowProblem(None, f"each line must be a JSON object, not {json_type(row)}")
    if "messages" in row:
        kind, prompt, reference = _chat_row(row)
    elif "input" in row or "preferred_output" in row:
        kind, prompt, reference = _dpo_row(row)
    elif "prompt" in row or "completion" in row:
        raise RowProblem("prompt", "a prompt/completion (legacy) row: only chat rows can be asked of chat models")
    else:
        raise RowProblem("messages", "no 'messages' (SFT or RFT) or 'input' (DPO) key: no prompt to ask")
    item = dict(row)
    if reference is not None:
        item.setdefault("reference_answer", reference)
    return kind, EvalExample(index, line, prompt, reference, item)


def _chat_row(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    messages = _message_list(row["messages"], "messages")
    last = messages[-1]
    if last.get("role") == "assistant":
        if len(messages) < 2:
            raise RowProblem("messages", "only an assistant answer: no prompt to ask")
        reference = _text(last.get("content"), f"messages[{len(messages) - 1}].content")
        return "sft", _prompt(messages[:-1], "messages"), reference
    return "rft", _prompt(messages, "messages"), _reference_field(row)


def _reference_field(row: dict[str, Any]) -> str | None:
    if "reference_answer" not in row or row["reference_answer"] is None:
        return None
    value = row["reference_answer"]
    # JSON text for an object, list or number, so a JSON grader can read it back
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _dpo_row(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    source = row.get("input")
    if type(source) is not dict:
        raise RowProblem("input", "a DPO row needs 'input': {'messages': [...]}")
    prompt = _prompt(_message_list(source.get("messages"), "input.messages"), "input.messages")
    preferred = row.get("preferred_output")
    if preferred is None:
        raise RowProblem("preferred_output", "a DPO row needs a 'preferred_output' answer")
    answers = _message_list(preferred, "preferred_output")
    for position in range(len(answers) - 1, -1, -1):
        if answers[position].get("role") == "assistant":
            return "dpo", prompt, _text(answers[position].get("content"), f"preferred_output[{position}].content")
    raise RowProblem("preferred_output", "the preferred output has no assistant message")


def _message_list(value: Any, field: str) -> list[dict[str, Any]]:
    if type(value) is not list or not value:
        raise RowProblem(field, f"expected a non-empty list of messages, not {json_type(value)}")
    for position, message in enumerate(value):
        if type(message) is not dict:
            raise RowProblem(f"{field}[{position}]", f"a message must be an object, not {json_type(message)}")
    return value


def _prompt(messages: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """The turns as sent: role and text content only (and `name` when the row gives one)."""
    prompt = []
    for position, message in enumerate(messages):
        role = message.get("role")
        if role not in PROMPT_ROLES:
            shown = json.dumps(role)[:40] if role is not None else "none"
            raise RowProblem(
                f"{field}[{position}].role", f"role {shown} cannot be asked (only {', '.join(PROMPT_ROLES)})"
            )
        turn = {"role": role, "content": _text(message.get("content"), f"{field}[{position}].content")}
        if isinstance(message.get("name"), str):
            turn["name"] = message["name"]
        prompt.append(turn)
    if not any(turn["role"] == "user" for turn in prompt):
        raise RowProblem(field, "the prompt has no user message")
    return prompt


def _text(content: Any, field: str) -> str:
    """A message's content as text: a string, or text parts joined; else `RowProblem`."""
    if isinstance(content, str):
        return content
    if type(content) is not list or not content:
        raise RowProblem(field, f"the content is {json_type(content)}, not text")
    texts = []
    for position, part in enumerate(content):
        if type(part) is not dict or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if type(part) is dict else json_type(part)
            raise RowProblem(f"{field}[{position}]", f"a {str(kind)[:40]} part is not text; only text can be evaluated")
        texts.append(part["text"])
    return "".join(texts)


# -- prompts as sent --------------------------------------------------------------------------


def with_system_prompt(prompt: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """`prompt` unchanged for None; else its leading system/developer turns replaced by one
    system turn of `system_prompt` (the prompted baseline's instructions stand in for the
    row's own)."""
    if system_prompt is None:
        return prompt
    start = 0
    while start < len(prompt) and prompt[start].get("role") in INSTRUCTION_ROLES:
        start += 1
    return [{"role": "system", "content": system_prompt}, *prompt[start:]]
