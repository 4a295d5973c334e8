"""A training run as a Ray actor (worker side): what the worker process does over its pipes,
done over Ray calls instead, on whichever node of the cluster Ray placed it.

The actor is a plain class (the server wraps it with `ray.remote` and the resources the job
asks for), so importing it needs neither Ray nor torch. Each call returns the protocol's
messages in order: the notices the run gave on the way, then the reply (`ready`, `metrics`,
`saved`, or an `error`), exactly as `main.py` writes them on stdout.

A job on several devices is one actor per rank, placed together by a Ray placement group
(one GPU each, on as few nodes as the cluster allows): the server asks rank 0's actor for a
rendezvous address on its node (`rendezvous`), starts the other ranks (`serve`, which returns
when rank 0 says stop), then opens rank 0 (`join`), which runs the session as above. They form
one torch.distributed group across the nodes (`distributed.py`).

Files travel by path: the node must see the backend's data folder and the models folder at
the same paths (a filesystem every node mounts). A node that cannot read them says which
path and which node, rather than failing somewhere inside the training.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any


class TrainingActor:
    def __init__(self, spec: dict[str, Any], rank: int | None = None) -> None:
        """`rank` None: the whole run in this actor; else this rank of a run whose ranks are
        actors of their own, which starts when told how to meet the others (`join`, `serve`)."""
        self._spec = spec
        self._messages: list[dict[str, Any]] = []
        self._session: Any = None
        if rank is None:
            self._open(spec)

    def _open(self, spec: dict[str, Any]) -> None:
        try:
            _check_paths(spec)
            from .main import TrainingSession

            self._session = TrainingSession(spec, self._notice, _end_actor)
            self._messages.append({"ready": self._session.ready})
        except Exception as exc:  # reported to the server as the worker process reports it
            from .main import _failure

            self._messages.append({"error": _failure(exc, " while preparing")})

    def rendezvous(self) -> dict[str, Any]:
        """Where the ranks meet: this node's address and a port free on it (rank 0)."""
        import ray

        with socket.socket() as probe:
            probe.bind(("", 0))
            port = int(probe.getsockname()[1])
        return {"MASTER_ADDR": ray.util.get_node_ip_address(), "MASTER_PORT": str(port)}

    def join(self, env: dict[str, str]) -> list[dict[str, Any]]:
        """Rank 0: join the group `env` names (the other ranks are on their way) and open the
        session; its messages, as `opened` gives them."""
        os.environ.update(env)
        self._open({**self._spec, "ranks": "actors"})
        return self._take()

    def serve(self, env: dict[str, str]) -> int:
        """Ranks 1..N-1: join the group `env` names and follow rank 0 until it says stop."""
        os.environ.update(env)
        _check_paths(self._spec)
        from .main import serve_rank

        return serve_rank(self._spec)

    def _notice(self, text: str, level: str = "info") -> None:
        self._messages.append({"notice": text, "level": level})

    def _take(self) -> list[dict[str, Any]]:
        messages, self._messages = self._messages, []
        return messages

    def opened(self) -> list[dict[str, Any]]:
        return self._take()

    def request(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        if self._session is None:
            return [{"error": {"code": "internal_error", "message": "the run did not start", "param": None}}]
        reply = self._session.handle(command)
        return self._take() + ([reply] if reply is not None else [])

    def where(self) -> dict[str, Any]:
        """The node this actor runs on, and the GPUs Ray gave it."""
        import ray

        context = ray.get_runtime_context()
        return {
            "host": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
            "problem": _path_problem(self._spec),
        }


def _end_actor(message: str) -> None:
    """Another rank died: end this actor (Ray reports it to the server as a failed call)."""
    print(message, file=sys.stderr, flush=True)
    os._exit(1)


def _check_paths(spec: dict[str, Any]) -> None:
    from tunedeck.backend.trainers.base import TrainingFailure

    problem = _path_problem(spec)
    if problem:
        raise TrainingFailure("invalid_request", problem)


def _path_problem(spec: dict[str, Any]) -> str | None:
    """Which path of the run this node cannot read, or None."""
    needed = [spec.get("training_path"), spec.get("validation_path"), spec.get("initial_weights")]
    needed.append((spec.get("base") or {}).get("path"))
    needed.append((spec.get("resume") or {}).get("checkpoint"))
    for path in needed:
        if path and not Path(path).exists():
            return (
                f"The Ray node {socket.gethostname()} cannot read {path}: put the backend's data folder and the "
                "models folder on a filesystem every node mounts at the same path"
            )
    return None
