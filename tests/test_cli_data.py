"""What `tunedeck data` prints for a person: the split table's headers, a convert of a file
that needs none, and no cost estimate when no example is valid for the method asked."""

from __future__ import annotations

import json

from conftest import generate_dataset

from tunedeck.cli.main import main
from tunedeck.core.datasets import validate_file
from tunedeck.core.datasets.convert import convert_file


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- split -------------------------------------------------------------------------------------


def test_split_prints_tables_with_headers(tmp_path, capsys):
    path = generate_dataset("sft", 200, tmp_path / "train.jsonl", "--learnable")
    code, out, err = run_cli(capsys, "data", "split", str(path), "--validation", "0.1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PART", "FILE", "EXAMPLES"]
    assert lines[1].split() == ["training", str(tmp_path / "train_train.jsonl"), "180"]
    assert lines[2].split() == ["validation", str(tmp_path / "train_validation.jsonl"), "20"]
    # Every column starts where its header does.
    assert lines[1].index(str(tmp_path)) == lines[0].index("FILE")
    assert lines[1].rstrip().endswith("180") and len(lines[1].rstrip()) == len(lines[0].rstrip())

    header = next(i for i, line in enumerate(lines) if line.split() == ["LABEL", "TRAINING", "VALIDATION"])
    assert lines[header - 1] == "stratified by the last assistant answer:"
    rows = [line.split() for line in lines[header + 1 :] if line.startswith("  ")]
    assert rows and all(len(row) == 3 for row in rows)
    assert sum(int(row[1]) for row in rows) == 180 and sum(int(row[2]) for row in rows) == 20
    assert all(len(line.rstrip()) == len(lines[header].rstrip()) for line in lines[header + 1 : header + 1 + len(rows)])


# -- convert -----------------------------------------------------------------------------------


def test_convert_of_a_chat_file_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    path = generate_dataset("sft", 30, tmp_path / "chat.jsonl")
    code, out, err = run_cli(capsys, "data", "convert", str(path))
    assert (code, err) == (0, "")
    assert out == f"{path} is in the SFT chat format already: nothing to convert, nothing written\n"
    assert not (tmp_path / "chat_chat.jsonl").exists()

    dpo = generate_dataset("dpo", 10, tmp_path / "prefs.jsonl")
    code, out, _ = run_cli(capsys, "data", "convert", str(dpo), "--json")
    answer = json.loads(out)
    assert code == 0 and answer["already"] == "dpo" and answer["ok"] is True
    assert answer["output"] is None and answer["errors"] == [] and answer["error_count"] == 0


def test_convert_of_a_file_mixing_legacy_and_chat_lines_still_lists_them(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    chat = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    path.write_text(json.dumps({"prompt": "a", "completion": " b"}) + "\n" + json.dumps(chat) + "\n", encoding="utf-8")
    result = convert_file(path)
    assert result.already is None and result.error_count == 1 and result.errors[0].line == 2
    code, out, _ = run_cli(capsys, "data", "convert", str(path))
    assert code == 1 and "format_mismatch" in out and "nothing was written" in out


# -- no estimate without a valid example -------------------------------------------------------


def test_validate_as_sft_of_a_dpo_file_has_nothing_to_estimate_and_names_dpo(tmp_path, capsys):
    path = generate_dataset("dpo", 20, tmp_path / "prefs.jsonl")
    reason = (
        "no example is valid for SFT chat, so there is nothing to estimate "
        "(the file looks like DPO preference data: try --method dpo)"
    )
    code, out, _ = run_cli(capsys, "data", "validate", str(path), "--method", "sft")
    assert code == 1
    assert f"estimate none: {reason}" in out.splitlines()
    assert "epochs ×" not in out

    code, out, _ = run_cli(capsys, "data", "validate", str(path), "--method", "sft", "--json")
    estimate = json.loads(out)["estimate"]
    assert estimate["none_because"] == reason
    assert (estimate["epochs"], estimate["trained_tokens"], estimate["cost_usd"]) == (None, 0, None)

    code, out, _ = run_cli(capsys, "data", "stats", str(path), "--method", "sft")
    assert code == 0 and f"  estimate          none: {reason}" in out.splitlines()

    # Checked as what it is, the same file has its estimate.
    assert "none_because" not in validate_file(path, method="dpo").estimate


def test_an_empty_file_has_nothing_to_estimate(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = validate_file(path)
    assert report.estimate["none_because"] == "the file has no examples"
    code, out, _ = run_cli(capsys, "data", "validate", str(path))
    assert code == 1 and "estimate none: the file has no examples" in out


# -- the estimate follows the profile -------------------------------------------------------------


def test_the_estimate_follows_the_profile(tmp_path, capsys, monkeypatch):
    path = generate_dataset("sft", 120, tmp_path / "train.jsonl", "--learnable")
    # The local profile (the default with no key): no money, the work instead.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, out, _ = run_cli(capsys, "data", "stats", str(path))
    assert code == 0 and "no charge (local: trains on this machine), about " in out and "$" not in out
    code, out, _ = run_cli(capsys, "data", "stats", str(path), "--json")
    estimate = json.loads(out)["estimate"]
    assert estimate["local"] and estimate["cost_usd"] is None and estimate["steps"] > 0
    code, out, _ = run_cli(capsys, "data", "validate", str(path))
    assert "trained tokens; no charge (local" in out
    # A provider's profile: its price, with the table's date.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code, out, _ = run_cli(capsys, "--profile", "openai", "data", "stats", str(path))
    assert code == 0 and "$" in out and "no charge" not in out
