"""Dataset rows to evaluation examples: prompts, references and items from real SFT, DPO
and RFT files, every bad row named by line and field, `limit` and the file's hash."""

from __future__ import annotations

import hashlib
import json

import pytest

from tunedeck.core.datasets.synth import write_dataset
from tunedeck.core.evaluate.examples import ExamplesError, file_sha256, read_examples, with_system_prompt


def write_rows(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sft_rows_ask_the_turns_before_the_answer_and_compare_with_it(tmp_path):
    path = tmp_path / "sft.jsonl"
    write_dataset("sft", 20, path, seed=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    found = read_examples(path)
    assert found.method == "sft" and found.problems == [] and len(found.examples) == 20
    for position, (example, row) in enumerate(zip(found.examples, rows)):
        assert example.index == position and example.line == position + 1
        assert example.reference == row["messages"][-1]["content"]
        assert example.prompt == [{"role": m["role"], "content": m["content"]} for m in row["messages"][:-1]]
        assert example.item["messages"] == row["messages"]
        assert example.item["reference_answer"] == example.reference
    assert found.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert found.path == str(path)


def test_training_keys_never_reach_the_prompt(tmp_path):
    row = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "Hello", "weight": 0},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye", "weight": 1},
    ]}  # fmt: skip
    example = read_examples(write_rows(tmp_path / "w.jsonl", [row])).examples[0]
    assert example.prompt[1] == {"role": "user", "content": "Hi", "name": "ann"}
    assert example.prompt[2] == {"role": "assistant", "content": "Hello"}
    assert example.reference == "Bye"


def test_dpo_rows_ask_the_input_and_compare_with_the_preferred_answer(tmp_path):
    path = tmp_path / "dpo.jsonl"
    write_dataset("dpo", 5, path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    found = read_examples(path)
    assert found.method == "dpo"
    for example, row in zip(found.examples, rows):
        assert example.prompt == row["input"]["messages"]
        assert example.reference == row["preferred_output"][-1]["content"]
        assert example.item["non_preferred_output"] == row["non_preferred_output"]


def test_rft_rows_keep_their_reference_answer_and_fields(tmp_path):
    path = tmp_path / "rft.jsonl"
    write_dataset("rft", 6, path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    found = read_examples(path)
    assert found.method == "rft"
    for example, row in zip(found.examples, rows):
        assert example.prompt == row["messages"]
        assert example.reference == row["reference_answer"]
        assert example.item == row


def test_rft_reference_that_is_not_text_is_kept_as_json_and_none_when_absent(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "q"}], "reference_answer": {"a": 1, "b": [True]}},
        {"messages": [{"role": "user", "content": "q"}], "reference_answer": 42},
        {"messages": [{"role": "user", "content": "q"}], "label": "x"},
    ]
    found = read_examples(write_rows(tmp_path / "r.jsonl", rows))
    assert json.loads(found.examples[0].reference) == {"a": 1, "b": [True]}
    assert found.examples[1].reference == "42"
    assert found.examples[2].reference is None
    assert "reference_answer" not in found.examples[2].item


def test_content_parts_join_into_text(tmp_path):
    row = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "."}]},
    ]}  # fmt: skip
    example = read_examples(write_rows(tmp_path / "p.jsonl", [row])).examples[0]
    assert example.prompt == [{"role": "user", "content": "What is 2+2?"}]
    assert example.reference == "4."


def test_every_bad_row_is_a_problem_with_its_line_and_field(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = [
        good,
        "{not json",
        "[1, 2]",
        "",
        {"nothing": "here"},
        {"messages": [{"role": "assistant", "content": "only an answer"}]},
        {"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "assistant", "content": "a"},
        ]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 5}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]},
        {"input": {"messages": "no"}, "preferred_output": []},
        {"prompt": "p", "completion": "c"},
        "   ",
        good,
    ]  # fmt: skip
    found = read_examples(write_rows(tmp_path / "bad.jsonl", rows))
    assert [e.line for e in found.examples] == [1, 14]
    assert [e.index for e in found.examples] == [0, 1]
    places = [(p.line, p.field) for p in found.problems]
    assert places == [
        (2, None),
        (3, None),
        (5, "messages"),
        (6, "messages"),
        (7, "messages[2].content"),
        (8, "messages[0].content[0]"),
        (9, "messages[1].content"),
        (10, "messages"),
        (11, "input.messages"),
        (12, "prompt"),
    ]
    assert "not valid JSON" in found.problems[0].message
    assert found.problems[1].message == "each line must be a JSON object, not a list"
    assert found.problems[4].message == "the content is null, not text"
    assert found.problems[4].describe("bad.jsonl").startswith("bad.jsonl:7 (messages[2].content): ")


def test_tool_turns_are_problems_not_altered_questions(tmp_path):
    row = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Sunny."},
    ]}  # fmt: skip
    with pytest.raises(ExamplesError) as raised:
        read_examples(write_rows(tmp_path / "t.jsonl", [row]))
    assert "t.jsonl:1 (messages[1].role)" in str(raised.value)


def test_limit_counts_evaluable_rows_and_stops_reading(tmp_path):
    path = tmp_path / "sft.jsonl"
    planted = write_dataset("sft", 40, path, bad_every=3)
    found = read_examples(path, limit=5)
    assert len(found.examples) == 5
    assert [e.index for e in found.examples] == [0, 1, 2, 3, 4]
    last_line = found.examples[-1].line
    assert [p.line for p in found.problems] == [line for line in planted if line < last_line]
    # the hash is the whole file's, whatever the limit
    assert found.sha256 == file_sha256(path)
    everything = read_examples(path)
    assert len(everything.examples) == 40 - len(planted)
    assert [p.line for p in everything.problems] == planted


def test_mixed_files_say_so(tmp_path):
    sft = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rft = {"messages": [{"role": "user", "content": "q"}], "reference_answer": "a"}
    assert read_examples(write_rows(tmp_path / "m.jsonl", [sft, rft])).method == "mixed"


def test_a_byte_order_mark_on_the_first_line_is_fine(tmp_path):
    path = tmp_path / "bom.jsonl"
    row = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path.write_bytes(b"\xef\xbb\xbf" + row.encode() + b"\n\xef\xbb\xbf" + row.encode() + b"\n")
    found = read_examples(path)
    assert len(found.examples) == 1
    assert [p.line for p in found.problems] == [2]


def test_missing_empty_and_hopeless_files_raise(tmp_path):
    with pytest.raises(ExamplesError, match="cannot read"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(ExamplesError, match="cannot read"):
        read_examples(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ExamplesError, match="no rows to evaluate"):
        read_examples(empty)
    bad = write_rows(tmp_path / "bad.jsonl", ["{x", "[]", "{x"])
    with pytest.raises(ExamplesError, match=r"bad.jsonl:1: not valid JSON.* and 2 more"):
        read_examples(bad)


def test_with_system_prompt_replaces_leading_instructions_only():
    prompt = [
        {"role": "system", "content": "old"},
        {"role": "developer", "content": "older"},
        {"role": "user", "content": "q"},
        {"role": "system", "content": "mid-conversation note"},
    ]
    assert with_system_prompt(prompt, None) is prompt
    assert with_system_prompt(prompt, "new") == [
        {"role": "system", "content": "new"},
        {"role": "user", "content": "q"},
        {"role": "system", "content": "mid-conversation note"},
    ]
    assert with_system_prompt([{"role": "user", "content": "q"}], "new")[0] == {"role": "system", "content": "new"}
    assert prompt[0]["content"] == "old"  # the row's prompt is not changed in place


def test_overlong_lines_and_endless_problems_stay_bounded(tmp_path, monkeypatch):
    from tunedeck.core.evaluate import examples as module

    monkeypatch.setattr(module, "MAX_LINE_BYTES", 200)
    monkeypatch.setattr(module, "MAX_PROBLEMS", 3)
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    long = {"messages": [{"role": "user", "content": "q" * 500}, {"role": "assistant", "content": "a"}]}
    rows = [long, good, "{x", "{x", "{x", "{x", "{x", good]
    found = read_examples(write_rows(tmp_path / "long.jsonl", rows))
    assert [e.line for e in found.examples] == [2, 8]
    assert [(p.line, p.message) for p in found.problems] == [
        (1, "the line is longer than 200 bytes"),
        (3, found.problems[1].message),
        (4, found.problems[2].message),
        (7, "and 3 more rows that cannot be evaluated (not listed)"),
    ]


def test_rows_are_read_again_from_the_file_by_position(tmp_path):
    chat = {"messages": [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"}]}
    rows = [chat, "", "not json", *({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in (1, 2))]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode())
    examples = read_examples(path).examples
    assert len(examples) == 3
    assert [(e.index, e.line, e.reference) for e in examples] == [(0, 1, "a0"), (1, 4, "a1"), (2, 5, "a2")]
    assert examples[-1].prompt == [{"role": "user", "content": "q2"}]
    assert [e.reference for e in examples[1:]] == ["a1", "a2"]
    with pytest.raises(IndexError):
        examples[3]

    path.write_text("changed\n" * 5, encoding="utf-8")  # the file changed after it was read
    with pytest.raises(ExamplesError, match=r"rows.jsonl:4: changed since it was read"):
        examples[1]
