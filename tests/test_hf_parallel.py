"""One job on several devices: two processes (torch.distributed, gloo on the CPU) train the
tiny model along the same loss trajectory as one process on the same global batch, through
a pause and a resume, with a copy of the model on each rank or the model sharded across them
(FSDP), and validate to the same figures, for SFT and DPO; RFT samples each rank's share of
the prompts (a copy of the model on each); a cancel ends every rank."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from conftest import generate_dataset  # noqa: E402
from hf_support import TINY, messages, metric_events, start, tiny_model_and_tickets, upload  # noqa: E402

HYPER = {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 100}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    training = tiny_model_and_tickets(folder, 40)
    return folder, training, generate_dataset("sft", 11, folder / "valid.jsonl", "--learnable", "--seed", "3")


@pytest.fixture
async def local(tmp_path, files):
    backend, client = await start(tmp_path, files[0] / "models")
    yield backend, client, await upload(client, files[1])
    await client.close()
    await backend.stop_async()


async def create(client, training: str, devices: int, method: dict | None = None, validation: str | None = None,
                 hyper: dict | None = None, **options):  # fmt: skip
    options = {"training_type": "full", "devices": devices, **options}
    return await client.fine_tuning.jobs.create(
        model=TINY, training_file=training, validation_file=validation, seed=5,
        hyperparameters=None if method else (hyper or HYPER), method=method, extra_body={"tunedeck": options},
    )  # fmt: skip


async def alone_then_paired(local, training: str, pause_after: int, paired: dict | None = None, **job):
    """The metric events of a job trained by one process, then by two (with `paired` options
    too) through a pause after `pause_after` steps; both must succeed."""
    backend, client, _ = local
    runs = []
    for devices in (1, 2):
        created = await create(client, training, devices, **job, **((paired or {}) if devices > 1 else {}))
        if devices > 1:
            await backend.advance_async(created.id, pause_after)
            await client.fine_tuning.jobs.pause(created.id)
            await client.fine_tuning.jobs.resume(created.id)
        await backend.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(created.id)
        assert done.status == "succeeded", done.error
        runs.append(await metric_events(client, created.id))
    return runs


VALIDATION_METRICS = ("valid_loss", "valid_mean_token_accuracy", "full_valid_loss", "full_valid_mean_token_accuracy")


def series(metrics: list[dict], name: str) -> list[float]:
    return [m[name] for m in metrics if m.get(name) is not None]


def rank_processes() -> list[int]:
    """Processes running a worker's extra rank (`--rank N`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--rank" in command and any(b"transformer.worker.main" in part for part in command):
                found.append(int(entry.name))
    return found


async def test_two_processes_train_as_one_does_through_a_pause(local):
    backend, client, training = local
    alone = await create(client, training, 1)
    await backend.run_until_settled_async()
    expected = [m["train_loss"] for m in await metric_events(client, alone.id)]

    pair = await create(client, training, 2)
    await backend.advance_async(pair.id, 4)
    assert len(rank_processes()) == 1  # rank 0 is the worker; it started rank 1
    await client.fine_tuning.jobs.pause(pair.id)
    assert rank_processes() == []  # the pause ended both ranks
    await client.fine_tuning.jobs.resume(pair.id)
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(pair.id)
    assert done.status == "succeeded", done.error
    metrics = await metric_events(client, pair.id)
    assert [m["step"] for m in metrics] == list(range(1, len(expected) + 1))
    assert [m["train_loss"] for m in metrics] == pytest.approx(expected, rel=1e-4)
    assert sum("full_valid_loss" in m for m in metrics) == 0  # no validation file: none, as alone
    events = await messages(client, pair.id)
    assert sum("Training on 2 devices in parallel" in m for m in events) == 2  # at the start and at the resume
    reply = await client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None


async def test_cancel_ends_every_rank(local):
    backend, client, training = local
    job = await create(client, training, 2)
    await backend.advance_async(job.id, 2)
    pid = backend._engine._active[job.id].run.pid
    assert len(rank_processes()) == 1
    await client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert rank_processes() == []


async def test_rft_on_two_processes_samples_and_evaluates_every_prompt(local, files):
    """Each rank samples and grades its share of the prompts; the metrics are over all of them:
    with a grader that scores each prompt's reference label alone (so every answer to a prompt
    earns the same), each step's and each evaluation's mean equals one process's, through a pause."""
    client = local[1]
    rft = await upload(client, generate_dataset("rft", 10, files[0] / "rft.jsonl", "--learnable"))
    valid = await upload(client, generate_dataset("rft", 7, files[0] / "rft-valid.jsonl", "--learnable", "--seed", "9"))
    grader = {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
              "input": "{{item.reference_answer}}", "reference": "account"}  # fmt: skip
    hyper = {"n_epochs": 1, "batch_size": 3, "eval_interval": 2}
    method = {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": hyper}}
    alone, pair = await alone_then_paired(local, rft, 1, method=method, validation=valid, max_completion_tokens=6)
    assert [m["step"] for m in pair] == [m["step"] for m in alone] == [1, 2, 3, 4]
    rewards = series(alone, "train_reward_mean")
    assert len(set(rewards)) > 1  # the steps' prompts differ, and so do their means
    assert series(pair, "train_reward_mean") == pytest.approx(rewards, abs=1e-9)
    evaluations = series(alone, "valid_reward_mean")
    assert len(evaluations) == 2 and 0 < evaluations[0] < 1
    assert series(pair, "valid_reward_mean") == pytest.approx(evaluations, abs=1e-9)


async def test_rft_is_not_sharded_and_says_so(local, files):
    backend, client, _ = local
    rft = await upload(client, generate_dataset("rft", 10, files[0] / "rft-shard.jsonl", "--learnable"))
    grader = {"type": "string_check", "name": "label", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "billing"}  # fmt: skip
    method = {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {"n_epochs": 1}}}
    job = await create(client, rft, 2, method=method, sharding="shard")
    await backend.run_until_settled_async()
    failed = await client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed" and failed.error.param == "tunedeck.sharding"
    assert "RFT samples answers with a copy of the model on each device" in failed.error.message
    assert rank_processes() == []


DPO_METRICS = ("loss", "mean_token_accuracy", "mean_reward_margin", "reward_accuracy")


@pytest.mark.parametrize("sharding", ["replicate", "shard"])
async def test_dpo_on_two_processes_trains_and_validates_as_one_does(local, files, sharding):
    """Reference values, the loss and every metric: each rank scores its share of the pairs."""
    client = local[1]
    training = await upload(client, generate_dataset("dpo", 18, files[0] / "dpo.jsonl"))
    validation = await upload(client, generate_dataset("dpo", 7, files[0] / "dpo-valid.jsonl", "--seed", "4"))
    method = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 50}}}
    # through a pause: the reference values come back with the state
    alone, pair = await alone_then_paired(
        local, training, 2, {"sharding": sharding}, method=method, validation=validation
    )
    assert [m["step"] for m in pair] == [m["step"] for m in alone] == list(range(1, 9))
    for prefix in ("train_", "valid_", "full_valid_"):
        for name in DPO_METRICS:
            expected = series(alone, prefix + name)
            assert expected, prefix + name
            assert series(pair, prefix + name) == pytest.approx(expected, rel=1e-4, abs=1e-6), prefix + name


async def test_lora_adapters_train_in_parallel_as_alone(local):
    backend, client, training = local
    losses = []
    for devices in (1, 2):
        job = await client.fine_tuning.jobs.create(
            model=TINY, training_file=training, seed=9, hyperparameters={"n_epochs": 1, "batch_size": 6},
            extra_body={"tunedeck": {"training_type": "lora", "devices": devices}},
        )  # fmt: skip
        await backend.run_until_settled_async()
        assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        losses.append([m["train_loss"] for m in await metric_events(client, job.id)])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


async def test_a_rank_that_dies_fails_the_job_saying_which(local):
    import signal

    backend, client, training = local
    job = await create(client, training, 2)
    await backend.advance_async(job.id, 1)
    (lost,) = rank_processes()
    os.kill(lost, signal.SIGKILL)  # as the kernel kills a process that ran out of memory
    await backend.run_until_settled_async()
    failed = await client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed"
    assert "rank 1 (of 2) was killed by signal 9" in failed.error.message
    assert rank_processes() == []


@pytest.mark.parametrize("sharding", ["shard", "replicate"])
async def test_two_processes_validate_and_pause_as_one_does(local, files, sharding):
    """Sharded (FSDP) or a copy on each rank: the same training and validation figures as one
    process, through a pause; every rank scores its share of the validation file."""
    backend, client, training = local
    validation = await upload(client, files[2])
    alone = await create(client, training, 1, validation=validation)
    await backend.run_until_settled_async()
    expected = await metric_events(client, alone.id)

    pair = await create(client, training, 2, validation=validation, sharding=sharding)
    await backend.advance_async(pair.id, 3)
    await client.fine_tuning.jobs.pause(pair.id)
    assert rank_processes() == []
    await client.fine_tuning.jobs.resume(pair.id)
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(pair.id)
    assert done.status == "succeeded", done.error
    metrics = await metric_events(client, pair.id)
    for name in ("train_loss", *VALIDATION_METRICS):
        assert series(metrics, name) == pytest.approx(series(expected, name), rel=1e-4), name
    assert len(series(metrics, "full_valid_loss")) == HYPER["n_epochs"]
    held = "the model sharded across them (FSDP)" if sharding == "shard" else "a copy of the model on each"
    assert sum(held in m for m in await messages(client, pair.id)) == 2  # at the start and at the resume
    reply = await client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content is not None


async def test_a_sharded_step_smaller_than_the_ranks_trains_as_one_process(local):
    """Batches of one example: each step, one rank has nothing of its own and runs FSDP's
    collectives on a stand-in at weight zero; the trajectory is still one process's."""
    backend, client, training = local
    hyper = {"n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 20}
    losses = []
    for devices, sharding in ((1, "auto"), (2, "shard")):
        job = await create(client, training, devices, hyper=hyper, sharding=sharding)
        await backend.run_until_settled_async()
        assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        losses.append(series(await metric_events(client, job.id), "train_loss"))
    assert len(losses[1]) == 40
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


async def test_sharding_lora_is_refused_naming_the_option(local):
    backend, client, training = local
    job = await create(client, training, 2, training_type="lora", sharding="shard")
    await backend.run_until_settled_async()
    failed = await client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed" and failed.error.param == "tunedeck.sharding"
    assert "Sharding is for whole-model training" in failed.error.message
    assert rank_processes() == []
