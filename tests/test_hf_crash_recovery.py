"""The transformer trainer after a crash: a LoRA job resumes from its resume point (adapter,
optimiser and random state saved by the worker), reports each step once, and trains on as
the uninterrupted run does. On CPU with the tiny test model; the crash is the data directory
copied between two steps, as a SIGKILL leaves it, and served by a second backend."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

import openai
from conftest import FakeClock, generate_dataset
from hf_support import TINY, dataset_texts, messages, metric_events, upload

from tunedeck.backend import LocalBackend
from tunedeck.backend.jobs import resume_points
from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model

LORA = {"tunedeck": {"training_type": "lora"}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-crash")
    training = generate_dataset("sft", 48, folder / "sft.jsonl", "--learnable")
    build_tiny_model(folder / "models" / TINY, dataset_texts(training))
    return training, folder / "models"


async def start(data_dir, models_dir, clock):
    backend = LocalBackend(data_dir, auto_advance=False, models_dirs=[models_dir], clock=clock)
    base_url = await backend.start_async()
    # The key the (copied) data directory holds, where the backend requires one.
    client = openai.AsyncOpenAI(base_url=base_url, api_key=getattr(backend, "api_key", None) or "any", max_retries=0)
    return backend, client


async def test_a_lora_job_resumes_after_a_crash_from_its_saved_adapter_and_optimiser(tmp_path, setup):
    training, models_dir = setup
    clock = FakeClock()
    first, client = await start(tmp_path / "backend", models_dir, clock)
    second = client2 = None
    try:
        file_id = await upload(client, training)
        hyper = {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 10}
        job, straight = [
            await client.fine_tuning.jobs.create(
                model=TINY, training_file=file_id, seed=5, hyperparameters=hyper, extra_body=LORA
            )
            for _ in range(2)
        ]
        await first.run_until_async(straight.id, "succeeded")
        await first.run_until_async(job.id, "running")
        clock.now += resume_points.MIN_SECONDS + 1
        await first.advance_async(job.id, 2)  # a resume point at step 2
        await first.advance_async(job.id, 2)  # steps 3-4 reported after it
        point = tmp_path / "backend" / "models" / "paused" / job.id / "resume-step-2"
        assert (point / "run" / "trainer_state.pt").is_file() and (point / "run" / "adapter_config.json").is_file()

        shutil.copytree(tmp_path / "backend", tmp_path / "after-crash")
        second, client2 = await start(tmp_path / "after-crash", models_dir, clock)
        await second.run_until_settled_async()
        done = await client2.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error

        resumed = await metric_events(client2, job.id)
        assert [m["step"] for m in resumed] == list(range(1, 7))  # each step once: 3-4 trained again silently
        said = await messages(client2, job.id)
        assert "Fine-tuning job resumed from step 2/6 after the local backend restarted; " \
               "training continues from step 3" in said  # fmt: skip
        # The steps trained after the restart are the uninterrupted run's (same batches, same state).
        reference = await metric_events(client, straight.id)
        assert len(reference) == 6
        for after, before in zip(resumed[4:], reference[4:]):
            assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-4)
        assert not (tmp_path / "after-crash" / "models" / "paused" / job.id).exists()  # the point went with the run
    finally:
        for sdk, backend in ((client2, second), (client, first)):
            if sdk is not None:
                await sdk.close()
            if backend is not None:
                await backend.stop_async()
