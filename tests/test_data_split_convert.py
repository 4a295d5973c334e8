"""`data split` (deterministic, exact ratio, duplicates on one side, stratified by label)
and `data convert` (legacy prompt/completion to chat)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import generate_dataset

from tunedeck.cli.main import main
from tunedeck.core.datasets import check_line, validate_file
from tunedeck.core.datasets.convert import ConvertError, convert_file
from tunedeck.core.datasets.split import SplitError, split_file


def lines(path) -> list[bytes]:
    return path.read_bytes().splitlines()


def last_answer(raw: bytes) -> str:
    return [m for m in json.loads(raw)["messages"] if m["role"] == "assistant"][-1]["content"]


def test_split_is_deterministic_and_keeps_the_ratio(tmp_path):
    path = generate_dataset("sft", 500, tmp_path / "train.jsonl")
    a = split_file(path, 0.1, seed=3, train_out=tmp_path / "a_t.jsonl", validation_out=tmp_path / "a_v.jsonl")
    b = split_file(path, 0.1, seed=3, train_out=tmp_path / "b_t.jsonl", validation_out=tmp_path / "b_v.jsonl")
    c = split_file(path, 0.1, seed=4, train_out=tmp_path / "c_t.jsonl", validation_out=tmp_path / "c_v.jsonl")
    assert a.validation_examples == 50 and a.train_examples == 450
    assert lines(a.validation_path) == lines(b.validation_path)
    assert lines(a.train_path) == lines(b.train_path)
    assert lines(a.validation_path) != lines(c.validation_path)
    assert sorted(lines(a.train_path) + lines(a.validation_path)) == sorted(lines(path))


def test_split_is_stratified_by_an_obvious_label(tmp_path):
    path = generate_dataset("sft", 600, tmp_path / "train.jsonl", "--seed", "11")
    result = split_file(path, 0.2, seed=1)
    assert result.stratified_by == "the last assistant answer"
    totals = Counter(last_answer(r) for r in lines(path))
    held = Counter(last_answer(r) for r in lines(result.validation_path))
    assert set(result.labels) == set(totals)
    for label, n in totals.items():
        assert abs(held[label] - n * 0.2) <= 1, label
        assert result.labels[label] == (n - held[label], held[label])


def test_split_keeps_duplicates_on_one_side(tmp_path):
    base = lines(generate_dataset("sft", 100, tmp_path / "base.jsonl"))
    reordered = json.dumps({"messages": [dict(reversed(m.items())) for m in json.loads(base[0])["messages"]]}).encode()
    rows = base + [base[0]] * 5 + [reordered] + [base[1]] * 3
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    for seed in range(8):
        result = split_file(path, 0.3, seed=seed, overwrite=True)
        train, held = set(lines(result.train_path)), set(lines(result.validation_path))
        assert not train & held
        assert (base[0] in held) == (reordered in held)
        assert result.duplicate_groups == 2
        assert result.train_examples + result.validation_examples == len(rows)


def test_split_refuses_bad_lines_and_existing_outputs(tmp_path, capsys):
    path = generate_dataset("sft", 50, tmp_path / "train.jsonl", "--bad-every", "20")
    with pytest.raises(SplitError, match="line 20"):
        split_file(path)
    assert main(["data", "split", str(path)]) == 1
    good = generate_dataset("sft", 50, tmp_path / "good.jsonl")
    assert main(["data", "split", str(good), "--validation", "0.2", "--seed", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["validation_examples"] == 10 and data["seed"] == 5
    assert main(["data", "split", str(good)]) == 2  # the outputs exist now
    assert "--force" in capsys.readouterr().err
    assert main(["data", "split", str(good), "--validation", "1.5"]) == 2


def test_convert_legacy_to_chat(tmp_path, capsys):
    rows = [{"prompt": f"Q{i}: capital?\n\n###\n\n", "completion": f" City{i} END"} for i in range(12)]
    path = tmp_path / "legacy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = convert_file(path, system="Answer with a city.", prompt_suffix="\n\n###\n\n", completion_suffix=" END")
    assert result.ok and result.examples == 12
    first = json.loads(lines(result.output)[0])
    assert first == {"messages": [
        {"role": "system", "content": "Answer with a city."},
        {"role": "user", "content": "Q0: capital?"},
        {"role": "assistant", "content": "City0"},
    ]}
    assert validate_file(result.output).ok
    assert all(check_line(raw, "sft") == [] for raw in lines(result.output))
    with pytest.raises(ConvertError):
        convert_file(path)  # exists
    assert main(["data", "convert", str(path), "-o", str(tmp_path / "out.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 12


def test_convert_reports_every_bad_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "legacy.jsonl"
    path.write_text('{"prompt": "a", "completion": " b"}\n\n{"prompt": 3, "completion": " c"}\n{"messages": []}\n', encoding="utf-8")
    code = main(["data", "convert", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    for expected in ("line 2", "blank_line", "line 3", "missing_prompt", "line 4", "format_mismatch", "nothing was written"):
        assert expected in out
    assert not (tmp_path / "legacy_chat.jsonl").exists()
