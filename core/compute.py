"""What a tunedeck backend trains on: its devices and the job holding each (the backend's
`GET /v1/tunedeck/compute`), read for the app's compute view and `tunedeck compute`.

OpenAI and other providers do not report their compute; asking them is a `ServiceError`
that says so, not a failure of the connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DeviceUse:
    id: str  # "cuda:0", "cpu"
    name: str
    memory_bytes: int | None
    fake: bool
    job: str | None  # the job training on it, None when free

    @property
    def memory_text(self) -> str:
        if self.memory_bytes is None:
            return "—"
        return f"{self.memory_bytes / 2**30:.0f} GiB"

    @property
    def kind(self) -> str:
        if self.id.rpartition("/")[2].startswith("cpu"):  # "cpu", or a Ray node's "10.0.0.2/cpu:1"
            return "CPU"
        return "GPU (pretend)" if self.fake else "GPU"


@dataclass(frozen=True, slots=True)
class ClusterUse:
    """The Ray cluster a backend runs its transformer jobs on."""

    address: str
    connected: bool  # joined yet (at the first job)
    nodes: int = 0
    gpus: float = 0.0
    cpus: float = 0.0
    ranks: tuple[RankPlace, ...] = ()  # where the running jobs' ranks are

    @property
    def text(self) -> str:
        if not self.connected:
            return f"Jobs run on the Ray cluster at {self.address} (joined at the first job)"
        jobs = len({rank.job for rank in self.ranks})
        return (
            f"Jobs run on the Ray cluster at {self.address}: {self.nodes} node{'s' if self.nodes != 1 else ''}, "
            f"{self.gpus:g} GPUs, {self.cpus:g} CPUs; {jobs} job{'s' if jobs != 1 else ''} running"
        )


@dataclass(frozen=True, slots=True)
class RankPlace:
    """One rank of a job running on a Ray cluster: its node and the GPUs Ray gave it."""

    job: str
    rank: int
    node_ip: str
    host: str
    gpus: tuple[str, ...]

    def as_devices(self) -> list[DeviceUse]:
        """The rank as the compute view's rows: a row per GPU (a CPU when it has none)."""
        name = f"{self.host}, rank {self.rank}"
        if not self.gpus:
            return [DeviceUse(f"{self.node_ip}/cpu:{self.rank}", name, None, False, self.job)]
        return [DeviceUse(f"{self.node_ip}/cuda:{gpu}", name, None, False, self.job) for gpu in self.gpus]


@dataclass(frozen=True, slots=True)
class ComputeView:
    devices: list[DeviceUse] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # jobs queued for a device, first first
    cluster: ClusterUse | None = None

    @classmethod
    def from_json(cls, raw: Any) -> ComputeView:
        """The endpoint's body; anything malformed in it is left out rather than trusted."""
        if not isinstance(raw, dict):
            return cls()
        devices = []
        for item in raw.get("devices") or ():
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            memory = item.get("memory_bytes")
            job = item.get("job")
            devices.append(
                DeviceUse(
                    id=item["id"],
                    name=str(item.get("name") or item["id"]),
                    memory_bytes=memory if isinstance(memory, int) and not isinstance(memory, bool) else None,
                    fake=item.get("fake") is True,
                    job=job if isinstance(job, str) else None,
                )
            )
        waiting = [j for j in raw.get("waiting") or () if isinstance(j, str)]
        cluster = _cluster(raw.get("cluster"))
        if cluster is not None:  # Ray places the runs: the devices in use are the ranks' on its nodes
            devices += [device for rank in cluster.ranks for device in rank.as_devices()]
        return cls(devices, waiting, cluster)

    def as_json(self) -> dict[str, Any]:
        return {
            "devices": [
                {"id": d.id, "name": d.name, "memory_bytes": d.memory_bytes, "fake": d.fake, "job": d.job}
                for d in self.devices
            ],
            "waiting": list(self.waiting),
            "cluster": None
            if self.cluster is None
            else {
                "address": self.cluster.address,
                "connected": self.cluster.connected,
                "nodes": self.cluster.nodes,
                "gpus": self.cluster.gpus,
                "cpus": self.cluster.cpus,
                "ranks": [
                    {"job": r.job, "rank": r.rank, "node_ip": r.node_ip, "host": r.host, "gpus": list(r.gpus)}
                    for r in self.cluster.ranks
                ],
            },
        }

    @property
    def busy(self) -> int:
        return sum(d.job is not None for d in self.devices)


def _cluster(raw: Any) -> ClusterUse | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("ray_address"), str):
        return None
    nodes = [n for n in raw.get("nodes") or () if isinstance(n, dict) and n.get("alive")]

    def total(resource: str) -> float:
        amounts = [n.get("resources", {}).get(resource, 0) for n in nodes if isinstance(n.get("resources"), dict)]
        return float(sum(a for a in amounts if isinstance(a, (int, float)) and not isinstance(a, bool)))

    ranks = []
    for item in raw.get("jobs") or ():
        if not isinstance(item, dict) or not isinstance(item.get("job"), str) or not isinstance(item.get("rank"), int):
            continue
        gpus = tuple(str(g) for g in item.get("gpus") or () if isinstance(g, (str, int)))
        ranks.append(RankPlace(item["job"], item["rank"], str(item.get("node_ip") or "?"), str(item.get("host") or "?"), gpus))
    return ClusterUse(
        raw["ray_address"], raw.get("connected") is True, len(nodes), total("GPU"), total("CPU"), tuple(ranks)
    )
