"""Pause and resume on the local backend: a checkpoint at the pause step, training that
carries on exactly where it stopped, honest restarts, and clear errors in wrong states."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend


def rows(n: int) -> bytes:
    cues = {"billing": "invoice", "shipping": "parcel", "account": "password"}
    lines = []
    for i in range(n):
        label = list(cues)[i % 3]
        messages = [{"role": "user", "content": f"ticket {i} my {cues[label]} please"},
                    {"role": "assistant", "content": label}]  # fmt: skip
        lines.append(json.dumps({"messages": messages}) + "\n")
    return "".join(lines).encode()


async def create_job(client, n: int = 20, **kwargs: Any):
    file = await client.files.create(file=("t.jsonl", rows(n)), purpose="fine-tune")
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": 1}}}
    return await client.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file.id, seed=11, method=method, **kwargs
    )


async def events(client, job_id: str) -> list[Any]:
    """Oldest first."""
    return list(reversed((await client.fine_tuning.jobs.list_events(job_id, limit=1000)).data))


async def metric_steps(client, job_id: str) -> list[int]:
    return [e.data["step"] for e in await events(client, job_id) if e.type == "metrics"]


async def test_pause_checkpoints_and_resume_carries_on_from_the_next_step(client, backend):
    job = await create_job(client)
    await backend.advance_async(job.id, 7)
    paused = await client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused" and paused.estimated_finish is None

    checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert [c.step_number for c in checkpoints] == [7]
    name = checkpoints[0].fine_tuned_model_checkpoint
    assert name.startswith(f"ft:{BUILTIN_BASE_MODEL}:local::") and name.endswith(":ckpt-step-7")
    assert (await client.models.retrieve(name)).id == name
    messages = [e.message for e in await events(client, job.id)]
    assert messages[-2:] == [
        f"Checkpoint created at step 7 with Snapshot ID: {name}",
        "Fine-tuning job paused at step 7/60",
    ]

    await backend.advance_async(job.id, 5)  # a paused job does not train
    await backend.run_until_settled_async()  # ...and does not keep run_until_settled waiting
    assert await metric_steps(client, job.id) == list(range(1, 8))

    resumed = await client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    assert (await backend.advance_async(job.id, 1))["status"] == "running"
    await backend.run_until_settled_async()
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and name.startswith(done.fine_tuned_model + ":")
    assert await metric_steps(client, job.id) == list(range(1, 61))
    messages = [e.message for e in await events(client, job.id)]
    assert "Fine-tuning job resumed, moving job to queued state; training continues from step 8" in messages
    assert "Fine-tuning job continued from step 8/60" in messages
    listed = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    assert [c.step_number for c in listed] == [60, 40, 20, 7]  # newest step first, the pause's among them
    first = await client.fine_tuning.jobs.checkpoints.list(job.id, limit=2)
    assert [c.step_number for c in first.data] == [60, 40] and first.has_more
    rest = await client.fine_tuning.jobs.checkpoints.list(job.id, limit=2, after=first.data[-1].id)
    assert [c.step_number for c in rest.data] == [20, 7] and not rest.has_more


async def test_checkpoints_list_newest_step_first_after_a_pause_between_epochs(client, backend):
    job = await create_job(client)
    await backend.advance_async(job.id, 27)  # past the first epoch's checkpoint (step 20)
    await client.fine_tuning.jobs.pause(job.id)
    await client.fine_tuning.jobs.resume(job.id)
    await backend.run_until_settled_async()
    listed = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    # The pause's checkpoint was written first, the epochs' at the end: listed by step all the same.
    assert [c.step_number for c in listed] == [60, 40, 27, 20]


async def test_a_paused_and_resumed_run_trains_exactly_like_an_uninterrupted_one(client, backend):
    straight, interrupted = await create_job(client), await create_job(client)
    await backend.run_until_async(straight.id, "succeeded")
    await backend.advance_async(interrupted.id, 13)
    await client.fine_tuning.jobs.pause(interrupted.id)
    await client.fine_tuning.jobs.resume(interrupted.id)
    await backend.run_until_settled_async()
    losses = []
    for job in (straight, interrupted):
        losses.append([e.data["train_loss"] for e in await events(client, job.id) if e.type == "metrics"])
    assert losses[0] == losses[1]


async def test_wrong_states_are_clear_400s(client, backend):
    job = await create_job(client)
    for call, words in (
        (client.fine_tuning.jobs.pause(job.id), "is validating_files; only a running job can be paused"),
        (client.fine_tuning.jobs.resume(job.id), "is validating_files; only a paused job can be resumed"),
    ):
        with pytest.raises(openai.BadRequestError) as info:
            await call
        assert words in info.value.message and info.value.type == "invalid_request_error"
    await backend.advance_async(job.id, 2)
    with pytest.raises(openai.BadRequestError, match="only a paused job can be resumed"):
        await client.fine_tuning.jobs.resume(job.id)
    await client.fine_tuning.jobs.pause(job.id)
    with pytest.raises(openai.BadRequestError, match="is paused; only a running job can be paused"):
        await client.fine_tuning.jobs.pause(job.id)
    await backend.run_until_settled_async()
    await client.fine_tuning.jobs.resume(job.id)
    await backend.run_until_settled_async()
    for call in (client.fine_tuning.jobs.pause(job.id), client.fine_tuning.jobs.resume(job.id),
                 client.fine_tuning.jobs.cancel(job.id)):  # fmt: skip
        with pytest.raises(openai.BadRequestError, match="already succeeded"):
            await call
    with pytest.raises(openai.NotFoundError):
        await client.fine_tuning.jobs.pause("ftjob-nope")


async def test_a_paused_job_can_be_cancelled_and_its_checkpoint_stays_usable(client, backend):
    job = await create_job(client)
    await backend.advance_async(job.id, 4)
    await client.fine_tuning.jobs.pause(job.id)
    cancelled = await client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    await backend.run_until_settled_async()
    checkpoint = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data[0]
    assert (await client.models.retrieve(checkpoint.fine_tuned_model_checkpoint)).id.endswith(":ckpt-step-4")
    weights = list((backend.data_dir / "models" / "paused" / job.id).glob("step-4.npz"))
    assert len(weights) == 1
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        await client.fine_tuning.jobs.resume(job.id)


async def test_pausing_before_the_first_step_takes_no_checkpoint(client, backend):
    job = await create_job(client)
    assert (await backend.run_until_async(job.id, "running"))["status"] == "running"
    await client.fine_tuning.jobs.pause(job.id)
    assert (await client.fine_tuning.jobs.checkpoints.list(job.id)).data == []
    assert "no checkpoint was needed" in (await events(client, job.id))[-1].message


async def restart_while_paused(tmp_path, *, lose_resume_point: bool):
    first = LocalBackend(tmp_path / "b", auto_advance=False)
    client = openai.AsyncOpenAI(base_url=await first.start_async(), api_key=first.api_key, max_retries=0)
    job = await create_job(client)
    await first.advance_async(job.id, 9)
    await client.fine_tuning.jobs.pause(job.id)
    await client.close()
    await first.stop_async()
    if lose_resume_point:
        for point in (tmp_path / "b" / "models" / "paused" / job.id).glob("resume-step-*"):
            shutil.rmtree(point)

    second = LocalBackend(tmp_path / "b", auto_advance=False)
    client = openai.AsyncOpenAI(base_url=await second.start_async(), api_key=second.api_key, max_retries=0)
    try:
        assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "paused"
        await second.run_until_settled_async()  # a paused job waits, even across restarts
        await client.fine_tuning.jobs.resume(job.id)
        message = (await events(client, job.id))[-1].message
        await second.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded"
        assert await metric_steps(client, job.id) == list(range(1, 61))  # each step reported once
        checkpoints = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
        assert [c.step_number for c in checkpoints] == [60, 40, 20, 9]
        return message, [e.message for e in await events(client, job.id)]
    finally:
        await client.close()
        await second.stop_async()


async def test_a_restart_while_paused_continues_from_the_pause_step(tmp_path):
    message, messages = await restart_while_paused(tmp_path, lose_resume_point=False)
    assert "restarted while the job was paused" in message and "continues from its checkpoint at step 9" in message
    assert "Fine-tuning job resumed from step 9/60 after the local backend restarted; " \
        "training continues from step 10" in messages  # fmt: skip


async def test_a_restart_while_paused_without_its_resume_point_starts_over_honestly(tmp_path):
    message, _ = await restart_while_paused(tmp_path, lose_resume_point=True)
    assert "restarted while the job was paused" in message and "starts again from step 1" in message


class SleepGate:
    """Auto mode's `sleep`, opened by the test one wait at a time: the automatic driver
    runs for real, but time moves only when the test says so."""

    def __init__(self) -> None:
        self._waiting: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        opened = asyncio.get_running_loop().create_future()
        await self._waiting.put(opened)
        await opened

    async def open_one(self) -> None:
        (await self._waiting.get()).set_result(None)

    async def open_all(self) -> None:
        while True:
            await self.open_one()


async def open_until_status(gate: SleepGate, client, job_id: str, status: str) -> None:
    while (await client.fine_tuning.jobs.retrieve(job_id)).status != status:
        await gate.open_one()


async def test_pause_and_resume_in_automatic_time(tmp_path):
    gate = SleepGate()
    backend = LocalBackend(tmp_path / "b", step_delay=0.002, sleep=gate.sleep)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    opener = None
    try:
        job = await create_job(client, n=100)  # 300 steps
        await open_until_status(gate, client, job.id, "running")
        for _ in range(5):
            await gate.open_one()  # five more training steps, then the driver waits again
        paused = await client.fine_tuning.jobs.pause(job.id)
        assert paused.status == "paused"
        opener = asyncio.ensure_future(gate.open_all())
        await backend.run_until_settled_async()  # returns: a paused job waits for resume
        steps_at_pause = await metric_steps(client, job.id)
        assert steps_at_pause == list(range(1, len(steps_at_pause) + 1)) and len(steps_at_pause) >= 5
        await client.fine_tuning.jobs.resume(job.id)
        await backend.run_until_settled_async()
        assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
        assert await metric_steps(client, job.id) == list(range(1, 301))
    finally:
        if opener is not None:
            opener.cancel()
        await client.close()
        await backend.stop_async()
