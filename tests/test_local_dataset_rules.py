"""The app's validator and the local backend agree on what a valid example is.

Each tricky row is written as line 11 after ten valid examples of its format; the backend's
loader fails the job exactly when the app's checker finds an error on that line, and then
names line 11. Most rows are ones the two used to disagree on, when the backend had rules of
its own. Two differences are deliberate (see `tunedeck.core.datasets.reader`): the backend
skips whitespace-only lines and does not check what an image part points to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunedeck.backend.errors import ApiError
from tunedeck.backend.graders.grader import MissingVariable, Template, compile_grader, sample_namespace
from tunedeck.backend.graders.grader import parse_template as backend_template
from tunedeck.backend.jobs.training_data import DatasetError, load_dataset
from tunedeck.core.datasets import ERRORS, check_line, check_object, validate_file
from tunedeck.core.datasets.detect import API_METHOD_FORMATS
from tunedeck.core.datasets.grader import TemplateError, item_paths, parse_template, resolve

METHOD = {fmt: method for method, fmt in API_METHOD_FORMATS.items()}
U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "yo"}
D = {"role": "developer", "content": "Answer briefly."}
IMAGE = {"type": "image_url", "image_url": {"url": "https://a.example/b.png"}}
S = {"role": "system", "content": "Be brief."}
FUNCTION = {"name": "f", "arguments": "{}"}
CALL = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": FUNCTION}]}


def chat(*messages: dict, **extra: Any) -> dict:
    return {"messages": list(messages), **extra}


def dpo(**overrides: Any) -> dict:
    rejected = [{"role": "assistant", "content": "no"}]
    row = {"input": {"messages": [U]}, "preferred_output": [A], "non_preferred_output": rejected}
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not None}


VALID = {
    "sft": [chat(U, {"role": "assistant", "content": f"a{i}"}) for i in range(10)],
    "dpo": [dpo(input={"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(10)],
    "rft": [chat(D, {"role": "user", "content": f"q{i}"}, answer=str(i)) for i in range(10)],
}

# (format, row). The backend accepted these; the app rejects them, and now so does the backend.
NOW_REJECTED = [
    ("sft", chat(U, {**A, "weight": 1.0})),  # weight must be the integer 0 or 1
    ("sft", chat(U, {"role": "assistant", "content": ""})),
    ("sft", chat({"role": "user", "content": ""}, A)),
    ("sft", chat({"role": "user", "content": []}, A)),
    ("sft", chat({**U, "mood": 1}, A)),  # a key messages do not have
    ("sft", chat(U, {"role": "tool", "content": "42"}, A)),  # no tool_call_id
    ("sft", chat(U, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]})),  # no id, no arguments
    ("sft", chat(U, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}]})),
    ("sft", chat(U, A, tools="get_weather")),
    ("sft", chat(U, A, parallel_tool_calls=1)),
    ("sft", chat(U, A, functions=[{"nome": "f"}])),
    ("sft", chat({**U, "name": 5}, A)),
    ("sft", chat({"role": "user", "content": [IMAGE] * 11}, A)),
    ("dpo", dpo(preferred_output=[{"role": "assistant", "content": [{"type": "text", "text": "x"}]}])),
    ("dpo", dpo(preferred_output=[CALL])),
    ("dpo", dpo(input={"messages": [U, {**A, "weight": 1}, U]})),  # weight is for SFT only
    ("dpo", chat(U, input={"messages": [U]}, preferred_output=[A], non_preferred_output=[A])),  # messages: a chat line
    ("rft", chat(S, U, answer="x")),  # RFT prompts use developer, not system
    ("rft", chat(U, {"role": "tool", "content": "x", "tool_call_id": "c"}, answer="x")),  # must end with a user turn
    ("rft", chat({"role": "function", "content": "x", "name": "f"}, U, answer="x")),
    ("rft", chat(U, {**A, "weight": 1}, U, answer="x")),
]
# The backend rejected these as another format; the app accepts them, and now so does the backend.
NOW_ACCEPTED = [
    ("sft", chat(U, A, U, answer="x")),  # an SFT line with an ignored key (a warning) and a trailing user turn
    ("sft", chat(U, A, input={"messages": [U]}, preferred_output=[A])),  # messages make it a chat line
    ("rft", chat(U)),  # a prompt with no grader fields
    ("rft", chat(D, U)),
]
# Both rejected (the job errors keep their words) or both accepted, before and now.
SAME = [
    ("sft", chat(U, {**A, "weight": 2})),
    ("sft", chat({**U, "weight": 1}, A)),
    ("sft", chat({"role": "robot", "content": "x"}, A)),
    ("sft", chat({"role": "user"}, A)),
    ("sft", chat({"content": "x"}, A)),
    ("sft", {"messages": "nope"}),
    ("sft", {"prompt": "a", "completion": "b"}),
    ("sft", {"prompt": "a"}),
    ("sft", chat(U, answer="x")),
    ("sft", chat(U)),
    ("sft", [1, 2]),
    ("sft", {"msgs": []}),
    ("sft", chat(U, CALL, {"role": "tool", "content": "42", "tool_call_id": "c1"}, A)),
    ("sft", chat({"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "input_audio"}]}, A)),
    ("sft", chat(U, {"role": "assistant", "content": [IMAGE]})),
    ("sft", chat(S, U, {"role": "function", "content": "r", "name": "f"}, A)),
    ("dpo", dpo()),
    ("dpo", dpo(preferred_output=[A, A])),
    ("dpo", dpo(preferred_output=[U])),
    ("dpo", dpo(non_preferred_output=None)),
    ("dpo", {"input": {"messages": [U]}}),
    ("dpo", dpo(input={"messages": []})),
    ("dpo", chat(U, A)),
    ("rft", chat(U, A, answer="x")),
    ("rft", chat(U, A)),
    ("rft", dpo()),
    ("rft", chat(U, CALL, {"role": "tool", "content": "42", "tool_call_id": "c1"}, U, answer="x")),
]
ROWS = NOW_REJECTED + NOW_ACCEPTED + SAME


def write(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    return path


def backend_verdict(path: Path, fmt: str) -> str | None:
    """None when the backend accepts the file, else the job's error message."""
    try:
        load_dataset(path, METHOD[fmt])
    except DatasetError as exc:
        assert (exc.code, exc.param) == ("invalid_training_file", "training_file")
        return exc.message
    return None


@pytest.mark.parametrize(("fmt", "row"), ROWS, ids=[f"{fmt}-{i}" for i, (fmt, _) in enumerate(ROWS)])
def test_the_app_and_the_backend_agree_on_a_row(tmp_path, fmt, row):
    app_errors = [(code, field) for code, field, _ in check_object(row, fmt)[0] if code in ERRORS]
    failed = backend_verdict(write(tmp_path / "train.jsonl", [*VALID[fmt], row]), fmt)
    if app_errors:
        assert failed is not None and failed.startswith("Invalid file format. Example 11 (line 11)"), (app_errors, failed)
    else:
        assert failed is None, failed


def test_the_streaming_validator_agrees_too(tmp_path):
    """`validate_file` (what the app shows) flags line 11 exactly when the backend fails it."""
    for fmt, row in NOW_REJECTED[:12] + NOW_ACCEPTED:
        path = write(tmp_path / "train.jsonl", [*VALID[fmt], row])
        report = validate_file(path, method=fmt)
        assert (11 in {i.line for i in report.errors}) == (backend_verdict(path, fmt) is not None), row


@pytest.mark.parametrize(
    ("row", "where"),
    [
        (chat(U, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 1}}]}),
         "Example 11 (line 11), message 2, tool_calls[0].function.arguments: 'arguments' must be a JSON string"),
        (chat({**U, "mood": 1}, A), "Example 11 (line 11), message 1: messages may not have the key 'mood'"),
        (chat(U, A, tools=[{"type": "function", "function": {}}]), "Example 11 (line 11), tools[0].function.name: "),
        (chat({"role": "user", "content": [{"type": "text", "text": 5}]}, A), "Example 11 (line 11), message 1, content[0].text: "),
        (chat(U, {"role": "assistant", "content": ""}), "Example 11 (line 11), message 2: the message's content is empty"),
    ],
)  # fmt: skip
def test_the_job_error_names_the_line_and_the_field(tmp_path, row, where):
    failed = backend_verdict(write(tmp_path / "train.jsonl", [*VALID["sft"], row]), "sft")
    assert failed is not None and where in failed


def test_dpo_and_rft_errors_name_the_message(tmp_path):
    bad_input = dpo(input={"messages": [U, {"content": "x"}]})
    failed = backend_verdict(write(tmp_path / "a.jsonl", [*VALID["dpo"], bad_input]), "dpo")
    assert failed is not None and "Example 11 (line 11), input, message 2: 'role' is missing" in failed
    bad_answer = dpo(non_preferred_output=[{"role": "user", "content": "x"}])
    failed = backend_verdict(write(tmp_path / "b.jsonl", [*VALID["dpo"], bad_answer]), "dpo")
    assert failed is not None and "Example 11 (line 11), non_preferred_output, message 1: " in failed
    system = chat(S, U, answer="x")
    failed = backend_verdict(write(tmp_path / "c.jsonl", [*VALID["rft"], system]), "rft")
    assert failed is not None and "Example 11 (line 11), message 1: RFT prompts may not use 'system'" in failed
    robot = chat({"role": "robot", "content": "x"}, U, answer="x")
    failed = backend_verdict(write(tmp_path / "d.jsonl", [*VALID["rft"], robot]), "rft")
    assert failed is not None and "unknown role 'robot' (expected one of developer, user, assistant, tool)" in failed


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": NaN}, {"role": "assistant", "content": "x"}]}',  # not JSON
        b'{"messages": [{"role": "user", "content": "\xff"}, {"role": "assistant", "content": "x"}]}',
        b'{"messages": [',
    ],
)
def test_bytes_the_json_parser_refuses_are_refused_by_both(tmp_path, raw):
    assert [code for code, _, _ in check_line(raw, "sft")] in (["invalid_json"], ["invalid_utf8"])
    assert backend_verdict(write(tmp_path / "train.jsonl", [*VALID["sft"], raw]), "sft") is not None


def test_a_byte_order_mark_is_only_a_warning(tmp_path):
    """The backend used to fail a file that starts with a BOM; the app warns and reads on."""
    path = write(tmp_path / "train.jsonl", VALID["sft"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert validate_file(path).ok
    assert load_dataset(path, "supervised").n_examples == 10


def test_nothing_to_learn_fails_both(tmp_path):
    """Every answer at weight 0: the backend failed the job, the app warned per example only;
    both now fail the file."""
    rows = [chat(U, {"role": "assistant", "content": f"a{i}", "weight": 0}) for i in range(10)]
    path = write(tmp_path / "train.jsonl", rows)
    assert [i.code for i in validate_file(path, method="sft").errors] == ["nothing_to_learn"]
    with pytest.raises(DatasetError, match="nothing to learn") as info:
        load_dataset(path, "supervised")
    assert (info.value.code, info.value.param) == ("invalid_training_file", "training_file")


def test_the_minimum_is_the_same(tmp_path):
    path = write(tmp_path / "train.jsonl", VALID["sft"][:9])
    assert [i.code for i in validate_file(path).errors] == ["too_few_examples"]
    with pytest.raises(DatasetError) as info:
        load_dataset(path, "supervised")
    assert info.value.code == "invalid_n_examples"
    assert load_dataset(write(tmp_path / "valid.jsonl", VALID["sft"][:1]), "supervised", "validation").n_examples == 1


def test_the_deliberate_differences(tmp_path):
    """Blank lines and image targets: errors for the app, let through by the local backend."""
    blank = write(tmp_path / "blank.jsonl", [*VALID["sft"][:5], b"   ", *VALID["sft"][5:]])
    assert [i.code for i in validate_file(blank).errors] == ["blank_line"]
    assert load_dataset(blank, "supervised").n_examples == 10
    image = chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "huge"}}]}, A)
    assert {code for code, _, _ in check_object(image, "sft")[0]} == {"invalid_content_part"}
    assert load_dataset(write(tmp_path / "image.jsonl", [*VALID["sft"], image]), "supervised").n_examples == 11
    misplaced = chat(U, {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "x"}}]})
    assert backend_verdict(write(tmp_path / "misplaced.jsonl", [*VALID["sft"], misplaced]), "sft") is not None


# -- grader templates: one grammar ------------------------------------------------------------------

ITEM = {"answer": "x", "meta": {"level": 2, "0": "zero"}, "tags": ["a", "b"], "none": None}


@pytest.mark.parametrize(
    "path",
    ["answer", "meta.level", "tags[1]", "tags[2]", "tags.0", "meta[0]", "meta.0", "none", "missing", "answer.x"],
)
def test_the_validator_and_the_grader_read_a_path_alike(path):
    """A row passes the validator's grader-field check exactly when the grader can render it."""
    (variable,) = item_paths({"reference": f"{{{{ item.{path} }}}}"})
    template = backend_template(f"{{{{item.{path}}}}}", "grader.reference")
    try:
        template.render({"item": ITEM, "sample": sample_namespace("x")})
        rendered = True
    except MissingVariable as missing:
        assert missing.flag == "invalid_variable_error"
        rendered = False
    assert resolve(ITEM, variable.parts) == rendered


@pytest.mark.parametrize(
    "text",
    ["{{answer}}", "{{sample.text}}", "{{sample}}", "{{item.a b}}", "{{item..a}}", "{{item.a[x]}}", "{{ item }}",
     "{{item.a}} and {{sample.output_json.b[0]}}", "no variables", "{{{item.a}}"],
)  # fmt: skip
def test_one_template_grammar(text):
    """The backend refuses (a 400) exactly the templates the core grammar refuses."""
    try:
        parts = parse_template(text)
    except TemplateError:
        parts = None
    try:
        template: Template | None = backend_template(text, "grader.input")
    except ApiError as exc:
        assert exc.param == "grader.input"
        template = None
    assert (parts is None) == (template is None)
    if template is not None:
        assert template.parts == parts
    grader = {"type": "string_check", "name": "g", "input": text, "reference": "r", "operation": "eq"}
    if parts is None:
        with pytest.raises(ApiError):
            compile_grader(grader)
