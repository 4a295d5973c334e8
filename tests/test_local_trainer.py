"""The built-in trainer, the dataset checks and the auto hyperparameters, without HTTP."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.backend.jobs.jobspec import auto_batch_size, auto_epochs
from tunedeck.backend.jobs.training_data import DatasetError, load_dataset
from tunedeck.backend.trainers.base import ChatExample, Hyperparameters, ToolCall, TrainingSpec, Turn
from tunedeck.backend.trainers.ngram.features import END_TOKEN, Featurizer, build_vocabulary
from tunedeck.backend.trainers.ngram.kernels import predict
from tunedeck.backend.trainers.ngram.model import load_weights
from tunedeck.backend.trainers.ngram.trainer import NgramTrainer

LABELS = ("alpha", "beta", "gamma")
WORDS = [f"w{i}" for i in range(60)]


def examples(n: int, seed: int, *, learnable: bool) -> list[ChatExample]:
    """With `learnable`, the label's name is in the prompt; otherwise labels are random."""
    r = random.Random(seed)
    made = []
    for _ in range(n):
        label = r.choice(LABELS)
        words = r.sample(WORDS, 8) + ([f"about {label}"] if learnable else [])
        made.append(ChatExample((Turn("user", " ".join(words)), Turn("assistant", label))))
    return made


def train(training, validation=(), *, epochs=3, batch_size=1, seed=0):
    hyper = Hyperparameters(epochs, batch_size, 1.0)
    spec = TrainingSpec(BUILTIN_BASE_MODEL, "supervised", training, list(validation), hyper, seed)
    run = NgramTrainer().start(spec)
    return run, [run.step() for _ in range(run.total_steps)]


def test_loss_falls_and_accuracy_rises_on_learnable_data():
    run, steps = train(examples(200, 1, learnable=True), examples(50, 2, learnable=True))
    assert run.total_steps == 600 and steps[-1].step == 600
    assert steps[0].train_loss == pytest.approx(np.log(len(run.featurizer.vocabulary)), rel=1e-4)  # untrained: uniform
    epoch_ends = [s for s in steps if s.epoch_ended]
    assert [s.step for s in epoch_ends] == [200, 400, 600]
    early, late = (np.mean([s.train_loss for s in part]) for part in (steps[:20], steps[-20:]))
    assert late < early / 10
    assert epoch_ends[-1].full_valid_loss < epoch_ends[0].full_valid_loss < steps[0].train_loss / 10
    assert epoch_ends[-1].full_valid_mean_token_accuracy == 1.0


def test_a_tiny_noisy_set_overfits():
    _, steps = train(examples(12, 3, learnable=False), examples(30, 4, learnable=False), epochs=25)
    full_valid = [s.full_valid_loss for s in steps if s.epoch_ended]
    assert np.mean([s.train_loss for s in steps[-12:]]) < 0.05  # memorised
    best = int(np.argmin(full_valid))
    assert best < len(full_valid) - 5 and full_valid[-1] > full_valid[best] + 0.02  # then validation worsens


def test_a_seed_reproduces_a_run_and_another_seed_does_not():
    data = examples(30, 5, learnable=True)
    losses = [[s.train_loss for s in train(data, seed=seed)[1]] for seed in (1, 1, 2)]
    assert losses[0] == losses[1] != losses[2]


def test_batch_size_sets_the_step_count():
    run, steps = train(examples(25, 6, learnable=True), epochs=2, batch_size=4)
    assert (run.steps_per_epoch, run.total_steps) == (7, 14) and steps[6].epoch_ended


def test_weight_zero_answers_are_left_out_of_the_loss():
    vocabulary = build_vocabulary([], 10)
    featurizer = Featurizer(vocabulary, 1024)
    turns = (Turn("user", "hi"), Turn("assistant", "one two", 0), Turn("user", "again"), Turn("assistant", "three"))
    featurized = featurizer.example(ChatExample(turns))
    assert featurized.n_positions == 2 and featurized.n_segments == 1  # "three" + end
    assert featurizer.example(ChatExample(turns[:2])) is None
    assert build_vocabulary([ChatExample(turns)], 10)[1] == END_TOKEN


def test_saved_weights_load_back_and_predict_the_same(tmp_path):
    data = examples(20, 7, learnable=True)
    run, _ = train(data)
    run.save(tmp_path / "model.npz")
    featurizer, weights, meta = load_weights(tmp_path / "model.npz")
    assert meta["base_model"] == BUILTIN_BASE_MODEL and featurizer.vocabulary == run.featurizer.vocabulary
    batch = featurizer.example(data[0])
    np.testing.assert_array_equal(predict(weights, batch), predict(run.weights, run.featurizer.example(data[0])))


def test_auto_hyperparameters_follow_the_cookbook():
    assert [auto_epochs(n) for n in (10, 20, 40, 500, 10_000, 100_000)] == [10, 5, 3, 3, 2, 1]
    assert [auto_batch_size(n) for n in (10, 500, 5_000, 10**6)] == [1, 1, 10, 256]


# -- dataset checks ------------------------------------------------------------------------------


def write(tmp_path, lines: list[object], name: str = "data.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def chat(*messages: dict) -> dict:
    return {"messages": list(messages)}


USER = {"role": "user", "content": "hi"}
ANSWER = {"role": "assistant", "content": "hello"}


def test_rich_chat_examples_are_accepted(tmp_path):
    tool_call = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                 "function": {"name": "lookup", "arguments": "{\"q\": 1}"}}]}  # fmt: skip
    parts = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "x"}}]
    image = {"role": "user", "content": parts}
    tool_answer = {"role": "tool", "content": "42", "tool_call_id": "c1"}
    lines = [chat(USER, tool_call, tool_answer, ANSWER), chat(image, ANSWER)]
    lines += [chat(USER, {**ANSWER, "weight": 1})] * 8 + [b"   "]
    dataset = load_dataset(write(tmp_path, lines), "supervised")
    assert dataset.n_examples == 10 and dataset.n_tokens > 0
    call_turn = dataset.examples[0].turns[1]
    assert call_turn.text == "" and call_turn.tool_calls == (ToolCall("lookup", '{"q": 1}'),)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"\xff\xfe", "Example 1 (line 1): not valid UTF-8"),
        (chat(USER, {**ANSWER, "weight": 2}), "Example 1 (line 1), message 2: 'weight' must be 0 or 1"),
        (chat({**USER, "weight": 1}, ANSWER), "Example 1 (line 1), message 1: only assistant messages may have a 'weight'"),
        (chat({"role": "robot", "content": "x"}, ANSWER), "Example 1 (line 1), message 1: unknown role 'robot'"),
        (chat({"role": "user"}, ANSWER), "Example 1 (line 1), message 1: 'content' is missing"),
        ({"messages": "nope"}, "Example 1 (line 1): 'messages' must be a non-empty list"),
        ({"prompt": "a", "completion": "b"}, "legacy prompt/completion format"),
        ({"messages": [USER], "answer": "x"}, "reinforcement format, but the job's method is supervised"),
    ],
)
def test_problems_name_their_line(tmp_path, line, expected):
    with pytest.raises(DatasetError) as info:
        load_dataset(write(tmp_path, [line] + [chat(USER, ANSWER)] * 10), "supervised")
    assert info.value.code == "invalid_training_file" and expected in info.value.message


def test_every_answer_at_weight_zero_leaves_nothing_to_learn(tmp_path):
    with pytest.raises(DatasetError, match="nothing to learn"):
        load_dataset(write(tmp_path, [chat(USER, {**ANSWER, "weight": 0})] * 10), "supervised")


def test_reinforcement_files_are_recognised(tmp_path):
    rows = [{"messages": [{"role": "developer", "content": "Answer."}, USER], "reference_answer": "x"}] * 10
    assert load_dataset(write(tmp_path, rows), "reinforcement").n_examples == 10


def test_splitting_a_batch_into_chunks_changes_nothing(monkeypatch):
    from tunedeck.backend.trainers.ngram import kernels

    data = examples(40, 8, learnable=True)
    whole = [s.train_loss for s in train(data, batch_size=8)[1]]
    monkeypatch.setattr(kernels, "MAX_CHUNK_OCCURRENCES", 30)  # about one example per chunk
    split = [s.train_loss for s in train(data, batch_size=8)[1]]
    np.testing.assert_allclose(split, whole, rtol=1e-4)
