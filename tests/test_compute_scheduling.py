"""Placing training runs on a machine's devices: one job per free GPU at once, a job asking
for two waits for two (and the jobs behind it wait their turn), a job asking for more than
the machine has fails saying so, the CPU is a device of its own; `GET /v1/tunedeck/compute`
says who holds what. Pretend GPUs and a trainer whose steps wait until the job ends stand in
for real ones, so what the test sees is the engine's placement and nothing else."""

from __future__ import annotations

import asyncio

import openai
import pytest
from compute_support import FAKE_GPUS, GATE_MODEL, HeldTrainer, no_wait

from tunedeck.backend import LocalBackend
from tunedeck.backend.compute import Device, DevicePool, DeviceRequest, PlacementError, detect_devices
from tunedeck.backend.trainers.ngram.trainer import NgramTrainer


@pytest.fixture
async def placed(tmp_path, sft_file):
    trainer = HeldTrainer([*FAKE_GPUS, Device("cpu", "CPU")])
    backend = LocalBackend(tmp_path / "backend", trainers=[NgramTrainer(), trainer], sleep=no_wait)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    file = await client.files.create(file=sft_file, purpose="fine-tune")
    yield backend, client, trainer, file.id
    await client.close()
    await backend.stop_async()


async def compute(client) -> dict:
    return await client.get("/tunedeck/compute", cast_to=object)


async def until(client, check) -> dict:
    """The compute view once `check` holds of it (the engine moves as the loop turns; a busy
    machine may take a while, so the bound is generous)."""
    for _ in range(12_000):
        view = await compute(client)
        if check(view):
            return view
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached: {view}")


async def running(client, job_id: str) -> None:
    """Once the job's run has started (its devices are granted a moment before)."""
    for _ in range(12_000):
        if (await client.fine_tuning.jobs.retrieve(job_id)).status == "running":
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{job_id} never started")


def holders(view: dict) -> dict[str, str | None]:
    return {device["id"]: device["job"] for device in view["devices"]}


async def test_one_job_per_free_gpu_and_a_two_gpu_job_waits_for_two(placed):
    backend, client, trainer, training = placed

    async def create(seed: int, **options):
        return (await client.fine_tuning.jobs.create(
            model=GATE_MODEL, training_file=training, seed=seed, extra_body={"tunedeck": options} if options else None
        )).id  # fmt: skip

    first, second = await create(1), await create(2)
    view = await until(client, lambda v: set(holders(v).values()) >= {first, second})
    assert holders(view) == {"cuda:0": first, "cuda:1": second, "cpu": None}
    wide = await create(3, devices=2)
    behind = await create(4)
    view = await until(client, lambda v: v["waiting"] == [wide, behind])
    assert (await client.fine_tuning.jobs.retrieve(wide)).status == "queued"

    await client.fine_tuning.jobs.cancel(first)  # one GPU free: not enough for the two-GPU job,
    view = await until(client, lambda v: holders(v)["cuda:0"] is None)  # and the job behind it waits its turn
    assert view["waiting"] == [wide, behind] and holders(view)["cuda:1"] == second

    await client.fine_tuning.jobs.cancel(second)
    view = await until(client, lambda v: holders(v)["cuda:0"] == wide and holders(v)["cuda:1"] == wide)
    await running(client, wide)
    assert view["waiting"] == [behind] and trainer.placed["3"] == ("cuda:0", "cuda:1")
    events = [e.message async for e in client.fine_tuning.jobs.list_events(wide)]
    assert not any("Training on" in m for m in events)  # this trainer says nothing of where it ran

    on_cpu = await create(5, device="cpu")  # the CPU is a device of its own: it does not wait for a GPU
    view = await until(client, lambda v: holders(v)["cpu"] == on_cpu)
    await running(client, on_cpu)
    assert trainer.placed["5"] == ("cpu",)

    await client.fine_tuning.jobs.cancel(wide)
    view = await until(client, lambda v: behind in holders(v).values())
    await running(client, behind)
    assert view["waiting"] == [] and trainer.placed["4"] in (("cuda:0",), ("cuda:1",))
    for job in (behind, on_cpu):
        await client.fine_tuning.jobs.cancel(job)
    await until(client, lambda v: set(holders(v).values()) == {None})


async def test_a_job_asking_for_more_gpus_than_the_machine_has_fails_saying_so(placed):
    backend, client, _, training = placed
    job = await client.fine_tuning.jobs.create(model=GATE_MODEL, training_file=training, extra_body={"tunedeck": {"devices": 3}})
    for _ in range(12_000):
        found = await client.fine_tuning.jobs.retrieve(job.id)
        if found.status == "failed":
            break
        await asyncio.sleep(0.005)
    assert found.status == "failed" and found.error.param == "tunedeck.devices"
    assert "asks for 3 GPUs; this machine has 2 (cuda:0, cuda:1)" in found.error.message
    named = await client.fine_tuning.jobs.create(model=GATE_MODEL, training_file=training, extra_body={"tunedeck": {"device": "cuda:7"}})
    await backend.run_until_settled_async()
    refused = await client.fine_tuning.jobs.retrieve(named.id)
    assert refused.status == "failed" and "no device 'cuda:7'" in refused.error.message


async def test_a_waiting_job_that_is_cancelled_leaves_the_queue():
    pool = DevicePool([FAKE_GPUS[0], Device("cpu", "CPU")])
    held = await pool.acquire("a", DeviceRequest())
    waiter = asyncio.ensure_future(pool.acquire("b", DeviceRequest()))
    await asyncio.sleep(0)
    assert pool.waiting() == ["b"] and held == [FAKE_GPUS[0]]
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting() == []
    pool.release("a")
    assert pool.holders() == {"cuda:0": None, "cpu": None}
    with pytest.raises(PlacementError, match="asks for 2 GPUs; this machine has 1"):
        pool.check(DeviceRequest(count=2))


async def test_without_a_gpu_runs_take_turns_on_the_cpu():
    pool = DevicePool([Device("cpu", "CPU")])
    assert await pool.acquire("a", DeviceRequest(count=2)) == [Device("cpu", "CPU")]  # a GPU count means nothing here
    waiter = asyncio.ensure_future(pool.acquire("b", DeviceRequest()))
    await asyncio.sleep(0)
    assert not waiter.done()
    pool.release("a")
    assert await waiter == [Device("cpu", "CPU")]


def test_devices_are_found_or_named():
    assert [d.id for d in detect_devices({"TUNEDECK_DEVICES": "fake:3"})] == ["cuda:0", "cuda:1", "cuda:2", "cpu"]
    assert all(d.fake for d in detect_devices({"TUNEDECK_DEVICES": "fake:2"})[:2])
    assert [d.id for d in detect_devices({"TUNEDECK_DEVICES": "cuda:1,cuda:3"})] == ["cuda:1", "cuda:3", "cpu"]
    with pytest.raises(ValueError, match="'gpu0' is not cuda:N"):
        detect_devices({"TUNEDECK_DEVICES": "gpu0"})
    assert detect_devices({"PATH": ""})[-1].id == "cpu"  # no nvidia-smi: the CPU alone
