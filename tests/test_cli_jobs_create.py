"""`tunedeck jobs create`: the launch form's headless twin, against the real local backend
through a compatible profile (exit 0 launched, 1 blocked or refused, 2 usage)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from conftest import generate_dataset
from test_cli import run_cli, use_compatible_profile

from tunedeck.backend import BUILTIN_BASE_MODEL


@pytest.fixture
def bench(isolated_home, manual_backend, monkeypatch):
    use_compatible_profile(isolated_home, manual_backend.base_url)
    monkeypatch.setenv("BENCH_KEY", manual_backend.api_key)
    return manual_backend


def server_state(backend) -> tuple[list, list]:
    async def read():
        client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
        try:
            jobs = [job async for job in client.fine_tuning.jobs.list()]
            return jobs, (await client.files.list()).data
        finally:
            await client.close()

    return asyncio.run(read())


def test_dry_run_prints_the_preflight_as_json_and_sends_nothing(capsys, bench, sft_file):
    code, out, _ = run_cli(
        capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(sft_file),
        "--epochs", "2", "--suffix", "nightly", "--seed", "7", "--metadata", "team=ml", "--dry-run", "--json",
    )  # fmt: skip
    assert code == 0
    preflight = json.loads(out)["preflight"]
    assert preflight["ok"] and preflight["method"] == "supervised"
    assert preflight["hyperparameters"]["n_epochs"] == 2
    assert preflight["trained_tokens"] == 2 * preflight["training_tokens"]
    body = preflight["request_body"]
    assert body["suffix"] == "nightly" and body["seed"] == 7 and body["metadata"] == {"team": "ml"}
    assert body["training_file"].startswith("<uploaded at launch")
    assert server_state(bench) == ([], [])


def test_the_method_follows_the_file_and_a_mismatch_blocks(capsys, bench, tmp_path):
    prefs = generate_dataset("dpo", 30, tmp_path / "prefs.jsonl")
    code, out, _ = run_cli(
        capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(prefs), "--dry-run", "--json"
    )
    assert code == 0 and json.loads(out)["preflight"]["method"] == "dpo"
    code, out, _ = run_cli(
        capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(prefs), "--method", "sft", "--dry-run"
    )
    assert code == 1
    assert "BLOCKED" in out and "prefs.jsonl" in out


def test_create_launches_once_and_reuses_the_upload(capsys, bench, sft_file):
    argv = ("jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(sft_file), "--json")
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    first = json.loads(out)["job"]
    assert first["status"] == "validating_files" and first["metadata"]["tunedeck_launch"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "reused file-" in err  # the same content: not uploaded again
    second = json.loads(out)["job"]
    jobs, files = server_state(bench)
    assert {job.id for job in jobs} == {first["id"], second["id"]} and len(files) == 1
    assert second["training_file"] == first["training_file"]


def test_usage_errors_exit_2_and_refused_values_exit_1(capsys, bench, sft_file, tmp_path):
    base = ("jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(sft_file))
    code, _, err = run_cli(capsys, *base, "--epochs", "three")
    assert code == 2 and "--epochs" in err and "'three'" in err
    code, _, err = run_cli(capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(tmp_path / "no.jsonl"))
    assert code == 2 and "no.jsonl: no such file" in err
    code, _, err = run_cli(capsys, *base, "--option", "lora_rank")
    assert code == 2 and "KEY=VALUE" in err
    bad_grader = tmp_path / "grader.json"
    bad_grader.write_text("{not json")
    code, _, err = run_cli(capsys, *base, "--method", "rft", "--grader", str(bad_grader))
    assert code == 2 and "grader.json is not JSON" in err

    code, _, err = run_cli(capsys, *base, "--epochs", "99")
    assert code == 1 and "1 to 50" in err
    code, _, err = run_cli(capsys, *base, "--option", "lora_rank=0")
    assert code == 1 and "LoRA rank: expected an integer from 1 to 1024, got 0" in err
    assert server_state(bench) == ([], [])


def test_tunedeck_options_go_to_a_tunedeck_backend_behind_a_compatible_profile(capsys, bench, sft_file):
    """The profile says "compatible", but its model list shows a tunedeck backend: it takes
    tunedeck's own options (an OpenAI endpoint would refuse them, and the pre-flight says so)."""
    code, out, err = run_cli(
        capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(sft_file),
        "--option", "lora_rank=8", "--dry-run", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["preflight"]["request_body"]["tunedeck"] == {"lora_rank": 8}


def test_rft_with_a_grader_file_launches(capsys, bench, tmp_path):
    rft = generate_dataset("rft", 30, tmp_path / "rft.jsonl")
    fields = [k for k in json.loads(rft.read_text().splitlines()[0]) if k != "messages"]
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps({"grader": {
        "type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
        "reference": "{{item.%s}}" % fields[0], "operation": "eq",
    }}))  # fmt: skip
    code, out, err = run_cli(
        capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(rft), "--grader", str(grader),
        "--reasoning-effort", "low", "--json",
    )  # fmt: skip
    assert code == 0, err
    job = json.loads(out)["job"]
    method = job["method"]["reinforcement"]
    assert method["grader"]["name"] == "exact" and method["hyperparameters"]["reasoning_effort"] == "low"


def test_training_not_available_says_what_to_do(capsys, bench, sft_file):
    bench.faults.training_not_available = True
    code, _, err = run_cli(capsys, "jobs", "create", "--model", BUILTIN_BASE_MODEL, "--train", str(sft_file))
    assert code == 1
    assert "no longer create fine-tuning jobs" in err and "--profile" in err
