"""The compute screen: the backend's devices, the job training on each, the jobs waiting;
it follows the jobs as they start and end, opens the job on a device, and says so when the
provider does not report its compute."""

from __future__ import annotations

from compute_support import FAKE_GPUS, GATE_MODEL, HeldTrainer, no_wait
from tui_support import make_app, poll, settle

from tunedeck.backend import LocalBackend
from tunedeck.backend.compute import Device
from tunedeck.backend.trainers.ngram.trainer import NgramTrainer
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.tui.screens.compute import ComputeScreen
from tunedeck.tui.screens.job import JobScreen
from tunedeck.tui.textshot import screen_text


async def held_jobs(app, backend, training, count: int) -> list[str]:
    """`count` jobs launched as the launch form does, each holding its device once placed."""
    ids = []
    for _ in range(count):
        request = LaunchRequest(training_path=training, model=GATE_MODEL, hyperparameters={"n_epochs": 1})
        ids.append((await app.service.launch(request)).id)
    for _ in range(12_000):  # the engine places them as the loop turns
        view = await app.service.compute()
        if sum(d.job is not None for d in view.devices) >= min(count, 2):
            return ids
        await no_wait(0)
    raise AssertionError(f"never placed: {view}")


async def test_the_compute_screen_shows_who_holds_each_device_and_follows_the_jobs(paths, tmp_path, sft_file):
    trainer = HeldTrainer([*FAKE_GPUS, Device("cpu", "CPU")])
    backend = LocalBackend(tmp_path / "backend", trainers=[NgramTrainer(), trainer], sleep=no_wait)
    backend.start()  # in a thread of its own, as the app's local backend runs
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        first, second, third = await held_jobs(app, backend, sft_file, 3)
        await poll(pilot)
        await pilot.press("w")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ComputeScreen) and screen.view is not None
        text = screen_text(app)
        assert "2 of 2 GPUs training" in text and "fake GPU 0" in text and "GPU (pretend)" in text
        holders = {d.id: d.job for d in screen.view.devices}
        assert holders == {"cuda:0": first, "cuda:1": second, "cpu": None}
        assert screen.view.waiting == [third] and "Waiting for a device: ftjob-" in text

        await app.service.cancel(first)  # the third job takes the freed GPU
        for _ in range(12_000):
            if third in {d.job for d in (await app.service.compute()).devices}:
                break
            await no_wait(0)
        loads = screen.loads
        await poll(pilot)  # the jobs moved: the screen asks again
        assert screen.loads > loads
        assert {d.id: d.job for d in screen.view.devices}["cuda:0"] == third
        assert "No job waits for a device." in screen_text(app)

        await pilot.press("enter")  # the job on the first device
        await settle(pilot)
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == third
        for job in (second, third):
            await app.service.cancel(job)
    backend.stop()


async def test_a_provider_that_does_not_report_its_compute_is_said_so(paths, tmp_path, monkeypatch):
    from tunedeck.core.service import Service, ServiceError

    async def not_reported(self):
        raise ServiceError("local: this provider does not report its devices (a tunedeck backend does)")

    monkeypatch.setattr(Service, "compute", not_reported)
    backend = LocalBackend(tmp_path / "backend", auto_advance=False)
    backend.start()
    app = make_app(paths, backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, ComputeScreen)
        assert "does not report its devices" in screen_text(app)
    backend.stop()


class ClusterTrainer(HeldTrainer):
    """Runs that a Ray cluster places: no device pool here; the cluster says where each
    running job's ranks are (two ranks, on two nodes)."""

    def __init__(self) -> None:
        super().__init__([])
        self.devices = None
        self.jobs: list[str] = []

    def start(self, spec):
        self.jobs.append(spec.job_id)
        return super().start(spec)

    def cluster_info(self):
        node = {"alive": True, "resources": {"GPU": 8, "CPU": 32}}
        ranks = [
            {"job": job, "rank": rank, "node_ip": f"10.0.0.{2 + rank}", "host": f"gpu-{rank}", "gpus": [str(index)]}
            for index, job in enumerate(self.jobs)
            for rank in (0, 1)
        ]
        nodes = [{**node, "node_ip": "10.0.0.2"}, {**node, "node_ip": "10.0.0.3"}]
        return {"ray_address": "ray://head:10001", "connected": True, "nodes": nodes, "jobs": ranks}


async def test_on_a_ray_cluster_the_screen_shows_each_jobs_ranks_and_their_nodes(paths, tmp_path, sft_file):
    trainer = ClusterTrainer()
    backend = LocalBackend(tmp_path / "backend", trainers=[NgramTrainer(), trainer], sleep=no_wait)
    backend.start()
    app = make_app(paths, backend)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        request = LaunchRequest(training_path=sft_file, model=GATE_MODEL, hyperparameters={"n_epochs": 1})
        job = (await app.service.launch(request)).id
        for _ in range(12_000):  # each turn a round trip to the backend, which starts the run in its own thread
            if any(d.job == job for d in (await app.service.compute()).devices):
                break
            await no_wait(0)
        assert trainer.jobs == [job]  # the run was told its job
        await poll(pilot)
        await pilot.press("w")
        await settle(pilot)
        text = screen_text(app)
        assert "Jobs run on the Ray cluster at ray://head:10001: 2 nodes, 16 GPUs, 64 CPUs; 1 job running" in text
        assert "10.0.0.2/cuda:0" in text and "gpu-0, rank 0" in text
        assert "10.0.0.3/cuda:0" in text and "gpu-1, rank 1" in text
        await pilot.press("down", "enter")  # the job's second rank
        await settle(pilot)
        assert isinstance(app.screen, JobScreen) and app.screen.job_id == job
        await app.service.cancel(job)
    backend.stop()
