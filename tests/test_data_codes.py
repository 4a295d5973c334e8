"""Every stable issue code, each from a minimal failing line: scripts rely on these codes.

Each case writes ten valid examples of the format and then the failing line (line 11),
validates the file, and expects the code on that line (with its field where one applies);
the pure per-line checker must agree for line-level codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunedeck.core.datasets import ERRORS, WARNINGS, check_line, validate_file
from tunedeck.core.datasets import reader as reader_module
from tunedeck.core.datasets import scan as scan_module

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi?"}
ASSISTANT = {"role": "assistant", "content": "Hello."}


def sft(*messages: dict, **extra) -> dict:
    return {"messages": list(messages), **extra}


def dpo(**overrides) -> dict:
    row = {
        "input": {"messages": [USER]},
        "preferred_output": [{"role": "assistant", "content": "Good."}],
        "non_preferred_output": [{"role": "assistant", "content": "Bad."}],
    }
    row.update(overrides)
    return {k: v for k, v in row.items() if v is not None}


def rft(*messages: dict, **extra) -> dict:
    return {"messages": list(messages) or [{"role": "developer", "content": "Answer."}, USER], "answer": "x", **extra}


VALID = {
    "sft": [sft(SYSTEM, {"role": "user", "content": f"q{i}"}, ASSISTANT) for i in range(10)],
    "dpo": [dpo(input={"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(10)],
    "rft": [rft({"role": "developer", "content": "Answer."}, {"role": "user", "content": f"q{i}"}) for i in range(10)],
    "legacy": [{"prompt": f"q{i} ->", "completion": f" a{i}"} for i in range(10)],
}

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}

# (code, format, failing line (bytes or JSON), field on the issue or None, extra validate kwargs)
LINE_CASES = [
    ("invalid_utf8", "sft", b'{"messages": "\xff\xfe"}', None, {}),
    ("invalid_json", "sft", b'{"messages": [', None, {}),
    ("blank_line", "sft", b"   ", None, {}),
    ("not_an_object", "sft", [1, 2], None, {}),
    ("missing_messages_list", "sft", {"messages": []}, "messages", {}),
    ("missing_messages_list", "sft", {"msgs": [USER, ASSISTANT]}, "messages", {}),
    ("message_not_object", "sft", sft("hello", ASSISTANT), "messages[0]", {}),
    ("message_missing_key", "sft", sft({"content": "x"}, ASSISTANT), "messages[0].role", {}),
    ("message_unrecognized_key", "sft", sft({"role": "user", "content": "x", "mood": 1}, ASSISTANT), "messages[0].mood", {}),
    ("unrecognized_role", "sft", sft({"role": "bot", "content": "x"}, ASSISTANT), "messages[0].role", {}),
    ("missing_content", "sft", sft({"role": "user"}, ASSISTANT), "messages[0].content", {}),
    ("missing_content", "sft", sft(USER, {"role": "assistant", "content": ""}), "messages[1].content", {}),
    ("invalid_content", "sft", sft({"role": "user", "content": 5}, ASSISTANT), "messages[0].content", {}),
    ("invalid_content_part", "sft", sft({"role": "user", "content": [{"type": "input_audio"}]}, ASSISTANT), "messages[0].content[0].type", {}),
    ("invalid_content_part", "sft", sft(USER, {"role": "assistant", "content": [IMAGE]}), "messages[1].content[0]", {}),
    ("invalid_field_type", "sft", sft({"role": "user", "content": "x", "name": 5}, ASSISTANT), "messages[0].name", {}),
    ("example_missing_assistant_message", "sft", sft(SYSTEM, USER), "messages", {"method": "sft"}),
    ("invalid_weight", "sft", sft(USER, {"role": "assistant", "content": "a", "weight": 2}), "messages[1].weight", {}),
    ("invalid_weight", "sft", sft({"role": "user", "content": "x", "weight": 1}, ASSISTANT), "messages[0].weight", {}),
    (
        "invalid_tool_call", "sft",
        sft(USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}),
        "messages[1].tool_calls[0].function.arguments", {},
    ),
    ("invalid_tool_call", "sft", sft(USER, {"role": "tool", "content": "42"}, ASSISTANT), "messages[1].tool_call_id", {}),
    ("invalid_tools", "sft", sft(USER, ASSISTANT, tools="get_weather"), "tools", {}),
    ("too_many_images", "sft", sft({"role": "user", "content": [IMAGE] * 11}, ASSISTANT), "messages", {}),
    ("missing_input", "dpo", dpo(input=None), "input", {}),
    ("missing_preferred_output", "dpo", dpo(preferred_output=None), "preferred_output", {}),
    ("missing_non_preferred_output", "dpo", dpo(non_preferred_output=None), "non_preferred_output", {}),
    ("invalid_preference_output", "dpo", dpo(preferred_output=[ASSISTANT, ASSISTANT]), "preferred_output", {}),
    ("invalid_preference_output", "dpo", dpo(preferred_output=[{"role": "user", "content": "x"}]), "preferred_output[0].role", {}),
    ("rft_system_role", "rft", rft(SYSTEM, USER), "messages[0].role", {}),
    ("rft_last_message_not_user", "rft", rft({"role": "developer", "content": "d"}, USER, ASSISTANT), "messages[2]", {"method": "rft"}),
    ("grader_field_missing", "rft", {"messages": [USER], "other": 1}, "answer", {"grader": {"type": "string_check", "input": "{{sample.output_text}}", "reference": "{{ item.answer }}", "operation": "eq"}}),
    ("missing_prompt", "legacy", {"completion": " x"}, "prompt", {}),
    ("missing_completion", "legacy", {"prompt": "x", "completion": ""}, "completion", {}),
    ("format_mismatch", "sft", dpo(), None, {}),
    # warnings
    # line 4 again, with its keys in another order: the same example
    ("duplicate_example", "sft", {"messages": [dict(reversed(m.items())) for m in VALID["sft"][3]["messages"]]}, None, {}),
    ("identical_preference_outputs", "dpo", dpo(non_preferred_output=[{"role": "assistant", "content": "Good."}]), "non_preferred_output[0].content", {}),
    ("unrecognized_example_key", "sft", sft(SYSTEM, USER, ASSISTANT, id=7), "id", {}),
    ("no_trained_messages", "sft", sft(SYSTEM, USER, {"role": "assistant", "content": "a", "weight": 0}), "messages", {}),
    ("missing_system_message", "sft", sft(USER, ASSISTANT), "messages", {}),
    ("example_too_long", "sft", sft(SYSTEM, USER, {"role": "assistant", "content": "hello " * 5000}), None, {"model": "gpt-3.5-turbo-0613"}),
]


def write_lines(path: Path, lines: list) -> Path:
    with path.open("wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n")
    return path


def issues_of(report) -> list:
    return report.errors + report.warnings


@pytest.mark.parametrize(("code", "fmt", "line", "field", "kwargs"), LINE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LINE_CASES)])
def test_minimal_failing_line(tmp_path, code, fmt, line, field, kwargs):
    path = write_lines(tmp_path / "train.jsonl", [*VALID[fmt], line])
    report = validate_file(path, **kwargs)
    hits = [i for i in issues_of(report) if i.code == code]
    assert hits, f"{code} not reported; got {[(i.line, i.code) for i in issues_of(report)]}"
    assert hits[0].line == 11
    assert hits[0].field == field
    assert hits[0].message
    assert report.counts[code] >= 1
    if code in ERRORS:
        assert not report.ok
    # nothing else is an error on the ten valid lines
    assert all(i.line == 11 or i.line is None for i in report.errors)


@pytest.mark.parametrize(("code", "fmt", "line", "field", "kwargs"), [c for c in LINE_CASES if c[0] in ERRORS and c[0] != "grader_field_missing"])
def test_pure_checker_agrees(code, fmt, line, field, kwargs):
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    fmt = kwargs.get("method", fmt)
    found = check_line(raw, fmt)
    assert (code, field) in [(c, f) for c, f, _ in found]


def test_pure_checker_reads_grader_paths():
    from tunedeck.core.datasets.grader import item_paths

    paths = item_paths({"reference": "{{item.meta.level}} and {{ item.tags[0] }}", "input": "{{sample.output_text}}"})
    assert [p.text for p in paths] == ["meta.level", "tags[0]"]
    row = json.dumps({"messages": [USER], "meta": {"level": 2}, "tags": []}).encode()
    found = check_line(row, "rft", paths)
    assert [(c, f) for c, f, _ in found] == [("grader_field_missing", "tags[0]")]


def test_valid_lines_have_no_findings():
    for fmt, lines in VALID.items():
        for line in lines:
            assert check_line(json.dumps(line).encode(), fmt) == [], fmt
    tool_example = (
        '{"messages":[{"role":"user","content":"Weather in Oslo?"},{"role":"assistant","tool_calls":[{"id":"c1",'
        '"type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Oslo\\"}"}}]},'
        '{"role":"tool","tool_call_id":"c1","content":"12C"},{"role":"assistant","content":"12C","weight":1}],'
        '"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"parallel_tool_calls":false}'
    )
    assert check_line(tool_example.encode(), "sft") == []
    vision = '{"messages":[{"role":"user","content":[{"type":"text","text":"Which fruit?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},{"role":"assistant","content":"A pear"}]}'
    assert check_line(vision.encode(), "sft") == []


def test_line_too_long(tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module, "MAX_LINE_BYTES", 200)
    big = sft(SYSTEM, USER, {"role": "assistant", "content": "x" * 500})
    path = write_lines(tmp_path / "train.jsonl", [*VALID["sft"], big, VALID["sft"][0]])
    report = validate_file(path)
    hits = [i for i in report.errors if i.code == "line_too_long"]
    assert [i.line for i in hits] == [11]
    assert report.examples == 12  # the line after it is still read, as line 12
    assert report.counts.get("duplicate_example") == 1


def test_byte_order_mark(tmp_path):
    path = tmp_path / "train.jsonl"
    write_lines(path, VALID["sft"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    report = validate_file(path)
    assert report.ok
    assert [(i.line, i.code) for i in report.warnings] == [(1, "byte_order_mark")]


def test_file_level_format_mismatch_and_too_few(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", VALID["dpo"][:3])
    report = validate_file(path, method="sft")
    codes = {(i.line, i.code) for i in report.errors}
    assert (None, "format_mismatch") in codes
    assert (None, "too_few_examples") in codes
    assert report.format == "dpo" and report.checked_as == "sft"
    # every line is also reported, as another format than the method's
    assert report.counts["format_mismatch"] == 1 + 3


def test_legacy_data_with_a_chat_model_is_a_mismatch(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", VALID["legacy"])
    assert validate_file(path).ok  # auto: legacy data, babbage-002 assumed
    report = validate_file(path, model="gpt-4o-mini")
    assert [i.code for i in report.errors] == ["format_mismatch"]
    assert "convert" in report.errors[0].message


def test_too_many_examples(tmp_path, monkeypatch):
    monkeypatch.setitem(reader_module.MAX_RFT_EXAMPLES, "training", 5)
    path = write_lines(tmp_path / "train.jsonl", VALID["rft"])
    report = validate_file(path)
    assert [(i.line, i.code) for i in report.errors] == [(None, "too_many_examples")]


def test_nothing_to_learn(tmp_path):
    """Every assistant message at weight 0: each example is a warning, the file an error."""
    untrained = [sft(SYSTEM, USER, {"role": "assistant", "content": f"a{i}", "weight": 0}) for i in range(10)]
    report = validate_file(write_lines(tmp_path / "train.jsonl", untrained))
    assert [(i.line, i.code) for i in report.errors] == [(None, "nothing_to_learn")]
    assert report.counts["no_trained_messages"] == 10
    held = write_lines(tmp_path / "valid.jsonl", untrained[:2])
    report = validate_file(write_lines(tmp_path / "train2.jsonl", VALID["sft"]), validation_file=held)
    assert report.ok and report.validation is not None and report.validation.ok  # a validation file trains nothing


def test_train_validation_overlap(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", VALID["sft"])
    held = write_lines(tmp_path / "valid.jsonl", [sft(SYSTEM, {"role": "user", "content": "new"}, ASSISTANT), VALID["sft"][4]])
    report = validate_file(train, validation_file=held)
    hits = [i for i in report.warnings if i.code == "train_validation_overlap"]
    assert [(i.line, "line 2 of valid.jsonl" in i.message) for i in hits] == [(5, True)]
    assert report.validation is not None and report.validation.ok and report.validation.examples == 2
    assert report.to_json()["validation"]["purpose"] == "validation"


def test_model_warnings(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", VALID["sft"])
    assert [i.code for i in validate_file(path, model="o4-mini").warnings] == ["unsupported_model"]
    report = validate_file(path, model="my-own-model")
    assert [i.code for i in report.warnings] == ["unknown_model"]
    assert report.estimate["cost_usd"] is None and report.encoding == "o200k_base"


def test_every_code_is_covered():
    covered = {c[0] for c in LINE_CASES} | {
        "line_too_long", "byte_order_mark", "too_few_examples", "too_many_examples", "train_validation_overlap",
        "unsupported_model", "unknown_model", "nothing_to_learn",
    }
    assert set(ERRORS) | set(WARNINGS) == covered
