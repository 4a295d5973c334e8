"""Transformer runs on a Ray cluster (server side): the job engine drives them exactly as it
drives a worker process on this machine; Ray decides where they run.

`RayCluster` joins the cluster named by the backend's `ray_address` (`auto`, `host:port`, or
`ray://host:port` through Ray Client) on first use. A run on one device is an actor
(`worker/ray_actor.py`) asking Ray for a GPU (none for `device: cpu` or a cluster without
GPUs). A run on several (`tunedeck.devices`) is one actor per rank, placed together by a Ray
placement group of one GPU per rank, packed onto as few nodes as the cluster allows, so a job
spans machines when no node has enough free GPUs: the ranks form one torch.distributed group
(NCCL) across them, and the ranks on one node see each other's GPUs, as NCCL's fast paths
need. A job waits in `queued` until Ray has placed it; a job that asks for more GPUs than the
whole cluster has fails at once; a rank that dies fails the job naming it and its node. The
job's events say where it ran. Ray is an optional extra (`pip install 'tunedeck[cluster]'`);
without `ray_address` nothing here is imported.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from tunedeck.backend.trainers.base import TrainingFailure

from .process import WorkerGone, protocol_reply

PROBE_SECONDS = 3.0
STOP_SECONDS = 30.0
INSTALL = "pip install 'tunedeck[cluster]'"


class RayCluster:
    def __init__(self, address: str, max_jobs: int = 16) -> None:
        self.address = address
        self.max_jobs = max_jobs
        self._lock = threading.Lock()
        self._ray: Any = None
        self._placed: dict[str, list[dict[str, Any]]] = {}  # job id -> where each of its ranks runs

    def ray(self) -> Any:
        """The `ray` module, connected to the cluster (once); a clear failure when it cannot be."""
        with self._lock:
            if self._ray is not None:
                return self._ray
            try:
                import ray
            except ImportError:
                raise TrainingFailure("trainer_not_installed", f"ray_address is set but Ray is not installed: {INSTALL}") from None
            self._probe()
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, namespace="tunedeck", log_to_driver=False, include_dashboard=False)
                except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError...
                    raise self._unreachable(f"{type(exc).__name__}: {exc}") from None
            self._ray = ray
            return ray

    def _probe(self) -> None:
        """A TCP connection to an explicit address first: Ray itself retries an unreachable
        one for minutes."""
        target = self.address.removeprefix("ray://")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            return  # `auto`: Ray finds the cluster this machine belongs to
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
        except OSError as exc:
            raise self._unreachable(str(exc)) from None

    def _unreachable(self, why: str) -> TrainingFailure:
        return TrainingFailure("cluster_unreachable", f"Cannot reach the Ray cluster at {self.address}: {why}")

    def launcher(self, world: int, gpus_per_rank: int) -> Any:
        """What starts a run's `world` ranks as actors, each holding `gpus_per_rank` GPUs and a CPU."""

        def launch(first: dict[str, Any]) -> RayWorker:
            return RayWorker(first, self, world, gpus_per_rank)

        return launch

    def gpu_count(self) -> int:
        return int(self.ray().cluster_resources().get("GPU", 0))

    def describe(self) -> dict[str, Any]:
        """The cluster as the compute endpoint shows it (nothing is asked before first use)."""
        if self._ray is None:
            return {"ray_address": self.address, "connected": False}
        ray = self._ray
        nodes = [
            {"node_ip": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")), "resources": n.get("Resources", {})}
            for n in ray.nodes()
        ]
        with self._lock:
            jobs = [
                {"job": job, "rank": rank, "node_ip": place["node_ip"], "host": place["host"], "gpus": place["gpus"]}
                for job, places in self._placed.items()
                for rank, place in enumerate(places)
            ]
        return {"ray_address": self.address, "connected": True, "nodes": nodes, "jobs": jobs}

    def placed(self, job: str | None, places: list[dict[str, Any]]) -> None:
        if job is not None:
            with self._lock:
                self._placed[job] = places

    def released(self, job: str | None) -> None:
        with self._lock:
            self._placed.pop(job or "", None)


class RayWorker:
    """A run's worker as Ray actors, with the surface of `WorkerProcess` (ready, notices,
    request, stop, close): rank 0's actor answers the protocol; the others are watched."""

    def __init__(self, first: dict[str, Any], cluster: RayCluster, world: int, gpus_per_rank: int) -> None:
        from tunedeck.backend.trainers.transformer.worker.ray_actor import TrainingActor

        ray = cluster.ray()
        self._ray = ray
        self._closed = False
        self.notices: list[tuple[str, str]] = []
        self.pid = None  # the processes are on nodes of the cluster, not here
        self._group: Any = None
        self._cluster = cluster
        self._job = first["spec"].get("job_id")
        self._ranks: list[tuple[Any, dict[str, Any]]] = []  # (pending `serve` call, where) of ranks 1..N-1
        actor_class = ray.remote(TrainingActor)
        spec = first["spec"]
        try:
            if world == 1:
                self._actor = actor_class.options(num_gpus=gpus_per_rank, num_cpus=1, max_restarts=0).remote(spec)
                self.ready = self._messages(self._actor.opened.remote())["ready"]
                places = [ray.get(self._actor.where.remote())]
            else:
                places = self._start_ranks(actor_class, spec, world, gpus_per_rank)
        except BaseException:
            self.close()
            raise
        self.notices.append(("info", where_text(places)))
        cluster.placed(self._job, places)

    def _start_ranks(self, actor_class: Any, spec: dict[str, Any], world: int, gpus_per_rank: int) -> list[dict[str, Any]]:
        """Place the ranks (a placement group), tell each how to meet the others, open rank 0."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray = self._ray
        bundle = {"CPU": 1, **({"GPU": gpus_per_rank} if gpus_per_rank else {})}
        self._group = placement_group([bundle] * world, strategy="PACK")
        ray.get(self._group.ready())  # the job waits here, queued, until the cluster has room
        actors = [
            actor_class.options(
                num_gpus=gpus_per_rank, num_cpus=1, max_restarts=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._group, placement_group_bundle_index=rank),
            ).remote(spec, rank)
            for rank in range(world)
        ]  # fmt: skip
        self._actor = actors[0]
        self._all = actors
        places = ray.get([actor.where.remote() for actor in actors])
        for place in places:
            if place["problem"]:
                raise TrainingFailure("invalid_request", place["problem"])
        meeting = ray.get(actors[0].rendezvous.remote())
        envs = rank_envs(places, meeting)
        self._ranks = [(actors[r].serve.remote(envs[r]), places[r]) for r in range(1, world)]
        self.ready = self._messages(actors[0].join.remote(envs[0]))["ready"]
        return places

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return self._messages(self._actor.request.remote(message))

    def _messages(self, pending: Any) -> dict[str, Any]:
        self._wait_watching_ranks(pending)
        try:
            replies = self._ray.get(pending)
        except Exception as exc:
            if self._closed:
                raise WorkerGone() from None
            raise TrainingFailure("internal_error", f"The Ray actor training the job failed: {exc}") from None
        for message in replies:
            answer = protocol_reply(message, self.notices)
            if answer is not None:
                return answer
        raise TrainingFailure("internal_error", "the Ray actor sent no reply")

    def _wait_watching_ranks(self, pending: Any) -> None:
        """Wait for rank 0's reply; a rank that ends meanwhile fails the job, naming it (rank 0
        would wait for it at the next collective until the rendezvous times out)."""
        if not self._ranks:
            return
        calls = [call for call, _ in self._ranks]
        while True:
            done, _ = self._ray.wait([pending, *calls], num_returns=1)
            if done[0] not in calls:
                return
            rank = calls.index(done[0]) + 1
            try:
                self._ray.get(done[0])
                why = "ended before rank 0 told it to stop"
            except Exception as exc:  # Ray's text ends with the error itself, after the traceback
                why = f"failed: {str(exc).strip().splitlines()[-1]}"
            place = self._ranks[rank - 1][1]
            raise TrainingFailure(
                "internal_error",
                f"The training process of rank {rank} (of {len(calls) + 1}) on the Ray node {place['node_ip']} {why}",
            )

    def stop(self) -> None:
        try:
            self._ray.get(self._actor.request.remote({"cmd": "stop"}), timeout=STOP_SECONDS)
        except Exception:  # ending it anyway
            pass
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cluster.released(self._job)
        for actor in getattr(self, "_all", None) or [getattr(self, "_actor", None)]:
            try:
                if actor is not None:
                    self._ray.kill(actor)
            except Exception:  # already gone
                pass
        if self._group is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self._group)
            except Exception:  # the cluster is gone
                pass


def rank_envs(places: list[dict[str, Any]], meeting: dict[str, str]) -> list[dict[str, str]]:
    """Each rank's torch.distributed environment. The ranks on one node see all of the job's
    GPUs on that node (each uses its own: LOCAL_RANK), so NCCL can join them directly."""
    world = len(places)
    envs = []
    for rank, place in enumerate(places):
        env = {**meeting, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": "0"}
        if place["gpus"]:
            shared = [gpu for other in places if other["node_id"] == place["node_id"] for gpu in other["gpus"]]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(shared)
            env["LOCAL_RANK"] = str(shared.index(place["gpus"][0]))
        envs.append(env)
    return envs


def where_text(places: list[dict[str, Any]]) -> str:
    """What the job's events say of where it runs: each node, its GPUs, and its ranks."""
    parts = []
    for node_id in dict.fromkeys(place["node_id"] for place in places):
        here = [(rank, place) for rank, place in enumerate(places) if place["node_id"] == node_id]
        first = here[0][1]
        gpus = [gpu for _, place in here for gpu in place["gpus"]]
        details = [first["host"]]
        if gpus:
            details.append(f"GPUs {', '.join(gpus)}")
        if len(places) > 1:
            ranks = [str(rank) for rank, _ in here]
            details.append(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(ranks)}")
        parts.append(f"the Ray node {first['node_ip']} ({'; '.join(details)})")
    return "Running on " + " and ".join(parts)
