"""The `python` grader: the user's grade(sample, item) in a limited process of its own, through
the front door (`run_grader`), `graders/run` and an RFT job driven by the unmodified SDK."""

from __future__ import annotations

import json
from statistics import mean

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import run_grader

EXACT_PY = {
    "type": "python",
    "name": "exact_py",
    "source": "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['reference_answer'] else 0.0\n",
}


def python(source: str) -> dict:
    return {"type": "python", "name": "py", "source": source}


def test_grade_reads_the_sample_and_the_item():
    body = run_grader(EXACT_PY, "billing", {"reference_answer": "billing"})
    assert body["reward"] == 1.0 and body["metadata"]["type"] == "python"
    assert not any(v for k, v in body["metadata"]["errors"].items())
    assert run_grader(EXACT_PY, "other", {"reference_answer": "billing"})["reward"] == 0.0
    json_sample = python("def grade(sample, item):\n    return sample['output_json']['score'] / 10\n")
    assert run_grader(json_sample, '{"score": 7}', {})["reward"] == pytest.approx(0.7)


def test_an_error_in_grade_is_that_samples_with_its_traceback():
    body = run_grader(python("def grade(sample, item):\n    return item['missing']\n"), "x", {})
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["python_grader_runtime_error"]
    assert "KeyError: 'missing'" in errors["python_grader_runtime_error_details"]
    body = run_grader(python("def grade(sample, item):\n    return 'high'\n"), "x", {})
    assert body["metadata"]["errors"]["python_grader_runtime_error"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def grade(sample, item)\n    return 1\n", "line 1"),
        ("def score(sample, item):\n    return 1\n", "defines no grade"),
        ("", "expected the grader's Python source"),
    ],
)
def test_source_that_cannot_grade_is_a_400_naming_the_field(source, message):
    error = run_grader(python(source), "x", {})["error"]
    assert error["param"] == "grader.source" and message in error["message"]


def test_the_code_has_no_network_and_runs_in_a_folder_of_its_own(tmp_path):
    reach = python(
        "import socket\n"
        "def grade(sample, item):\n"
        "    socket.create_connection(('127.0.0.1', 9))\n"
        "    return 1.0\n"
    )
    body = run_grader(reach, "x", {})
    assert body["reward"] == 0.0 and "no network access" in body["metadata"]["errors"]["python_grader_runtime_error_details"]
    where = python(
        "import os\n"
        "def grade(sample, item):\n"
        "    return 1.0 if os.getcwd().startswith(os.environ['HOME']) and 'OPENAI_API_KEY' not in os.environ else 0.0\n"
    )
    assert run_grader(where, "x", {})["reward"] == 1.0


def test_a_grade_that_runs_too_long_is_stopped_and_the_next_sample_runs(monkeypatch):
    from tunedeck.backend.graders import python_grader
    from tunedeck.backend.graders.grader import compile_grader

    monkeypatch.setattr(python_grader, "SAMPLE_SECONDS", 0.5)
    grader = compile_grader(
        python("import time\ndef grade(sample, item):\n    if item.get('slow'):\n        time.sleep(30)\n    return 1.0\n")
    )
    namespaces = {"sample": {"output_text": "x"}}
    slow = grader.grade({**namespaces, "item": {"slow": True}})
    assert slow.reward == 0.0 and "ran past 0.5 s" in slow.details["python_grader_runtime_error_details"]
    assert grader.grade({**namespaces, "item": {}}).reward == 1.0  # a fresh worker


async def test_an_rft_job_learns_with_a_python_grader(client, backend, tmp_path):
    data = generate_dataset("rft", 200, tmp_path / "r.jsonl", "--learnable")
    valid = generate_dataset("rft", 60, tmp_path / "v.jsonl", "--learnable", "--seed", "11")
    training = await client.files.create(file=data, purpose="fine-tune")
    validation = await client.files.create(file=valid, purpose="fine-tune")
    checked = await client.fine_tuning.alpha.graders.run(grader=EXACT_PY, model_sample="billing", item={"reference_answer": "billing"})
    assert checked.reward == 1.0
    job = await client.fine_tuning.jobs.create(
        model="tunedeck-ngram",
        training_file=training.id,
        validation_file=validation.id,
        method={"type": "reinforcement", "reinforcement": {"grader": EXACT_PY}},
        seed=0,
    )
    await backend.run_until_settled_async()
    job = await client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    events = (await client.fine_tuning.jobs.list_events(job.id, limit=1000)).data
    rewards = [e.data["train_reward_mean"] for e in reversed(events) if e.type == "metrics"]
    assert mean(rewards[:30]) < 0.1 and mean(rewards[-60:]) > 0.3  # as with the string_check it mirrors
    rows = [json.loads(line) for line in valid.read_text().splitlines()]
    answers = [
        (await client.chat.completions.create(model=job.fine_tuned_model, messages=row["messages"])).choices[0].message.content
        for row in rows
    ]
    assert mean(a == row["reference_answer"] for a, row in zip(answers, rows)) >= 0.5


async def test_graders_run_and_validate_take_a_python_grader(client):
    validated = await client.fine_tuning.alpha.graders.validate(grader=EXACT_PY)
    assert validated.grader.type == "python"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.fine_tuning.alpha.graders.validate(grader=python("def grade(:\n"))
    assert caught.value.body["param"] == "grader.source"
