"""DPO and RFT jobs on the local backend through the real SDK: they learn, report their
metrics, keep the right checkpoints, overfit when they should, and the models they make
answer chat completions."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.backend.jobs.phases import Snapshot, kept_snapshots

LABELS = ["billing", "shipping", "account", "technical", "returns", "other"]
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "eq"}  # fmt: skip


def tickets(path: Path) -> list[tuple[list[dict], str]]:
    """(prompt, label) of each example's last ticket: the system message and that ticket."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(row["messages"][:1] + row["messages"][-2:-1], row["messages"][-1]["content"]) for row in rows]


def preferences(items: list[tuple[list[dict], str]], seed: int) -> list[dict]:
    """The right label preferred over a random wrong one."""
    r = random.Random(seed)
    return [{"input": {"messages": prompt}, "preferred_output": [{"role": "assistant", "content": label}],
             "non_preferred_output": [{"role": "assistant", "content": r.choice([x for x in LABELS if x != label])}]}
            for prompt, label in items]  # fmt: skip


async def upload(client, rows: list[Any] | Path, name: str = "data.jsonl") -> str:
    data = rows.read_bytes() if isinstance(rows, Path) else "".join(json.dumps(r) + "\n" for r in rows).encode()
    return (await client.files.create(file=(name, data), purpose="fine-tune")).id


async def train(client, backend, training: str, validation: str | None = None, **kwargs: Any):
    model = kwargs.pop("model", BUILTIN_BASE_MODEL)
    job = await client.fine_tuning.jobs.create(model=model, training_file=training, validation_file=validation,
                                               seed=kwargs.pop("seed", 1), **kwargs)  # fmt: skip
    await backend.run_until_settled_async()
    job = await client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    return job


async def metrics(client, job_id: str) -> list[dict[str, Any]]:
    events = [e async for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]  # every page
    return [e.data for e in reversed(events) if e.type == "metrics"]


async def accuracy(client, model: str, items) -> float:
    hits = 0
    for prompt, label in items:
        completion = await client.chat.completions.create(model=model, messages=prompt)
        hits += completion.choices[0].message.content == label
    return hits / len(items)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# -- DPO ----------------------------------------------------------------------------------------


async def test_dpo_learns_the_preferences_and_reports_its_metrics(client, backend, tmp_path):
    items = tickets(generate_dataset("sft", 360, tmp_path / "t.jsonl", "--learnable"))
    training, validation = await upload(client, preferences(items[:300], 1)), await upload(client, preferences(items[300:], 2))
    job = await train(client, backend, training, validation, method={"type": "dpo"})
    assert job.method.dpo.hyperparameters.beta == 0.1 and job.hyperparameters.n_epochs == 3  # "auto" resolved
    steps = await metrics(client, job.id)
    assert len(steps) == 900 and {"train_loss", "train_mean_token_accuracy", "train_mean_reward_margin",
                                  "train_reward_accuracy"} <= set(steps[0])  # fmt: skip
    assert steps[0]["train_loss"] == pytest.approx(0.6931, abs=1e-3)  # the policy starts as the reference
    epochs = [s for s in steps if "full_valid_loss" in s]
    assert [s["step"] for s in epochs] == [300, 600, 900]
    assert epochs[-1]["full_valid_loss"] < epochs[0]["full_valid_loss"] < 0.6931
    assert epochs[-1]["full_valid_reward_accuracy"] > max(0.65, epochs[0]["full_valid_reward_accuracy"])
    assert epochs[-1]["full_valid_mean_reward_margin"] > epochs[0]["full_valid_mean_reward_margin"] > 0
    assert mean([s["train_loss"] for s in steps[-50:]]) < mean([s["train_loss"] for s in steps[:50]])

    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert [c.step_number for c in checkpoints] == [900, 600, 300]
    assert checkpoints[0].metrics.model_extra["full_valid_reward_accuracy"] == epochs[-1]["full_valid_reward_accuracy"]
    csv = (await client.files.content(job.result_files[0])).text.splitlines()
    assert csv[0].startswith("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,train_mean_reward")
    answer = await client.chat.completions.create(model=checkpoints[1].fine_tuned_model_checkpoint,
                                                  messages=items[0][0], max_tokens=3)  # fmt: skip
    assert answer.choices[0].finish_reason in ("stop", "length")


async def test_dpo_continues_a_fine_tuned_model_and_improves_its_answers(client, backend, tmp_path):
    """The guide's workflow: a little SFT, then DPO from that model."""
    items = tickets(generate_dataset("sft", 560, tmp_path / "t.jsonl", "--learnable"))
    sft_rows = [{"messages": prompt + [{"role": "assistant", "content": label}]} for prompt, label in items[:30]]
    sft = await train(client, backend, await upload(client, sft_rows))
    dpo = await train(client, backend, await upload(client, preferences(items[30:500], 3)),
                      model=sft.fine_tuned_model, method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})  # fmt: skip
    assert dpo.model == sft.fine_tuned_model and dpo.fine_tuned_model.startswith("ft:tunedeck-ngram:local::")
    held_out = items[500:]
    before, after = await accuracy(client, sft.fine_tuned_model, held_out), await accuracy(client, dpo.fine_tuned_model, held_out)
    assert after >= before + 0.2, (before, after)


async def test_dpo_overfits_a_small_noisy_set(client, backend):
    r = random.Random(5)

    def noise(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            good, bad = r.sample(LABELS, 2)
            prompt = [{"role": "user", "content": " ".join(r.choice("abcdefgh") for _ in range(6))}]
            rows.append({"input": {"messages": prompt}, "preferred_output": [{"role": "assistant", "content": good}],
                         "non_preferred_output": [{"role": "assistant", "content": bad}]})  # fmt: skip
        return rows

    method = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 20}}}
    job = await train(client, backend, await upload(client, noise(12)), await upload(client, noise(40)), method=method)
    steps = await metrics(client, job.id)
    full_valid = [s["full_valid_loss"] for s in steps if "full_valid_loss" in s]
    assert mean([s["train_loss"] for s in steps[-12:]]) < 0.4  # memorised
    assert full_valid[-1] > full_valid[0] > 0.6931  # while the validation loss only rises


async def test_a_higher_beta_keeps_the_model_closer_to_its_reference(client, backend, tmp_path):
    items = tickets(generate_dataset("sft", 100, tmp_path / "t.jsonl", "--learnable"))
    training = await upload(client, preferences(items, 4))
    moved = {}
    for beta in (0.05, 1.0):
        method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": beta, "n_epochs": 10}}}
        steps = await metrics(client, (await train(client, backend, training, method=method)).id)
        moved[beta] = mean([s["train_mean_reward_margin"] / beta for s in steps[-50:]])  # log-ratio margin
    assert 0 < moved[1.0] < moved[0.05] / 2


# -- RFT ----------------------------------------------------------------------------------------


async def test_an_rft_job_reads_reasoning_effort_default_while_it_validates(client, backend, tmp_path):
    training = await upload(client, generate_dataset("rft", 20, tmp_path / "r.jsonl", "--learnable"))
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}
    job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, method=method)
    hyper = job.method.reinforcement.hyperparameters
    assert job.status == "validating_files"
    # "auto" is not a reasoning effort the API knows: the job says "default" from the start.
    assert hyper.reasoning_effort == "default" and hyper.compute_multiplier == "auto"
    assert (await client.fine_tuning.jobs.retrieve(job.id)).method.reinforcement.hyperparameters.reasoning_effort == "default"


async def test_rft_raises_the_reward_and_keeps_the_best_checkpoints(client, backend, tmp_path):
    training = await upload(client, generate_dataset("rft", 200, tmp_path / "r.jsonl", "--learnable"))
    valid_path = generate_dataset("rft", 60, tmp_path / "v.jsonl", "--learnable", "--seed", "11")
    job = await train(client, backend, training, await upload(client, valid_path),
                      method={"type": "reinforcement", "reinforcement": {"grader": EXACT}}, seed=0)  # fmt: skip
    hyper = job.method.reinforcement.hyperparameters
    assert (hyper.n_epochs, hyper.batch_size, hyper.compute_multiplier, hyper.eval_interval, hyper.eval_samples,
            hyper.reasoning_effort) == (3, 1, 1.0, 60, 1, "default")  # fmt: skip
    assert job.method.reinforcement.grader.name == "exact"

    steps = await metrics(client, job.id)
    assert len(steps) == 600 and all("train_loss" not in s for s in steps)
    rewards = [s["train_reward_mean"] for s in steps]
    assert rewards == [s["train_mean_reward"] for s in steps]
    assert mean(rewards[:30]) < 0.1 and mean(rewards[-60:]) > 0.3  # it starts near chance (1/64)
    evals = [s for s in steps if "valid_reward_mean" in s]
    assert [s["step"] for s in evals] == list(range(60, 601, 60))
    assert evals[-1]["valid_reward_mean"] > evals[0]["valid_reward_mean"] + 0.2
    assert evals[-1]["scores"]["graders"] == [{"name": "exact", "type": "string_check",
        "train_reward_mean": rewards[-1], "valid_reward_mean": evals[-1]["valid_reward_mean"]}]  # fmt: skip
    assert evals[-1]["full_valid_mean_reward"] == evals[-1]["valid_reward_mean"]

    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    best = sorted(evals, key=lambda s: (s["valid_reward_mean"], s["step"]), reverse=True)[:3]
    assert {c.step_number for c in checkpoints} == {s["step"] for s in best} | {600}
    assert checkpoints[0].fine_tuned_model_checkpoint == job.fine_tuned_model and checkpoints[0].step_number == 600

    held_out = [(row["messages"], row["reference_answer"]) for row in map(json.loads, valid_path.read_text().splitlines())]
    assert await accuracy(client, job.fine_tuned_model, held_out) >= 0.5
    assert await accuracy(client, BUILTIN_BASE_MODEL, held_out) == 0.0


async def test_rft_with_a_multi_grader_and_no_validation_file(client, backend, tmp_path):
    training = await upload(client, generate_dataset("rft", 40, tmp_path / "r.jsonl", "--learnable"))
    grader = {"type": "multi", "name": "blend", "calculate_output": "0.5 * exact + 0.5 * close",
              "graders": {"exact": EXACT, "close": {**EXACT, "type": "text_similarity", "name": "close",
                                                    "evaluation_metric": "fuzzy_match"}}}  # fmt: skip
    del grader["graders"]["close"]["operation"]
    method = {"type": "reinforcement",
              "reinforcement": {"grader": grader, "hyperparameters": {"compute_multiplier": 0.5, "eval_interval": 10}}}  # fmt: skip
    job = await train(client, backend, training, method=method)
    steps = await metrics(client, job.id)
    assert all("valid_reward_mean" not in s for s in steps) and len(steps) == 120
    names = [g["name"] for g in steps[-1]["scores"]["graders"]]
    assert names == ["exact", "close"] and 0.0 <= steps[-1]["train_reward_mean"] <= 1.0
    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert 1 <= len(checkpoints) <= 4 and all(c.step_number % 10 == 0 for c in checkpoints)


async def test_the_same_seed_reproduces_an_rft_run(client, backend, tmp_path):
    training = await upload(client, generate_dataset("rft", 20, tmp_path / "r.jsonl", "--learnable"))
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}
    runs = [await metrics(client, (await train(client, backend, training, method=method, seed=seed)).id)
            for seed in (7, 7, 8)]  # fmt: skip
    rewards = [[s["train_reward_mean"] for s in run] for run in runs]
    assert rewards[0] == rewards[1] != rewards[2]


async def test_rft_reports_a_grader_that_names_a_missing_field(client, backend, tmp_path):
    training = await upload(client, generate_dataset("rft", 20, tmp_path / "r.jsonl", "--learnable"))
    typo = {**EXACT, "reference": "{{item.answer}}"}  # the rows call it reference_answer
    job = await train(client, backend, training, method={"type": "reinforcement", "reinforcement": {"grader": typo}})
    last = (await metrics(client, job.id))[-1]
    assert last["train_reward_mean"] == 0.0
    assert last["errors"]["graders"][0]["train_invalid_variable_error_mean"] == 1.0


async def test_rft_continues_a_fine_tuned_model(client, backend, tmp_path):
    """SFT first, then RFT from that model: it starts far above chance (1/64 from the base model)."""
    items = tickets(generate_dataset("sft", 200, tmp_path / "t.jsonl", "--learnable"))
    sft_rows = [{"messages": prompt + [{"role": "assistant", "content": label}]} for prompt, label in items]
    sft = await train(client, backend, await upload(client, sft_rows))
    rft_path = generate_dataset("rft", 40, tmp_path / "r.jsonl", "--learnable", "--seed", "21")
    method = {"type": "reinforcement", "reinforcement": {"grader": EXACT}}
    job = await train(client, backend, await upload(client, rft_path), model=sft.fine_tuned_model, method=method)
    assert job.fine_tuned_model.startswith("ft:tunedeck-ngram:local::")
    assert mean([s["train_reward_mean"] for s in (await metrics(client, job.id))[:20]]) > 0.3


async def test_sft_continues_a_fine_tuned_model(client, backend, tmp_path):
    items = tickets(generate_dataset("sft", 120, tmp_path / "t.jsonl", "--learnable"))
    rows = [{"messages": prompt + [{"role": "assistant", "content": label}]} for prompt, label in items]
    first = await train(client, backend, await upload(client, rows[:60]))
    again = await train(client, backend, await upload(client, rows[60:]), model=first.fine_tuned_model)
    fresh = await train(client, backend, await upload(client, rows[60:]))
    assert again.fine_tuned_model.startswith("ft:tunedeck-ngram:local::") and again.model == first.fine_tuned_model
    continued, scratch = (await metrics(client, again.id))[:10], (await metrics(client, fresh.id))[:10]
    assert mean([s["train_loss"] for s in continued]) < mean([s["train_loss"] for s in scratch]) / 2


def test_scored_checkpoints_keep_the_best_three_and_the_newest():
    def snap(step: int, score: float | None) -> Snapshot:
        return Snapshot(step, 0, Path(f"step-{step}.npz"), {}, score)

    scored = [snap(10, 0.5), snap(20, 0.9), snap(30, 0.2), snap(40, 0.9), snap(50, 0.1)]
    assert [s.step for s in kept_snapshots(scored)] == [10, 20, 40, 50]
    assert [s.step for s in kept_snapshots(scored[:4])] == [10, 20, 40]
    epochs = [snap(step, None) for step in (1, 2, 3, 4)]
    assert [s.step for s in kept_snapshots(epochs)] == [2, 3, 4]
