"""Transformer runs on a Ray cluster (server side): the job engine drives them exactly as it
drives a worker process on this machine; Ray decides where they run.

`RayCluster` joins the cluster named by the backend's `ray_address` (`auto`, `host:port`, or
`ray://host:port` through Ray Client) on first use. Each run is an actor (`worker/ray_actor.py`)
asking Ray for the GPUs the job wants (`tunedeck.devices`; none for `device: cpu` or a cluster
without GPUs); a job waits in `queued` until Ray has placed it, and a job that asks for more
GPUs than the whole cluster has fails at once. Several GPUs on one node train in parallel as
on one machine (`distributed.py`, started by the actor). The job's events say which node it
ran on. Ray is an optional extra (`pip install 'tunedeck[cluster]'`); without `ray_address`
nothing here is imported.
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

    def launcher(self, gpus: int, cpus: int) -> Any:
        """What starts a run's worker as an actor holding `gpus` GPUs and `cpus` CPUs."""

        def launch(first: dict[str, Any]) -> RayWorker:
            return RayWorker(first, self, gpus, cpus)

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
        return {"ray_address": self.address, "connected": True, "nodes": nodes}


class RayWorker:
    """A run's worker as a Ray actor, with the surface of `WorkerProcess` (ready, notices,
    request, stop, close)."""

    def __init__(self, first: dict[str, Any], cluster: RayCluster, gpus: int, cpus: int) -> None:
        from tunedeck.backend.trainers.transformer.worker.ray_actor import TrainingActor

        ray = cluster.ray()
        self._ray = ray
        self._closed = False
        self.notices: list[tuple[str, str]] = []
        self.pid = None  # the process is on a node of the cluster, not here
        actor_class = ray.remote(TrainingActor)
        self._actor = actor_class.options(num_gpus=gpus, num_cpus=cpus, max_restarts=0).remote(first["spec"])
        try:
            self.ready = self._messages(self._actor.opened.remote())["ready"]
            where = ray.get(self._actor.where.remote())
        except BaseException:
            self.close()
            raise
        gpus_text = f", GPUs {', '.join(where['gpus'])}" if where["gpus"] else ""
        self.notices.append(("info", f"Running on the Ray node {where['node_ip']} ({where['host']}{gpus_text})"))

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return self._messages(self._actor.request.remote(message))

    def _messages(self, pending: Any) -> dict[str, Any]:
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
        try:
            self._ray.kill(self._actor)
        except Exception:  # already gone
            pass
