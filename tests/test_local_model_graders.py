"""score_model and label_model graders: a model the local backend serves reads each sample.

Unit checks with a recorded asker, then through the unmodified SDK: a fine-tuned "scorer"
(the built-in model taught to answer 1 for a billing answer and 0 otherwise) grades
`graders/run` samples, and an RFT job whose score_model grader is that scorer learns to say
what it rewards."""

from __future__ import annotations

import json
from statistics import mean

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.graders.grader import compile_grader
from tunedeck.backend.graders.model_graders import AskError

SAMPLE = {"sample": {"output_text": "billing"}, "item": {"ticket": "I was charged twice"}}


def score_model(model: str = "judge", **extra) -> dict:
    return {
        "type": "score_model",
        "name": "score",
        "model": model,
        "input": [{"role": "system", "content": "Score it."}, {"role": "user", "content": "answer: {{sample.output_text}}"}],
        **extra,
    }


def label_model(model: str = "judge") -> dict:
    return {
        "type": "label_model",
        "name": "label",
        "model": model,
        "input": [{"role": "user", "content": "{{item.ticket}} / {{sample.output_text}}"}],
        "labels": ["correct", "incorrect"],
        "passing_labels": ["correct"],
    }


def asker(*replies: str):
    asked = []

    def ask(model, messages, sampling):
        asked.append((model, messages, sampling))
        reply = replies[len(asked) - 1]
        if reply == "!":
            raise AskError("HTTP 404: no such model")
        return reply

    return ask, asked


def test_a_score_is_the_replys_last_number_within_the_range():
    ask, asked = asker("Score: 0.8", "7", "no idea", "0.25")
    grader = compile_grader(score_model(sampling_params={"temperature": 0.5, "max_completions_tokens": 9}), ask=ask)
    assert grader.grade(SAMPLE).reward == 0.8
    assert asked[0][0] == "judge" and asked[0][1][1] == {"role": "user", "content": "answer: billing"}
    assert asked[0][2] == {"temperature": 0.5, "max_tokens": 9}
    out_of_range = grader.grade(SAMPLE)
    assert out_of_range.reward == 0.0 and out_of_range.errors == {"model_grader_parse_error"}
    assert grader.grade(SAMPLE).errors == {"model_grader_parse_error"}  # no number at all
    wide = compile_grader(score_model(range=[-1, 1]), ask=ask)
    assert wide.grade(SAMPLE).reward == 0.25


def test_a_label_passes_when_it_is_a_passing_label():
    ask, asked = asker("Correct.", '"incorrect"', "maybe", "!")
    grader = compile_grader(label_model(), ask=ask)
    assert grader.grade(SAMPLE).reward == 1.0 and asked[0][1] == [{"role": "user", "content": "I was charged twice / billing"}]
    assert grader.grade(SAMPLE).reward == 0.0
    assert grader.grade(SAMPLE).errors == {"model_grader_parse_error"}
    failed = grader.grade(SAMPLE)
    assert failed.errors == {"model_grader_server_error"}
    assert failed.details["model_grader_server_error_details"] == "judge: HTTP 404: no such model"


def test_without_a_model_to_ask_it_says_so_and_bad_graders_are_400s():
    from tunedeck.backend.errors import ApiError

    unasked = compile_grader(label_model()).grade(SAMPLE)
    assert unasked.errors == {"model_grader_server_error"} and "no model can be asked" in unasked.details["model_grader_server_error_details"]
    for grader, param in [
        ({**label_model(), "passing_labels": ["right"]}, "grader.passing_labels"),
        ({**score_model(), "range": [1, 0]}, "grader.range"),
        ({**score_model(), "input": []}, "grader.input"),
        ({**score_model(), "input": [{"role": "user", "content": "{{ item.a b }}"}]}, "grader.input[0].content"),
        ({**score_model(), "input": [{"role": "tool", "content": "x"}]}, "grader.input[0].role"),
    ]:
        with pytest.raises(ApiError) as caught:
            compile_grader(grader)
        assert caught.value.param == param


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A backend serving a fine-tuned scorer: 'answer: billing' -> 1, any other answer -> 0."""
    folder = tmp_path_factory.mktemp("model-graders")
    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    labels = ["billing", "shipping", "account", "technical", "returns", "other"]
    rows = [
        {"messages": [{"role": "system", "content": "Score it."},
                      {"role": "user", "content": f"answer: {label}"},
                      {"role": "assistant", "content": "1" if label == "billing" else "0"}]}  # fmt: skip
        for label in labels * 40
    ]
    data = folder / "scorer.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    file = client.files.create(file=data, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, seed=2)
    backend.run_until_settled()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    yield client, backend, job.fine_tuned_model, folder
    client.close()
    backend.stop()


def test_graders_run_asks_the_model_the_backend_serves(scorer):
    client, _, model, _ = scorer
    grader = score_model(model)
    assert client.fine_tuning.alpha.graders.run(grader=grader, model_sample="billing").reward == 1.0
    other = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="returns")
    assert other.reward == 0.0 and other.metadata.sampled_model_name == model
    missing = client.fine_tuning.alpha.graders.run(grader=score_model("ft:nope"), model_sample="billing")
    assert missing.reward == 0.0 and missing.metadata.errors.api_model_grader_server_error


def test_an_rft_job_learns_what_its_score_model_rewards(scorer):
    client, backend, model, folder = scorer
    data = generate_dataset("rft", 120, folder / "rft.jsonl", "--learnable")
    training = client.files.create(file=data, purpose="fine-tune")
    method = {"type": "reinforcement", "reinforcement": {"grader": score_model(model)}}
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training.id, method=method, seed=0)
    backend.run_until_settled()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    rewards = [e.data["train_reward_mean"] for e in reversed(events) if e.type == "metrics"]
    assert mean(rewards[-40:]) > mean(rewards[:40]) + 0.2  # it learned to answer what the scorer pays for
    rows = [json.loads(line) for line in data.read_text().splitlines()[:20]]
    answers = [client.chat.completions.create(model=job.fine_tuned_model, messages=r["messages"]).choices[0].message.content for r in rows]
    assert sum(answer.startswith("billing") for answer in answers) >= 10  # what the scorer pays for
