"""A job survives a crash of the backend: it resumes from its latest resume point (saved every
few seconds of the backend's clock, here the test's fake clock), trains on the very batches
the uninterrupted run would have, and reports each step once.

The crash is what a SIGKILL leaves on disk: the data directory copied as it is between two
steps, with no graceful stop, and opened by a second backend."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend
from tunedeck.backend.jobs import resume_points
from tunedeck.backend.jobs.resume_points import latest_point, remove_points, usable_point, write_point
from tunedeck.backend.trainers.base import StepMetrics, TrainingRun

SFT = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 1}}}
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "eq"}  # fmt: skip
LATER = resume_points.MIN_SECONDS + 1  # moves the fake clock past the next resume point's time


async def upload(client, path: Path) -> str:
    return (await client.files.create(file=(path.name, path.read_bytes()), purpose="fine-tune")).id


async def events(client, job_id: str) -> list[Any]:
    """Oldest first, every page."""
    return list(reversed([e async for e in client.fine_tuning.jobs.list_events(job_id, limit=100)]))


async def metric_data(client, job_id: str) -> list[dict[str, Any]]:
    return [e.data for e in await events(client, job_id) if e.type == "metrics"]


async def messages(client, job_id: str) -> list[str]:
    return [e.message for e in await events(client, job_id)]


def points(data_dir: Path, job_id: str) -> list[str]:
    folder = data_dir / "models" / "paused" / job_id
    return sorted(p.name for p in folder.glob("*resume-step-*")) if folder.exists() else []


async def crash_and_restart(backend: LocalBackend, tmp_path: Path, clock) -> tuple[LocalBackend, openai.AsyncOpenAI]:
    """The data directory as a SIGKILL would leave it, served by a new backend."""
    copy = tmp_path / "after-crash"
    shutil.copytree(backend.data_dir, copy)
    second = LocalBackend(copy, auto_advance=False, clock=clock)
    return second, await sdk_for(second)


async def sdk_for(backend: LocalBackend) -> openai.AsyncOpenAI:
    base_url = await backend.start_async()
    return openai.AsyncOpenAI(base_url=base_url, api_key=backend.api_key, max_retries=0)  # the copy's own key


@pytest.fixture
def sft_data(tmp_path) -> Path:
    return generate_dataset("sft", 20, tmp_path / "sft.jsonl", "--learnable")


async def two_jobs(client, training: str, method: dict[str, Any], validation: str | None = None):
    """The same job twice: one to crash, one to run straight through for comparison."""
    made = []
    for _ in range(2):
        made.append(
            await client.fine_tuning.jobs.create(
                model=BUILTIN_BASE_MODEL, training_file=training, validation_file=validation, seed=7, method=method
            )
        )
    return made


async def test_a_crashed_job_resumes_from_its_checkpoint_and_reports_each_step_once(
    client, backend, clock, tmp_path, sft_data
):
    training = await upload(client, sft_data)
    job, straight = await two_jobs(client, training, SFT)
    await backend.run_until_async(straight.id, "succeeded")

    await backend.run_until_async(job.id, "running")
    clock.now += LATER
    await backend.advance_async(job.id, 7)  # a resume point at step 7...
    assert points(backend.data_dir, job.id) == ["resume-step-7"]
    await backend.advance_async(job.id, 5)  # ...and steps 8-12 reported after it
    assert [d["step"] for d in await metric_data(client, job.id)] == list(range(1, 13))

    second, client2 = await crash_and_restart(backend, tmp_path, clock)
    try:
        assert (await client2.fine_tuning.jobs.retrieve(job.id)).status == "queued"
        said = await messages(client2, job.id)
        assert (
            said[-1] == "The local backend restarted; job re-queued, training will resume from its checkpoint at step 7"
        )
        await second.run_until_settled_async()
        done = await client2.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error

        steps = [d["step"] for d in await metric_data(client2, job.id)]
        assert steps == list(range(1, 61))  # each step once, no gap: 8-12 were trained again silently
        said = await messages(client2, job.id)
        assert "Fine-tuning job resumed from step 7/60 after the local backend restarted; " \
               "training continues from step 8" in said  # fmt: skip
        assert said.count("Fine-tuning job started") == 1  # the restart resumed; it did not start over

        # The very run the uninterrupted job made: same batches, same losses, same model.
        reference = await client.fine_tuning.jobs.retrieve(straight.id)
        assert await metric_data(client2, job.id) == await metric_data(client, straight.id)
        assert done.trained_tokens == reference.trained_tokens  # billed once, not once per start
        csv = (await client2.files.content(done.result_files[0])).read()
        assert csv == (await client.files.content(reference.result_files[0])).read()
        checkpoints = (await client2.fine_tuning.jobs.checkpoints.list(job.id)).data
        assert sorted(c.step_number for c in checkpoints) == [20, 40, 60]
        assert points(second.data_dir, job.id) == []  # the resume point goes with the run
        question = [{"role": "user", "content": "ticket: my parcel never came"}]
        answers = [
            (await sdk.chat.completions.create(model=model, messages=question)).choices[0].message.content
            for sdk, model in ((client2, done.fine_tuned_model), (client, reference.fine_tuned_model))
        ]
        assert answers[0] == answers[1]
    finally:
        await client2.close()
        await second.stop_async()


async def test_a_crash_before_any_checkpoint_starts_over_without_reporting_steps_again(
    client, backend, clock, tmp_path, sft_data
):
    job, straight = await two_jobs(client, await upload(client, sft_data), SFT)
    await backend.run_until_async(straight.id, "succeeded")
    await backend.advance_async(job.id, 12)  # the clock never moves: no resume point yet
    assert points(backend.data_dir, job.id) == []

    second, client2 = await crash_and_restart(backend, tmp_path, clock)
    try:
        said = await messages(client2, job.id)
        assert said[-1] == "The local backend restarted; job re-queued, training will start again from step 1"
        await second.run_until_settled_async()
        assert (await client2.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        assert await metric_data(client2, job.id) == await metric_data(client, straight.id)
    finally:
        await client2.close()
        await second.stop_async()


async def test_only_the_latest_resume_point_is_kept_and_a_second_crash_resumes_from_it(
    client, backend, clock, tmp_path, sft_data
):
    job, straight = await two_jobs(client, await upload(client, sft_data), SFT)
    await backend.run_until_async(straight.id, "succeeded")
    for steps in (4, 9, 3):
        clock.now += LATER
        await backend.advance_async(job.id, steps)
    assert points(backend.data_dir, job.id) == ["resume-step-16"]
    await backend.advance_async(job.id, 2)

    second, client2 = await crash_and_restart(backend, tmp_path / "one", clock)
    try:
        await second.advance_async(job.id, 10)  # steps 17-18 again, silently, then 19-26
        clock.now += LATER
        await second.advance_async(job.id, 4)  # a new point at step 30
        assert points(second.data_dir, job.id) == ["resume-step-30"]
        await second.advance_async(job.id, 1)
        third, client3 = await crash_and_restart(second, tmp_path / "two", clock)
    finally:
        await client2.close()
        await second.stop_async()
    try:
        await third.run_until_settled_async()
        assert await metric_data(client3, job.id) == await metric_data(client, straight.id)
        resumed = [m for m in await messages(client3, job.id) if m.startswith("Fine-tuning job resumed from step")]
        assert [m.split(" after")[0] for m in resumed] == [
            "Fine-tuning job resumed from step 16/60", "Fine-tuning job resumed from step 30/60"
        ]  # fmt: skip
    finally:
        await client3.close()
        await third.stop_async()


@pytest.mark.parametrize("method", ["dpo", "reinforcement"])
async def test_dpo_and_rft_jobs_resume_exactly(client, backend, clock, tmp_path, method):
    if method == "dpo":
        training = await upload(client, generate_dataset("dpo", 30, tmp_path / "dpo.jsonl"))
        spec = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 2}}}
        validation = await upload(client, generate_dataset("dpo", 10, tmp_path / "dpo-valid.jsonl", "--seed", "3"))
    else:
        training = await upload(client, generate_dataset("rft", 24, tmp_path / "rft.jsonl", "--learnable"))
        validation = None  # the evaluation score then comes from training rewards the run must carry over
        spec = {"type": "reinforcement", "reinforcement": {"grader": EXACT, "hyperparameters": {
            "n_epochs": 2, "batch_size": 2, "eval_interval": 5}}}  # fmt: skip
    job, straight = await two_jobs(client, training, spec, validation)
    await backend.run_until_async(straight.id, "succeeded")
    await backend.run_until_async(job.id, "running")
    clock.now += LATER
    await backend.advance_async(job.id, 8)
    await backend.advance_async(job.id, 3)

    second, client2 = await crash_and_restart(backend, tmp_path, clock)
    try:
        await second.run_until_settled_async()
        assert (await client2.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        assert await metric_data(client2, job.id) == await metric_data(client, straight.id)
        kept = sorted(c.step_number for c in (await client2.fine_tuning.jobs.checkpoints.list(job.id)).data)
        assert kept == sorted(c.step_number for c in (await client.fine_tuning.jobs.checkpoints.list(straight.id)).data)
    finally:
        await client2.close()
        await second.stop_async()


async def test_an_unreadable_resume_point_starts_over_and_says_why(client, backend, clock, tmp_path, sft_data):
    job = (await two_jobs(client, await upload(client, sft_data), SFT))[0]
    await backend.run_until_async(job.id, "running")
    clock.now += LATER
    await backend.advance_async(job.id, 7)
    copy = tmp_path / "after-crash"
    shutil.copytree(backend.data_dir, copy)
    (copy / "models" / "paused" / job.id / "resume-step-7" / "run.npz").write_bytes(b"not a state")

    second = LocalBackend(copy, auto_advance=False, clock=clock)
    client2 = await sdk_for(second)
    try:
        await second.run_until_settled_async()
        assert (await client2.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        assert [d["step"] for d in await metric_data(client2, job.id)] == list(range(1, 61))
        warning = [e for e in await events(client2, job.id) if e.message.startswith("Could not resume")]
        assert len(warning) == 1 and warning[0].level == "warn"
        assert "checkpoint at step 7" in warning[0].message and "starts again from step 1" in warning[0].message
    finally:
        await client2.close()
        await second.stop_async()


async def test_a_cancelled_job_leaves_no_resume_point(client, backend, clock, sft_data):
    """(The fixture's own stop afterwards finds nothing left to stop.)"""
    job = (await two_jobs(client, await upload(client, sft_data), SFT))[0]
    await backend.run_until_async(job.id, "running")
    clock.now += LATER
    await backend.advance_async(job.id, 3)
    assert points(backend.data_dir, job.id) == ["resume-step-3"]
    await client.fine_tuning.jobs.cancel(job.id)
    await backend.stop_async()  # waits for the cancel's clean-up, a background chore
    assert points(backend.data_dir, job.id) == []


# -- the files themselves -----------------------------------------------------------------------


class StateOnly(TrainingRun):
    """A run whose state is a text file: enough to exercise how points are written."""

    total_steps, steps_per_epoch = 10, 10

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def step(self) -> StepMetrics:  # pragma: no cover - never trained here
        raise AssertionError

    def save(self, path: Path) -> None:  # pragma: no cover
        raise AssertionError

    def save_state(self, path: Path) -> None:
        if self.fail:
            path.write_text("half")
            raise OSError("disk full")
        path.write_text("state")


def test_a_point_is_published_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "paused" / "ftjob-x"
    folder.mkdir(parents=True)
    (folder / "step-2.npz").write_text("a published pause checkpoint")
    write_point(folder, StateOnly(), 3, {"total_steps": 10, "snapshots": []})
    with pytest.raises(OSError, match="disk full"):  # a crash mid-save: the previous point stays usable
        write_point(folder, StateOnly(fail=True), 5, {"total_steps": 10, "snapshots": []})
    point = latest_point(folder)
    assert point is not None and point.step == 3 and point.run_state.read_text() == "state"
    (folder / "resume-step-9").mkdir()  # renamed but unreadable (not one this backend wrote whole)
    assert latest_point(folder).step == 3

    write_point(folder, StateOnly(), 6, {"total_steps": 10, "snapshots": []})
    assert sorted(p.name for p in folder.iterdir()) == ["resume-step-6", "step-2.npz"]  # the latest point only
    assert usable_point(latest_point(folder), reported_through=6).step == 6
    assert usable_point(latest_point(folder), reported_through=5) is None  # ahead of the events: a lost write
    remove_points(folder)
    assert [p.name for p in folder.iterdir()] == ["step-2.npz"]  # pause checkpoints stay
