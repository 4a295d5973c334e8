"""A trainer whose runs hold their devices until their job is cancelled, and pretend GPUs:
what tests of device placement (the engine, the compute endpoint, the compute screen) use,
so that what they see is placement and nothing else."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from tunedeck.backend.compute import Device, DevicePool, DeviceRequest
from tunedeck.backend.trainers.base import StepMetrics, Trainer, TrainingRun, TrainingSpec

GATE_MODEL = "acme/gate"
FAKE_GPUS = [Device("cuda:0", "fake GPU 0", fake=True), Device("cuda:1", "fake GPU 1", fake=True)]


class HeldRun(TrainingRun):
    """A run whose every step waits until the job is cancelled: it holds its devices until then."""

    total_steps = steps_per_epoch = 1_000_000

    def __init__(self) -> None:
        self.ended = threading.Event()

    def step(self) -> StepMetrics:
        self.ended.wait()
        return StepMetrics(step=1, total_steps=self.total_steps, train_loss=1.0, train_mean_token_accuracy=0.0)

    def save(self, path: Path) -> None:
        path.write_text("weights")

    def close(self) -> None:
        self.ended.set()


class HeldTrainer(Trainer):
    paced = False

    def __init__(self, devices: list[Device]) -> None:
        self.devices = DevicePool(devices)
        self.placed: dict[str, tuple[str, ...]] = {}  # the job's seed -> the devices its run got

    def base_models(self) -> list[str]:
        return [GATE_MODEL]

    def supports(self, method: str) -> bool:
        return method == "supervised"

    def device_request(self, options):
        if options.device is not None:
            return DeviceRequest(named=options.device)
        return DeviceRequest(count=options.devices)

    def start(self, spec: TrainingSpec) -> TrainingRun:
        self.placed[str(spec.seed)] = tuple(d.id for d in spec.devices)
        return HeldRun()


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)
