"""Data-parallel training of one job across the devices it holds (worker side), with
torch.distributed: NCCL between GPUs, gloo on the CPU.

The worker the server started is rank 0. It starts the other ranks itself (no `torchrun` for
the user to run): the same worker module, `--rank N`, each told the rendezvous address and
its rank through torch.distributed's usual environment variables, each on its own GPU
(`cuda:N` among the GPUs the job was given). They share the worker's process group, so when
the server ends the worker (a cancel, a pause, a crash) it ends every rank at once.

Every rank builds the same run: the same seed, the same starting weights and LoRA
initialisation, the same batches in the same order. At each step rank 0 tells the others
what to do (`broadcast_object_list`: a step, a save, or stop), each rank trains on its share
of the step's examples (`indices[rank::world]`), the loss is normalised by the step's trained
tokens across all ranks, and the gradients are summed across ranks before clipping and the
optimiser step. With a copy of the model on each rank that is one flattened `all_reduce`
(what DistributedDataParallel does; its wrapper is not used because the fused loss reaches
into the model's layers); with the model sharded (`sharding.py`, FSDP) the reduce-scatter of
the backward pass does it. So every rank takes the same step as a single process would on
the whole batch. Every rank scores its share of the validation examples and the sums are
added up; rank 0 alone reports metrics and writes checkpoints (a sharded model's ranks send
it their shards), so a pause or a crash-recovery checkpoint is one consistent state that any
number of ranks can resume from.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

WORKER_MODULE = "tunedeck.backend.trainers.transformer.worker.main"
RENDEZVOUS_TIMEOUT = timedelta(minutes=30)  # loading a large model on every rank takes a while
WATCH_SECONDS = 0.5
STOP_SECONDS = 30.0  # for a rank told to stop to leave the group and exit
T = TypeVar("T")


class Parallel:
    """This rank's place in the group, and the collectives a run needs."""

    def __init__(self, rank: int, world: int, local_rank: int) -> None:
        self.rank = rank
        self.world = world
        self.local_rank = local_rank  # this rank's GPU among those its process sees

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This rank's share of `items`."""
        return items[self.rank :: self.world]

    def share_command(self, command: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rank 0 sends `command`; every other rank receives it."""
        box = [command]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def sum_values(self, values: list[float], device: torch.device) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        summed = values.detach().clone()
        dist.all_reduce(summed)
        return summed

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum every trainable gradient across ranks, in one flattened buffer."""
        grads = []
        for parameter in parameters:
            if parameter.grad is None:  # a rank whose share trained nothing
                parameter.grad = torch.zeros_like(parameter)
            grads.append(parameter.grad)
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def world_size(spec: dict[str, Any]) -> int:
    return max(1, int(spec.get("world_size") or 1))


def start_ranks(
    spec: dict[str, Any], on_rank_lost: Callable[[str], None] | None = None
) -> tuple[Parallel, list[subprocess.Popen[str]]]:
    """Rank 0: start ranks 1..N-1 (they inherit the worker's log and process group), then join
    the group with them. `on_rank_lost(message)` is called, from a watching thread, when a rank
    ends while the run goes on (a failure loading its model, a GPU process killed for memory):
    rank 0 would otherwise wait for it at the next collective until the rendezvous times out."""
    world = world_size(spec)
    port = _free_port()
    children = []
    for rank in range(1, world):
        child = subprocess.Popen(
            [sys.executable, "-P", "-m", WORKER_MODULE, "--rank", str(rank)],
            stdin=subprocess.PIPE,
            stdout=sys.stderr,  # a rank's chatter goes to the worker's log, never into the protocol
            text=True,
            env={**os.environ, **_rank_env(rank, world, port)},
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(spec) + "\n")
        child.stdin.close()
        children.append(child)
    os.environ.update(_rank_env(0, world, port))
    if on_rank_lost is not None:
        threading.Thread(target=_watch, args=(children, on_rank_lost), name="tunedeck-ranks", daemon=True).start()
    return join(spec), children


def lost_rank(children: list[subprocess.Popen[str]]) -> str | None:
    """What became of a rank that ended before it was told to stop (it exits 0 only after rank
    0's stop), or None while every rank lives."""
    for rank, child in enumerate(children, 1):
        code = child.poll()
        if code is not None and code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            return f"The training process of rank {rank} (of {len(children) + 1}) {how}; see the worker log"
    return None


def end_ranks(children: list[subprocess.Popen[str]]) -> None:
    """Wait for ranks told to stop to exit (killing one that does not), so that when rank 0
    has exited every rank has: a pause that returns has freed every GPU."""
    for child in children:
        try:
            child.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _watch(children: list[subprocess.Popen[str]], on_rank_lost: Callable[[str], None]) -> None:
    while not all(child.poll() == 0 for child in children):
        lost = lost_rank(children)
        if lost is not None:
            on_rank_lost(lost)
            return
        time.sleep(WATCH_SECONDS)


def join(spec: dict[str, Any]) -> Parallel:
    """Join the group this process's environment names (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = str((spec.get("options") or {}).get("device") or "")
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=RENDEZVOUS_TIMEOUT)
    return Parallel(rank, world, local_rank)


def rank_spec(spec: dict[str, Any], local_rank: int) -> dict[str, Any]:
    """The spec as a rank runs it: its own GPU among those its process sees (the CPU stays the CPU)."""
    options = dict(spec.get("options") or {})
    device = str(options.get("device") or "")
    if device.startswith("cuda") or (not device and torch.cuda.is_available()):
        options["device"] = f"cuda:{local_rank}"
    return {**spec, "options": options}


def _rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
