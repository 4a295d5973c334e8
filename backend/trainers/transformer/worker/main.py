"""The transformer worker process: `python -m tunedeck.backend.trainers.transformer.worker.main`.

The server talks to it in JSON lines, one request and one reply at a time, so the job
engine drives a transformer run exactly as it drives the built-in trainer (one `step` per
request) and tests can stop it at any step. The first line chooses the mode:

  {"mode": "train", "spec": {...}}  -> {"ready": {"total_steps", "steps_per_epoch", "tokens_per_epoch"}}
      {"cmd": "step"}               -> {"metrics": {...}}
      {"cmd": "save", "path": p, "state": bool} -> {"saved": p}
  {"mode": "chat", "model": {...}}  -> {"ready": {}}
      {"cmd": "chat", "request": {...}} -> {"answers": [...], "prompt_tokens": n}
  {"cmd": "stop"} or end of input   -> the process exits

Any message may be preceded by `{"notice": text}` lines (they become job events). A failure
is `{"error": {"code", "message", "param"}}`, after which the process exits. Library chatter
on stdout is sent to stderr, so only protocol lines reach the server.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from tunedeck.backend.trainers.base import TrainingFailure

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: models come from the catalog's folders
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OOM_ADVICE = (
    "Out of memory while training{where}. Try LoRA (\"tunedeck\": {{\"training_type\": \"lora\"}}), a smaller "
    "batch_size, or a shorter max_length"
)


class Channel:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, allow_nan=True) + "\n")
        self._out.flush()

    def notice(self, text: str, level: str = "info") -> None:
        self.send({"notice": text, "level": level})


def _failure(exc: BaseException, where: str) -> dict[str, Any]:
    if isinstance(exc, TrainingFailure):
        return {"code": exc.code, "message": exc.message, "param": exc.param}
    if _is_oom(exc):
        return {"code": "oom", "message": OOM_ADVICE.format(where=where), "param": None}
    traceback.print_exc(file=sys.stderr)
    return {"code": "internal_error", "message": f"Training failed{where}: {type(exc).__name__}: {exc}", "param": None}


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def start_run(spec: dict[str, Any], notice: Any, parallel: Any = None) -> Any:
    method = spec["method"]
    if method == "supervised":
        from .sft import SftRun as RunClass
    elif method == "dpo":
        from .dpo import DpoRun as RunClass
    else:
        from .rft import RftRun as RunClass
    return RunClass(spec, notice, parallel)


class TrainingSession:
    """A training run and the protocol around it, whatever carries the messages (this
    process's stdin and stdout, or a Ray actor's calls): `ready` once built, then `handle`
    answers each command as the server's worker protocol says."""

    def __init__(self, spec: dict[str, Any], notice: Any, on_rank_lost: Any = None) -> None:
        """`on_rank_lost(message)`: what to do when another rank dies (end this process, saying why)."""
        self.parallel = None
        self._ranks: list[Any] = []
        world = int(spec.get("world_size") or 1)
        if world > 1:
            from .distributed import join, rank_spec, start_ranks

            if spec.get("ranks") == "actors":  # the other ranks are Ray actors, placed and watched by the server
                self.parallel = join(spec)
            else:  # they share this process group: ending it ends them
                self.parallel, self._ranks = start_ranks(spec, on_rank_lost)
            spec = rank_spec(spec, self.parallel.local_rank)
        self.run = run = start_run(spec, notice, self.parallel)
        if self.parallel is not None:
            self.parallel.barrier()  # every rank has built the run (and read a pause checkpoint's state)
            run.finish_resume()
            held = "the model sharded across them (FSDP)" if run.sharded else "a copy of the model on each"
            notice(f"Training on {world} devices in parallel (torch.distributed, {world} processes; {held})")
        self.ready = {"total_steps": run.total_steps, "steps_per_epoch": run.steps_per_epoch, "tokens_per_epoch": run.tokens_per_epoch}

    def handle(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to `command`; None for `stop` (the session is over). A failure is an
        `error` reply, after which the session must end."""
        where = f" at step {self.run.steps_done + 1}"
        try:
            if command["cmd"] == "step":
                if self.parallel is not None:
                    self.parallel.share_command({"cmd": "step"})
                return {"metrics": self.run.step()}
            if command["cmd"] == "save":
                if self.parallel is not None:  # a sharded model's ranks each hold a part of it
                    self.parallel.share_command(command)
                self.run.save(Path(command["path"]), bool(command.get("state")))
                return {"saved": command["path"]}
        except Exception as exc:  # reported to the server, which fails the job with it
            from .distributed import lost_rank

            lost = lost_rank(self._ranks)  # a collective fails when a rank dies: say which died
            if lost is not None:
                return {"error": {"code": "internal_error", "message": lost, "param": None}}
            return {"error": _failure(exc, where)}
        self.close()
        return None

    def close(self) -> None:
        if self.parallel is not None:
            from .distributed import end_ranks

            self.parallel.share_command({"cmd": "stop"})
            self.parallel.close()
            self.parallel = None
            end_ranks(self._ranks)


def serve_training(spec: dict[str, Any], commands: IO[str], channel: Channel) -> int:
    def rank_lost(message: str) -> None:
        # The other ranks cannot go on without it, nor can this one: say why, and end now
        # (a collective would wait for the lost rank until the rendezvous times out).
        channel.send({"error": {"code": "internal_error", "message": message, "param": None}})
        os._exit(1)

    session = TrainingSession(spec, channel.notice, rank_lost)
    channel.send({"ready": session.ready})
    for line in commands:
        reply = session.handle(json.loads(line))
        if reply is None:
            return 0
        channel.send(reply)
        if "error" in reply:
            return 1
    session.close()
    return 0


def serve_rank(spec: dict[str, Any]) -> int:
    """Ranks 1..N-1 of a job on several devices: the run rank 0 runs, step for step, told
    what to do by rank 0 (`distributed.py`); nothing of theirs reaches the server."""
    from .distributed import join, rank_spec

    parallel = join(spec)
    run = start_run(rank_spec(spec, parallel.local_rank), None, parallel)
    parallel.barrier()
    while True:
        command = parallel.share_command()
        if command["cmd"] == "step":
            run.step()
        elif command["cmd"] == "save":
            run.save(Path(command["path"]), bool(command.get("state")))
        else:
            break
    parallel.close()
    return 0


def serve_chat(model_spec: dict[str, Any], commands: IO[str], channel: Channel) -> int:
    from .chat import ChatSession

    session = ChatSession(model_spec)
    channel.send({"ready": {}})
    for line in commands:
        command = json.loads(line)
        if command["cmd"] != "chat":
            return 0
        try:
            channel.send(session.answer(command["request"]))
        except Exception as exc:
            channel.send({"error": _failure(exc, "")})
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--rank":  # started by rank 0 of a job on several devices
        return serve_rank(json.loads(sys.stdin.readline()))
    channel = Channel(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the protocol
    sys.stdout = sys.stderr
    first = sys.stdin.readline()
    if not first:
        return 0
    request = json.loads(first)
    try:
        if request["mode"] == "train":
            return serve_training(request["spec"], sys.stdin, channel)
        return serve_chat(request["model"], sys.stdin, channel)
    except Exception as exc:
        channel.send({"error": _failure(exc, " while preparing")})
        return 1


if __name__ == "__main__":
    sys.exit(main())
