"""Transformer jobs on a Ray cluster: a local Ray instance started here stands for the
cluster; the unmodified SDK drives a whole job there, with its events, checkpoints and
fine-tuned model as in a local run, and the events say which node it ran on. A cluster that
cannot be reached fails the job naming its address. Skipped without the `cluster` extra."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("transformers")

import openai  # noqa: E402
from hf_support import FULL, TINY, messages, metric_events, tiny_model_and_tickets, upload  # noqa: E402

from tunedeck.backend import LocalBackend  # noqa: E402
from tunedeck.core.compute import ComputeView  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray instance of two CPUs in this process, as `ray start --head` would make one."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    return folder, tiny_model_and_tickets(folder, 24)


async def start(tmp_path, models, address: str):
    backend = LocalBackend(tmp_path / "backend", auto_advance=False, models_dirs=[models], ray_address=address)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    return backend, client


async def test_a_job_runs_on_the_cluster_as_it_runs_here(cluster, files, tmp_path):
    folder, training = files
    backend, client = await start(tmp_path, folder / "models", cluster)
    try:
        job = await client.fine_tuning.jobs.create(
            model=TINY, training_file=await upload(client, training),
            hyperparameters={"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 100}, extra_body=FULL,
        )  # fmt: skip
        await backend.advance_async(job.id, 2)
        paused = await client.fine_tuning.jobs.pause(job.id)  # the actor ends; the resume places a new one
        assert paused.status == "paused"
        await client.fine_tuning.jobs.resume(job.id)
        await backend.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        metrics = await metric_events(client, job.id)
        assert [m["step"] for m in metrics] == list(range(1, 7))
        events = await messages(client, job.id)
        node = ray.util.get_node_ip_address()
        assert sum(f"Running on the Ray node {node}" in m for m in events) == 2  # the start and the resume
        checkpoints = [c async for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
        assert len(checkpoints) >= 2
        reply = await client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content is not None
        compute = await client.get("/tunedeck/compute", cast_to=object)
        assert compute["cluster"]["ray_address"] == cluster and compute["cluster"]["connected"] is True
        assert compute["devices"] == []  # Ray places the runs, not this machine's device pool
        view = ComputeView.from_json(compute)
        assert view.cluster.text.startswith(f"Jobs run on the Ray cluster at {cluster}: 1 node, 0 GPUs, 2 CPUs")
    finally:
        await client.close()
        await backend.stop_async()


@pytest.mark.parametrize("sharding", ["replicate", "shard"])
async def test_a_job_on_two_devices_trains_as_two_placed_actors(cluster, files, tmp_path, sharding):
    """One actor per rank, placed by a placement group: they meet at rank 0's node and train
    as one process does (no GPU in this cluster: each rank has a CPU, as on a machine without GPUs)."""
    folder, training = files
    backend, client = await start(tmp_path, folder / "models", cluster)
    try:
        file = await upload(client, training)
        losses = []
        for devices in (1, 2):
            job = await client.fine_tuning.jobs.create(
                model=TINY, training_file=file, seed=4, hyperparameters={"n_epochs": 1, "batch_size": 8},
                extra_body={"tunedeck": {"training_type": "full", "devices": devices,
                                         **({"sharding": sharding} if devices > 1 else {})}},
            )  # fmt: skip
            await backend.run_until_settled_async()
            done = await client.fine_tuning.jobs.retrieve(job.id)
            assert done.status == "succeeded", done.error
            losses.append([m["train_loss"] for m in await metric_events(client, job.id)])
        assert losses[1] == pytest.approx(losses[0], rel=1e-4)
        events = await messages(client, job.id)
        assert any("Training on 2 devices in parallel" in m for m in events)
        node = ray.util.get_node_ip_address()
        assert any(m.startswith(f"Running on the Ray node {node} (") and "ranks 0, 1)" in m for m in events)
        assert ray.util.placement_group_table() and all(
            group["state"] == "REMOVED" for group in ray.util.placement_group_table().values()
        )  # the job's ranks gave their places back
    finally:
        await client.close()
        await backend.stop_async()


async def test_a_rank_actor_that_dies_fails_the_job_naming_it_and_its_node(cluster, files, tmp_path):
    folder, training = files
    backend, client = await start(tmp_path, folder / "models", cluster)
    try:
        job = await client.fine_tuning.jobs.create(
            model=TINY, training_file=await upload(client, training), hyperparameters={"n_epochs": 2, "batch_size": 8},
            extra_body={"tunedeck": {"training_type": "full", "devices": 2}},
        )  # fmt: skip
        await backend.advance_async(job.id, 1)
        node = ray.util.get_node_ip_address()
        view = ComputeView.from_json(await client.get("/tunedeck/compute", cast_to=object))
        assert [(d.id, d.job) for d in view.devices] == [(f"{node}/cpu:0", job.id), (f"{node}/cpu:1", job.id)]
        assert view.cluster.text.endswith("; 1 job running")
        ray.kill(backend._engine._active[job.id].run._worker._all[1])  # as a node lost or a process killed
        await backend.run_until_settled_async()
        failed = await client.fine_tuning.jobs.retrieve(job.id)
        assert failed.status == "failed"
        node = ray.util.get_node_ip_address()
        assert f"The training process of rank 1 (of 2) on the Ray node {node} failed" in failed.error.message
        assert ComputeView.from_json(await client.get("/tunedeck/compute", cast_to=object)).devices == []
    finally:
        await client.close()
        await backend.stop_async()


async def test_an_unreachable_cluster_fails_the_job_naming_its_address(files, tmp_path):
    folder, training = files
    backend, client = await start(tmp_path, folder / "models", "127.0.0.1:9")
    try:
        job = await client.fine_tuning.jobs.create(model=TINY, training_file=await upload(client, training), extra_body=FULL)
        await backend.run_until_settled_async()
        failed = await client.fine_tuning.jobs.retrieve(job.id)
        assert failed.status == "failed" and failed.error.code == "cluster_unreachable"
        assert "Cannot reach the Ray cluster at 127.0.0.1:9" in failed.error.message
    finally:
        await client.close()
        await backend.stop_async()
