"""The machine's training devices and which job holds each (server side, no torch).

A transformer run holds the devices it trains on from the moment it leaves `queued` until
it ends, pauses or fails: one job per free GPU at once, a job asking for N devices
(`tunedeck.devices`) waits until N are free, and jobs are served in the order they asked, so
a job waiting for two GPUs is not starved by a stream of one-GPU jobs behind it. The CPU is
one more device: where there is no GPU, runs take turns on it, as they always have.

GPUs are found without importing torch (the server never does): `nvidia-smi` lists NVIDIA
cards with their names and memory. `TUNEDECK_DEVICES` overrides what is found, for a
machine where a user wants fewer devices used, or for tests: a comma list of `cuda:N`
(`cuda:0,cuda:1`), or `fake:N` for N pretend GPUs that train on the CPU.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

CPU = "cpu"
DETECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # "cuda:0" (the physical index), or "cpu"
    name: str
    memory_bytes: int | None = None
    fake: bool = False  # a pretend GPU (`fake:N`): its runs train on the CPU

    @property
    def is_gpu(self) -> bool:
        return self.id != CPU

    @property
    def index(self) -> int | None:
        return int(self.id.split(":", 1)[1]) if self.is_gpu else None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "memory_bytes": self.memory_bytes, "fake": self.fake}


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """What a run asks for: `count` GPUs (any), or one named device (`cuda:1`, `cpu`)."""

    count: int = 1
    named: str | None = None


class PlacementError(Exception):
    """A request this machine can never meet (more GPUs than it has, a device it lacks)."""


def detect_devices(env: dict[str, str] | None = None) -> list[Device]:
    """The GPUs `TUNEDECK_DEVICES` names or `nvidia-smi` finds, then the CPU."""
    env = os.environ if env is None else env
    given = env.get("TUNEDECK_DEVICES", "").strip()
    if given:
        return [*_named_devices(given), Device(CPU, "CPU")]
    return [*_nvidia_devices(), Device(CPU, "CPU")]


def _named_devices(given: str) -> list[Device]:
    if given.startswith("fake:"):
        count = int(given.split(":", 1)[1])
        return [Device(f"cuda:{i}", f"fake GPU {i}", None, fake=True) for i in range(count)]
    devices = []
    for part in (p.strip() for p in given.split(",")):
        if part and part != CPU:
            if not part.startswith("cuda:") or not part[5:].isdigit():
                raise ValueError(f"TUNEDECK_DEVICES: {part!r} is not cuda:N, cpu or fake:N")
            devices.append(Device(part, f"GPU {part[5:]}"))
    return devices


def _nvidia_devices() -> list[Device]:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    query = [tool, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
    try:
        found = subprocess.run(query, capture_output=True, text=True, timeout=DETECT_TIMEOUT, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in found.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            memory = int(float(parts[2]) * 2**20) if parts[2].replace(".", "", 1).isdigit() else None
            devices.append(Device(f"cuda:{parts[0]}", parts[1], memory))
    return devices


def placement(devices: tuple[Device, ...]) -> tuple[dict[str, str], str | None]:
    """The worker's environment and device option for the devices the run was placed on:
    it sees only its own GPUs (as cuda:0...), and none when it trains on the CPU (or on a
    pretend GPU). No devices: nothing is set, the worker chooses."""
    if not devices:
        return {}, None
    gpus = [d for d in devices if d.is_gpu and not d.fake]
    if gpus:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(d.index) for d in gpus)}, "cuda"
    return {"CUDA_VISIBLE_DEVICES": ""}, "cpu"


def placed_message(devices: tuple[Device, ...]) -> str:
    where = ", ".join(f"{d.id} ({d.name})" if d.is_gpu else "the CPU" for d in devices)
    return f"Training on {where}"


class DevicePool:
    """The devices, who holds each, and who waits (first come, first served)."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = list(devices)
        self._holder: dict[str, str | None] = {d.id: None for d in self.devices}
        self._waiting: deque[tuple[str, DeviceRequest, asyncio.Future[list[Device]]]] = deque()

    @property
    def gpus(self) -> list[Device]:
        return [d for d in self.devices if d.is_gpu]

    def check(self, request: DeviceRequest) -> None:
        """Refuse a request no amount of waiting could meet."""
        if request.named is not None:
            if request.named not in self._holder:
                have = ", ".join(self._holder)
                raise PlacementError(f"this machine has no device {request.named!r} (it has: {have})")
            return
        gpus = self.gpus
        if gpus and request.count > len(gpus):
            listed = ", ".join(d.id for d in gpus)
            raise PlacementError(f"the job asks for {request.count} GPUs; this machine has {len(gpus)} ({listed})")

    @asynccontextmanager
    async def holding(self, job_id: str, request: DeviceRequest) -> AsyncIterator[list[Device]]:
        """Hold the devices `request` asks for while the block runs (waiting for them first)."""
        devices = await self.acquire(job_id, request)
        try:
            yield devices
        finally:
            self.release(job_id)

    async def acquire(self, job_id: str, request: DeviceRequest) -> list[Device]:
        self.check(request)
        future: asyncio.Future[list[Device]] = asyncio.get_running_loop().create_future()
        self._waiting.append((job_id, request, future))
        self._serve()
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(job_id, future)
            raise

    def release(self, job_id: str) -> None:
        for device, holder in self._holder.items():
            if holder == job_id:
                self._holder[device] = None
        self._serve()

    def holders(self) -> dict[str, str | None]:
        """Device id -> the job holding it (None: free)."""
        return dict(self._holder)

    def waiting(self) -> list[str]:
        return [job_id for job_id, _, _ in self._waiting]

    def snapshot(self) -> list[dict[str, Any]]:
        return [{**d.as_json(), "job": self._holder[d.id]} for d in self.devices]

    def _withdraw(self, job_id: str, future: asyncio.Future[list[Device]]) -> None:
        self._waiting = deque(w for w in self._waiting if w[2] is not future)
        if future.done() and not future.cancelled():  # granted as it was cancelled: give them back
            self.release(job_id)
        self._serve()

    def _serve(self) -> None:
        """Grant waiting requests in order. One that cannot be met yet keeps what it waits
        for from those behind it (a job waiting for two GPUs is not overtaken by one-GPU jobs),
        but not what it does not want: a CPU job does not wait behind GPU jobs."""
        waiting_for: set[str] = set()  # the devices (or "gpu": any GPU) earlier waiters wait for
        kept: deque[tuple[str, DeviceRequest, asyncio.Future[list[Device]]]] = deque()
        for job_id, request, future in self._waiting:
            if future.done():
                continue
            wants = self._wants(request)
            chosen = None if wants & waiting_for else self._free_for(request)
            if chosen is None:
                waiting_for |= wants
                kept.append((job_id, request, future))
                continue
            for device in chosen:
                self._holder[device.id] = job_id
            future.set_result(chosen)
        self._waiting = kept

    def _wants(self, request: DeviceRequest) -> set[str]:
        if request.named is not None:
            return {request.named, "gpu"} if request.named != CPU else {CPU}
        return {"gpu"} if self.gpus else {CPU}

    def _free_for(self, request: DeviceRequest) -> list[Device] | None:
        free = [d for d in self.devices if self._holder[d.id] is None]
        if request.named is not None:
            found = [d for d in free if d.id == request.named]
            return found or None
        gpus = [d for d in free if d.is_gpu]
        if self.gpus:
            return gpus[: request.count] if len(gpus) >= request.count else None
        cpu = [d for d in free if d.id == CPU]
        return cpu or None  # no GPU on this machine: runs take turns on the CPU
