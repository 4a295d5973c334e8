"""`tunedeck eval run | job | list | show` against the real local backend (a compatible
profile pointing at it), with a model fine-tuned on learnable tickets shared by the module.
Exit codes: 0 done, 1 the API failed, 2 bad input."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from eval_support import HELD_OUT, train, with_labels

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.cli.main import main
from tunedeck.core.bootstrap import open_service
from tunedeck.core.evaluate.records import EvalSettings, ModelSpec

MISSING_MODEL = "ft:tunedeck-ngram:local::nope"
LABEL_GRADER = {
    "type": "string_check",
    "name": "label",
    "operation": "eq",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    trained = train(tmp_path_factory.mktemp("cli-eval"))
    yield trained
    trained.backend.stop()


@pytest.fixture
def cli(trained, isolated_home, monkeypatch):
    """The CLI's default profile points at the trained backend; its faults are cleared after."""
    config_dir = isolated_home / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(
        f'default_profile = "bench"\n[profiles.bench]\nbackend = "compatible"\n'
        f'base_url = "{trained.backend.base_url}"\napi_key_env = "BENCH_KEY"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BENCH_KEY", trained.backend.api_key)
    yield trained
    trained.set_faults()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def base_and_tuned(trained) -> list[str]:
    return ["--model", f"base={BUILTIN_BASE_MODEL}", "--model", f"fine-tuned={trained.fine_tuned}"]


def row_of(out: str, label: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith(label + " ")).split()


# -- run ---------------------------------------------------------------------------------------------


def test_run_prints_each_models_score_with_its_interval_and_the_paired_test(capsys, cli):
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), *base_and_tuned(cli))
    assert code == 0, err
    assert "95% CI" in out.splitlines()[1] and "PASS" in out and "TOKENS" in out and "COST" in out
    base, tuned = row_of(out, "base"), row_of(out, "fine-tuned")
    assert float(tuned[1]) >= 0.7 > 0.3 >= float(base[1])
    low, high = (float(x) for x in re.findall(r"\[([\d.]+), ([\d.]+)\]", " ".join(tuned))[0])
    assert low <= float(tuned[1]) <= high and low > float(base[1])  # the CI is printed, and clear of the base
    sentence = next(line for line in out.splitlines() if "McNemar" in line)
    passed = int(re.match(r"fine-tuned passes (\d+) examples base fails", sentence).group(1))
    assert passed >= 0.7 * HELD_OUT and "p < 0.0001" in sentence and f"n = {HELD_OUT}" in sentence
    assert re.search(rf"tunedeck: eval-[0-9a-f]{{12}}  {2 * HELD_OUT}/{2 * HELD_OUT} \(100%\)", err)
    assert "errors" not in err


def test_run_json_is_one_object_and_out_has_a_line_per_example(capsys, cli, tmp_path):
    out_file = tmp_path / "answers.jsonl"
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", str(cli.held_out), *base_and_tuned(cli),
        "--limit", "10", "--concurrency", "2", "--json", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["id"].startswith("eval-") and report["status"] == "finished" and report["skipped"] == []
    assert (report["examples"], report["done"], report["total"]) == (10, 20, 20)
    base, tuned = report["models"]
    assert (base["label"], base["model"], tuned["label"], tuned["model"]) == (
        "base", BUILTIN_BASE_MODEL, "fine-tuned", cli.fine_tuned,
    )  # fmt: skip
    assert tuned["ci"][0] <= tuned["mean"] <= tuned["ci"][1] and len(tuned["pass_ci"]) == 2
    assert tuned["prompt_tokens"] > 0 and tuned["errors"] == 0
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("base", "fine-tuned", 10) and "McNemar" in pair["sentence"]

    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(10)) and lines[0]["line"] == 1
    first = lines[0]
    assert first["prompt"][0]["role"] == "system" and first["reference"]
    assert set(first["results"]) == {"base", "fine-tuned"}
    assert first["results"]["fine-tuned"]["model"] == cli.fine_tuned
    assert {"answer", "score", "passed", "error"} <= set(first["results"]["base"])


def test_rows_that_cannot_be_evaluated_are_told_with_their_place(capsys, cli, tmp_path):
    rows = cli.held_out.read_text().splitlines()[:6]
    rows[2] = '{"messages": "not a list"}'
    data = tmp_path / "some-bad.jsonl"
    data.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(data), "--model", cli.fine_tuned, "--json")
    assert code == 0, err
    assert re.search(rf"skipped {re.escape(str(data.resolve()))}:3 \(messages\): ", err)
    report = json.loads(out)
    assert report["examples"] == 5 and report["skipped"][0]["line"] == 3


def test_a_grader_error_shows_on_its_example_and_the_run_goes_on(capsys, cli, tmp_path):
    data = with_labels(cli.held_out, tmp_path / "labelled.jsonl", drop_label_at=1)
    grader = tmp_path / "label.json"
    grader.write_text(json.dumps(LABEL_GRADER))
    out_file = tmp_path / "answers.jsonl"
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", str(data), "--model", f"fine-tuned={cli.fine_tuned}",
        "--grader", str(grader), "--limit", "6", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    assert row_of(out, "fine-tuned")[8] == "1"  # the ERRORS column (after the two intervals)
    assert "1 results have an error" in err and "--retry-errors" in err
    assert "fine-tuned: the first of its errors: " in err and "item.label" in err
    lines = [json.loads(line)["results"]["fine-tuned"] for line in out_file.read_text().splitlines()]
    assert lines[1]["error_kind"] == "grader" and "item.label" in lines[1]["error"] and lines[1]["answer"]
    assert all(line["error"] is None and line["score"] is not None for i, line in enumerate(lines) if i != 1)


def test_a_missing_model_errs_on_its_rows_while_the_other_completes(capsys, cli):
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", str(cli.held_out), "--model", f"fine-tuned={cli.fine_tuned}",
        "--model", f"missing={MISSING_MODEL}", "--limit", "8", "--json",
    )  # fmt: skip
    # a model none of whose requests was answered fails the run, naming its first error
    assert code == 1 and "missing: every request failed; the first said: " in err and "does not exist" in err
    assert "fine-tuned:" not in err
    tuned, missing = json.loads(out)["models"]
    assert (tuned["graded"], tuned["errors"], missing["graded"], missing["request_errors"]) == (8, 0, 0, 8)


def test_retry_errors_asks_the_failed_examples_again(capsys, cli):
    cli.set_faults({"method": "POST", "path": "/v1/chat/completions", "kind": "training_not_available", "times": 1})
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", str(cli.held_out), "--model", cli.fine_tuned, "--limit", "3", "--json"
    )
    assert code == 0, err
    first = json.loads(out)
    assert first["errors"] == 1 and f"--retry-errors {first['id']}" in err

    code, out, err = run_cli(capsys, "eval", "run", "--retry-errors", first["id"][:10], "--json")
    assert code == 0, err
    again = json.loads(out)
    assert (again["id"], again["errors"], again["done"]) == (first["id"], 0, 3)


def test_resume_runs_a_stored_run_as_it_was_made(capsys, cli):
    async def create() -> str:
        service = await open_service()
        try:
            models = (ModelSpec(cli.fine_tuned, "fine-tuned"),)
            info = await service.evaluations.create(EvalSettings(str(cli.held_out), "", models, limit=4))
            return info.id
        finally:
            await service.close()

    run_id = asyncio.run(create())
    code, out, err = run_cli(capsys, "eval", "run", "--resume", run_id, "--json")
    assert code == 0, err
    assert (json.loads(out)["status"], json.loads(out)["done"]) == ("finished", 4)
    code, _, err = run_cli(capsys, "eval", "run", "--resume", run_id, "--data", str(cli.held_out))
    assert code == 2 and "give no --data or --model" in err


# -- list and show --------------------------------------------------------------------------------------


def test_list_and_show_read_the_cache(capsys, cli):
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", str(cli.held_out), *base_and_tuned(cli), "--limit", "5", "--json"
    )
    run_id = json.loads(out)["id"]
    code, out, _ = run_cli(capsys, "eval", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)["runs"]
    assert (listed["id"], listed["status"], listed["done"], listed["total"]) == (run_id, "finished", 10, 10)
    code, out, _ = run_cli(capsys, "eval", "list")
    assert code == 0 and run_id in out and "base, fine-tuned" in out

    code, out, _ = run_cli(capsys, "eval", "show", run_id[:9], "--json")
    assert code == 0 and json.loads(out)["id"] == run_id
    code, out, _ = run_cli(capsys, "eval", "show", run_id)
    assert code == 0 and row_of(out, "fine-tuned") and "McNemar" in out
    code, out, _ = run_cli(capsys, "eval", "show", run_id, "--markdown")
    assert code == 0 and out.startswith("#") and "fine-tuned" in out and "base" in out


# -- from a job -------------------------------------------------------------------------------------------


def test_job_evaluates_base_fine_tuned_and_checkpoints_on_its_validation_file(capsys, cli, isolated_home):
    code, out, err = run_cli(capsys, "eval", "job", cli.job["id"], "--limit", "6", "--json")
    assert code == 0, err
    report = json.loads(out)
    labels = [m["label"] for m in report["models"]]
    assert labels[:2] == ["base", "fine-tuned"] and labels[2:] == sorted(labels[2:], key=lambda s: int(s.split()[1]))
    assert len(labels) == 4  # the last of the three checkpoints is the fine-tuned model itself
    assert report["job_id"] == cli.job["id"] and "eval-data" in report["data"]
    downloaded = next((isolated_home / "cache" / "eval-data").iterdir())
    assert downloaded.read_bytes() == cli.held_out.read_bytes()  # the job's validation file, fetched
    assert report["models"][1]["mean"] > report["models"][0]["mean"]


# -- exit codes -------------------------------------------------------------------------------------------


def test_bad_input_exits_2_naming_the_problem(capsys, cli, tmp_path):
    data = str(cli.held_out)
    code, _, err = run_cli(capsys, "eval", "run", "--model", "m")
    assert code == 2 and "needs --data" in err
    code, _, err = run_cli(capsys, "eval", "run", "--data", data)
    assert code == 2 and "at least one --model" in err
    code, _, err = run_cli(capsys, "eval", "run", "--data", str(tmp_path / "gone.jsonl"), "--model", "m")
    assert code == 2 and "gone.jsonl" in err
    code, _, err = run_cli(capsys, "eval", "run", "--data", data, "--model", "m", "--concurrency", "0")
    assert code == 2 and "concurrency" in err

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    code, _, err = run_cli(capsys, "eval", "run", "--data", data, "--model", "m", "--grader", str(broken))
    assert code == 2 and f"{broken}: not JSON" in err
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    code, _, err = run_cli(capsys, "eval", "run", "--data", data, "--model", "m", "--grader", str(listed))
    assert code == 2 and f"{listed}: not a grader" in err
    scorer = tmp_path / "score_model.json"
    scorer.write_text(json.dumps({"type": "score_model", "name": "p", "model": "gpt-4o", "input": []}))
    code, _, err = run_cli(capsys, "eval", "run", "--data", data, "--model", "m", "--grader", str(scorer))
    assert code == 2 and str(scorer) in err
    code, _, err = run_cli(capsys, "eval", "run", "--data", data, "--model", "m", "--grader", "model")
    assert code == 2 and "--judge" in err

    code, _, err = run_cli(capsys, "eval", "show", "eval-000000000000")
    assert code == 2 and "no evaluation" in err
    assert run_cli(capsys, "eval", "list")[1].strip() == "no evaluations yet"  # nothing was made


def test_a_job_without_validation_file_needs_data(capsys, cli):
    import openai

    client = openai.OpenAI(base_url=cli.backend.base_url, api_key=cli.backend.api_key, max_retries=0)
    try:
        job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=cli.job["training_file"])
    finally:
        client.close()
    code, _, err = run_cli(capsys, "eval", "job", job.id)
    assert code == 2 and "no validation file" in err
    code, out, err = run_cli(capsys, "eval", "job", job.id, "--data", str(cli.held_out), "--limit", "2", "--json")
    assert code == 0, err
    assert [m["label"] for m in json.loads(out)["models"]] == ["base"]  # not trained yet: the baseline alone


def test_every_request_failing_exits_1(capsys, cli):
    code, _, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), "--model", MISSING_MODEL, "--limit", "4")
    assert code == 1 and "every request failed" in err and "does not exist" in err


def test_no_connection_exits_1(capsys, cli, monkeypatch):
    monkeypatch.delenv("BENCH_KEY")
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), "--model", "m")
    assert code == 1 and "cannot evaluate" in err and out == ""


def test_show_markdown_prints_no_escape_sequence_from_the_data(capsys, cli, tmp_path):
    rows = [json.loads(line) for line in cli.held_out.read_text().splitlines()[:3]]
    rows[0]["messages"][-2]["content"] = "\x1b[2J\x1b]0;owned\x07 my parcel"  # the ticket asked
    data = tmp_path / "hostile.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(data), *base_and_tuned(cli), "--json")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "eval", "show", json.loads(out)["id"], "--markdown")
    assert code == 0 and "my parcel" in out
    assert "\x1b" not in out and "\x07" not in out and "␛[2J" in out


# -- review fixes -------------------------------------------------------------------------------------


def test_max_tokens_is_marked_given_only_when_given(capsys, cli):
    data = str(cli.held_out)
    code, out, err = run_cli(capsys, "eval", "run", "--data", data, "--model", cli.fine_tuned, "--limit", "2", "--json")
    assert code == 0, err
    sampling = json.loads(out)["settings"]["sampling"]
    assert (sampling["max_tokens"], sampling["max_tokens_set"]) == (256, False)  # reasoning models: their own
    code, out, err = run_cli(
        capsys, "eval", "run", "--data", data, "--model", cli.fine_tuned, "--limit", "2", "--max-tokens", "32", "--json"
    )
    assert code == 0, err
    sampling = json.loads(out)["settings"]["sampling"]
    assert (sampling["max_tokens"], sampling["max_tokens_set"]) == (32, True)


def test_resume_refuses_the_options_of_a_new_run_naming_them(capsys, cli):
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), "--model", cli.fine_tuned,
                             "--limit", "2", "--json")  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["id"]
    code, _, err = run_cli(capsys, "eval", "run", "--resume", run_id, "--concurrency", "2", "--max-tokens", "9")
    assert code == 2 and "--concurrency" in err and "--max-tokens" in err
    code, _, err = run_cli(capsys, "eval", "run", "--retry-errors", run_id, "--temperature", "0", "--seed", "1")
    assert code == 2 and "--temperature" in err and "--seed" in err
    assert run_cli(capsys, "eval", "run", "--resume", run_id)[0] == 0


def test_an_out_file_that_cannot_be_written_is_told_before_the_run_is_made(capsys, cli, tmp_path):
    out_path = tmp_path / "no-such-folder" / "out.jsonl"
    code, _, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), "--model", cli.fine_tuned,
                           "--out", str(out_path))  # fmt: skip
    assert code == 2 and "cannot write" in err and "no-such-folder" in err
    assert run_cli(capsys, "eval", "list")[1].strip() == "no evaluations yet"
    fine = tmp_path / "fine.jsonl"
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(cli.held_out), "--model", cli.fine_tuned,
                             "--limit", "2", "--out", str(fine))  # fmt: skip
    assert code == 0, err
    assert len(fine.read_text().splitlines()) == 2


def test_a_file_that_cannot_be_made_exits_1_without_a_traceback(capsys, cli, monkeypatch):
    from tunedeck.core.evaluate.service import Evaluations

    async def plan_for_job(self, job_id, data=None):  # the download's folder cannot be made
        raise PermissionError(13, "Permission denied", "/cache/eval-data")

    monkeypatch.setattr(Evaluations, "plan_for_job", plan_for_job)
    code, _, err = run_cli(capsys, "eval", "job", cli.job["id"])
    assert code == 1 and err.strip() == "tunedeck: /cache/eval-data: Permission denied"


def test_list_into_a_closed_pipe_exits_quietly(capsys, cli, monkeypatch):
    import sys

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["eval", "list"])
    assert code == 0 and capsys.readouterr().err == ""


def test_the_rows_not_listed_are_counted_as_rows(capsys, cli, tmp_path):
    from tunedeck.core.evaluate.examples import MAX_PROBLEMS

    good = cli.held_out.read_text().splitlines()[:2]
    data = tmp_path / "many-bad.jsonl"
    data.write_text("\n".join([*good, *['{"messages": "not a list"}'] * (MAX_PROBLEMS + 30)]) + "\n")
    code, out, err = run_cli(capsys, "eval", "run", "--data", str(data), "--model", cli.fine_tuned, "--json")
    assert code == 0, err
    assert f"skipped {MAX_PROBLEMS + 30 - 20} more rows" in err  # 20 told, the rest counted


def test_a_job_evaluation_asks_with_the_jobs_response_format(capsys, cli, monkeypatch):
    import dataclasses

    from tunedeck.core.evaluate.records import Sampling
    from tunedeck.core.evaluate.service import Evaluations

    schema = {"type": "json_schema", "json_schema": {"name": "label", "schema": {"type": "object"}}}
    real_plan = Evaluations.plan_for_job

    async def plan_for_job(self, job_id, data=None):  # as an RFT job's plan carries them
        planned = await real_plan(self, job_id, data)
        return dataclasses.replace(planned, sampling=Sampling(response_format=schema, reasoning_effort="low"))

    monkeypatch.setattr(Evaluations, "plan_for_job", plan_for_job)
    code, out, err = run_cli(capsys, "eval", "job", cli.job["id"], "--limit", "2", "--temperature", "0.5", "--json")
    assert code == 0, err
    sampling = json.loads(out)["settings"]["sampling"]
    assert sampling["response_format"] == schema and sampling["reasoning_effort"] == "low"
    assert sampling["temperature"] == 0.5
