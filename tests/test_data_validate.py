"""The streaming driver: the same answer in one process, in worker processes and with
spilled digests; progress, cancellation, I/O errors; the JSON contract and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from conftest import generate_dataset

from tunedeck.cli.main import main
from tunedeck.core.datasets import DatasetIOError, ValidationCancelled, validate_file
from tunedeck.core.datasets import validate as engine
from tunedeck.core.datasets.grader import GraderError

ISSUE_KEYS = {"line", "code", "message"}


@pytest.fixture
def bad_file(tmp_path):
    """400 SFT examples, a malformed one every 37 lines, and duplicates of line 5 at the end."""
    path = generate_dataset("sft", 400, tmp_path / "train.jsonl", "--bad-every", "37")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + lines[4] + lines[4])
    return path


def summary(report) -> dict:
    data = report.to_json()
    data.pop("elapsed_s")
    return data


def test_parallel_and_spilled_scans_match_the_inline_scan(bad_file, monkeypatch):
    inline = validate_file(bad_file, workers=1)
    assert inline.error_count == 10 and inline.counts["duplicate_example"] == 2
    assert [i.line for i in inline.errors] == [37 * k for k in range(1, 11)]
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(engine, "CHUNK_BYTES", 20_000)  # about 15 ranges
    parallel = validate_file(bad_file, workers=2)
    assert summary(parallel) == summary(inline)
    monkeypatch.setattr(engine, "PARTITION_BYTES", 50_000)  # digests spilled to partition files
    spilled = validate_file(bad_file, workers=2)
    assert summary(spilled) == summary(inline)
    dupes = [(i.line, i.message) for i in spilled.warnings if i.code == "duplicate_example"]
    assert dupes == [(401, "the same example as line 5"), (402, "the same example as line 5")]


def test_issue_lists_are_capped_but_everything_is_counted(bad_file):
    report = validate_file(bad_file, max_issues=3)
    assert len(report.errors) == 3 and report.error_count == 10
    assert report.to_json()["errors_truncated"] is True


def test_progress_and_cancel(bad_file, monkeypatch):
    seen = []
    validate_file(bad_file, progress=lambda done, total: seen.append((done, total)))
    size = bad_file.stat().st_size
    assert seen and seen[-1] == (size, size)
    stop = threading.Event()
    stop.set()
    with pytest.raises(ValidationCancelled):
        validate_file(bad_file, cancel=stop)
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(engine, "CHUNK_BYTES", 20_000)
    with pytest.raises(ValidationCancelled):
        validate_file(bad_file, cancel=lambda: True, workers=2)


def test_io_and_usage_errors(tmp_path):
    with pytest.raises(DatasetIOError):
        validate_file(tmp_path / "missing.jsonl")
    with pytest.raises(DatasetIOError):
        validate_file(tmp_path)
    (tmp_path / "g.json").write_text("{not json")
    (tmp_path / "t.jsonl").write_text("")
    with pytest.raises(GraderError):
        validate_file(tmp_path / "t.jsonl", grader=tmp_path / "g.json")
    with pytest.raises(ValueError):
        validate_file(tmp_path / "t.jsonl", method="ppo")


def test_empty_file_is_a_data_error_not_a_crash(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = validate_file(path)
    assert [i.code for i in report.errors] == ["too_few_examples"]
    assert report.format is None and report.tokens["max_example"] is None


def test_json_contract(bad_file):
    data = validate_file(bad_file).to_json()
    for key in ("path", "format", "examples", "errors", "warnings", "tokens", "estimate"):
        assert key in data
    assert data["format"] == "sft" and data["examples"] == 402
    for issue in data["errors"] + data["warnings"]:
        assert ISSUE_KEYS <= set(issue) <= ISSUE_KEYS | {"field"}
    assert {"total", "billed", "max_example", "p50", "p95", "by_role"} <= set(data["tokens"])
    assert set(data["tokens"]["by_role"]) == {"system", "user", "assistant"}
    assert {"epochs", "trained_tokens", "cost_usd", "price"} <= set(data["estimate"])
    assert {"model", "usd_per_1m_training_tokens", "table_date", "source"} <= set(data["estimate"]["price"])
    json.dumps(data)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes_and_json(capsys, tmp_path, bad_file):
    good = generate_dataset("sft", 20, tmp_path / "good.jsonl")
    code, out, err = run_cli(capsys, "data", "validate", str(good), "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["errors"] == []
    code, out, _ = run_cli(capsys, "data", "validate", str(bad_file), "--json")
    assert code == 1
    errors = json.loads(out)["errors"]
    assert errors[0] == {"line": 37, "code": "not_an_object", "message": "each line must be a JSON object, not a list"}
    assert errors[1] == {"line": 74, "code": "missing_messages_list", "field": "messages", "message": errors[1]["message"]}
    assert errors[2]["line"] == 111 and errors[2]["code"] == "invalid_json" and "column" in errors[2]["message"]
    code, out, err = run_cli(capsys, "data", "validate", str(tmp_path / "nope.jsonl"))
    assert code == 2 and out == "" and "nope.jsonl" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "data", "validate", str(good), "--grader", str(tmp_path / "nope.json"))
    assert code == 2 and "grader" in err
    with pytest.raises(SystemExit) as info:
        main(["data", "validate", str(good), "--method", "ppo"])
    assert info.value.code == 2


def test_cli_human_output(capsys, bad_file):
    code, out, _ = run_cli(capsys, "data", "validate", str(bad_file), "--max-errors", "2")
    assert code == 1
    assert "errors (first 2 of 10):" in out
    assert "line 37" in out and "not_an_object" in out and "missing_messages_list" in out
    assert "duplicate_example" in out and "FAILED: 10 errors" in out


def test_cli_strips_terminal_escapes_from_dataset_text(capsys, tmp_path):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 10
    evil = {"messages": [{"role": "\x1b]52;c;cGF5bG9hZA==\x07bot", "content": "x"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + [evil]), encoding="utf-8")
    code, out, _ = run_cli(capsys, "data", "validate", str(path))
    assert code == 1 and "unrecognized_role" in out
    assert "\x1b" not in out and "\x07" not in out


def test_cli_stats(capsys, tmp_path):
    good = generate_dataset("sft", 20, tmp_path / "good.jsonl")
    code, out, _ = run_cli(capsys, "data", "stats", str(good), "--json")
    data = json.loads(out)
    assert code == 0 and data["examples"] == 20 and data["tokens"]["billed"] > 0
    code, out, _ = run_cli(capsys, "data", "stats", str(good))
    assert code == 0 and "tokens/example" in out and "estimate" in out


def test_core_datasets_imports_stay_light():
    code = "import sys, tunedeck.core.datasets\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert not loaded & {"textual", "rich", "numpy", "bpe_openai"}


def test_from_a_thread_workers_are_spawned_not_forked(bad_file, monkeypatch):
    """The app calls the validator from a worker thread, where forking is unsafe."""
    inline = validate_file(bad_file, workers=1)
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(engine, "CHUNK_BYTES", 40_000)
    methods, results = [], []
    original = engine._start_method
    monkeypatch.setattr(engine, "_start_method", lambda: methods.append(original()) or methods[-1])
    worker = threading.Thread(target=lambda: results.append(validate_file(bad_file, workers=2)))
    worker.start()
    worker.join(timeout=60)
    assert methods == ["spawn"]
    assert summary(results[0]) == summary(inline)
