"""The server's end of a worker process (no torch here): start it, ask, read replies, end it.

`WorkerProcess` speaks the JSON-lines protocol of `worker.py`. `SubprocessRun` is the job
engine's `TrainingRun` for a transformer job: each `step()` is one request, so the engine
paces, records and checkpoints it like the built-in trainer. `close()` kills the process at
once (a cancel frees the GPU within seconds, even mid-step); `suspend()` (a pause) saves a
checkpoint with the optimiser state and ends the process, and the next `step()` starts a new
one that continues from that checkpoint. `save_state()` writes the same kind of checkpoint as
the engine's crash-recovery point; a run started with `resume_from` continues from one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tunedeck.backend.compute import Device, placed_message, placement
from tunedeck.backend.storage.private import open_private, private_dir
from tunedeck.backend.trainers.base import LOSS_FIELDS, StepMetrics, TrainingFailure, TrainingRun

WORKER_MODULE = "tunedeck.backend.trainers.transformer.worker.main"
CONTROL_FIELDS = ("step", "total_steps", "epoch_ended", "extra", "summary", "checkpoint", "checkpoint_score")
LOG_TAIL_CHARS = 2000
PACE_SMOOTHING = 0.1
KEPT_LOGS = 50  # worker logs kept in the logs folder; older ones are removed when a worker starts


class WorkerGone(Exception):
    """The process was closed by us (a cancel) while a request was in flight."""


def protocol_reply(message: dict[str, Any], notices: list[tuple[str, str]]) -> dict[str, Any] | None:
    """One message of the worker protocol, whatever carried it (a pipe, a Ray call): a notice
    is kept in `notices` (None), an error is raised as the job's `TrainingFailure`, anything
    else is the reply."""
    if "notice" in message:
        notices.append((str(message.get("level", "info")), str(message["notice"])))
        return None
    if "error" in message:
        error = message["error"] if isinstance(message["error"], dict) else {}
        raise TrainingFailure(str(error.get("code", "internal_error")), str(error.get("message", "")), error.get("param"))
    return message


class WorkerProcess:
    def __init__(self, first: dict[str, Any], log_dir: Path, env: dict[str, str] | None = None) -> None:
        private_dir(log_dir)
        _prune_logs(log_dir)
        self.log_path = log_dir / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self):x}.log"
        # Owner-only, like everything the backend keeps: a worker's log may quote training data.
        self._log = io.TextIOWrapper(open_private(self.log_path), encoding="utf-8")
        self._closed = False
        self._lock = threading.Lock()
        self.notices: list[tuple[str, str]] = []
        self._process = subprocess.Popen(
            # -P: the worker's imports never come from the current directory (a checkout's
            # `tunedeck/` folder would shadow the installed package there).
            [sys.executable, "-P", "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: Ctrl-C reaches the server, which ends it
        )
        try:
            self.ready = self.request(first)["ready"]
        except BaseException:
            self.close()  # a worker that failed to start leaves no process and no open file
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one message and return its reply; notices on the way are kept in `notices`.
        Raises TrainingFailure (the worker's error, or its death) or WorkerGone (closed by us)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
            while True:
                line = self._process.stdout.readline()
                if not line:
                    raise self._ended()
                answer = protocol_reply(self._parse(line), self.notices)
                if answer is not None:
                    return answer
        except (OSError, ValueError):  # a closed pipe or file: the process is gone
            raise self._ended() from None

    def _parse(self, line: str) -> dict[str, Any]:
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise TrainingFailure("internal_error", f"the training process sent a bad reply: {line[:200]!r}")
        return reply

    def _ended(self) -> Exception:
        if self._closed:
            return WorkerGone()
        code = self._process.wait()
        try:
            self._log.flush()
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:].strip()
        except (OSError, ValueError):  # the log was pruned or closed meanwhile
            tail = ""
        detail = f"; the end of its log ({self.log_path}):\n{tail}" if tail else ""
        return TrainingFailure("internal_error", f"The training process ended unexpectedly (exit code {code}){detail}")

    def close(self) -> None:
        """End the process now (SIGKILL to its process group: nothing it holds is worth
        waiting for), reap it and close its pipes and log."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._log):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Ask the process to exit after its current request, then make sure it has."""
        try:
            assert self._process.stdin is not None
            self._process.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
            self._process.stdin.close()
            self._process.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.close()


class SubprocessRun(TrainingRun):
    """A transformer job's run: the `TrainingRun` the engine drives, backed by a worker process."""

    checkpoint_suffix = ""  # checkpoints are folders
    resumable = True

    def __init__(
        self,
        spec: dict[str, Any],
        log_dir: Path,
        env: dict[str, str] | None = None,
        launch: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """`launch`: starts the worker from its first message; by default a process on this
        machine (`WorkerProcess`), or a Ray actor on a cluster (`ray_worker.py`), which speaks
        the same protocol."""
        self._spec = spec
        self._log_dir = log_dir
        self._env = env
        self._launch = launch
        self._notices: list[tuple[str, str]] = []
        self._closed = False
        self._resume: dict[str, Any] | None = None  # set by a pause: where the next worker continues from
        self.seconds_per_step: float | None = None
        self._worker: WorkerProcess | None = self._spawn(spec)
        self.total_steps = int(self._worker.ready["total_steps"])
        self.steps_per_epoch = int(self._worker.ready["steps_per_epoch"])
        self.tokens_per_epoch = int(self._worker.ready.get("tokens_per_epoch") or 0)

    def _spawn(self, spec: dict[str, Any]) -> WorkerProcess:
        first = {"mode": "train", "spec": spec}
        worker = self._launch(first) if self._launch else WorkerProcess(first, self._log_dir, self._env)
        self._collect(worker)
        if self._closed:  # cancelled while the worker was starting: it must not outlive the run
            worker.close()
            raise WorkerGone()
        return worker

    def _collect(self, worker: WorkerProcess) -> None:
        self._notices.extend(worker.notices)
        worker.notices.clear()

    def _alive(self) -> WorkerProcess:
        if self._closed:
            raise WorkerGone()
        if self._worker is None:  # suspended by a pause: continue from its checkpoint
            self._worker = self._spawn({**self._spec, "resume": self._resume})
            if self._closed:  # closed between the check in _spawn and now
                self._worker.close()
                raise WorkerGone()
        return self._worker

    @property
    def pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    def step(self) -> StepMetrics:
        worker = self._alive()
        started = time.monotonic()
        try:
            reply = worker.request({"cmd": "step"})
        finally:
            self._collect(worker)
        self._measure(time.monotonic() - started)
        return step_metrics(reply["metrics"])

    def _measure(self, seconds: float) -> None:
        """A moving average of step time, for the job's `estimated_finish`."""
        previous = self.seconds_per_step
        self.seconds_per_step = seconds if previous is None else previous + PACE_SMOOTHING * (seconds - previous)

    def save(self, path: Path, with_state: bool = False) -> None:
        worker = self._alive()
        worker.request({"cmd": "save", "path": str(path), "state": with_state})

    def save_state(self, path: Path) -> None:
        if self._worker is None and self._resume is not None:
            # Suspended by a pause: its checkpoint holds the state already (linked, not copied:
            # a whole model's optimiser state can be gigabytes, and the worker unlinks its own name).
            shutil.copytree(self._resume["checkpoint"], path, copy_function=_link_or_copy)
            return
        self.save(path, with_state=True)

    def suspend(self, path: Path) -> None:
        self.save(path, with_state=True)
        self._resume = {"checkpoint": str(path)}
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def take_notices(self) -> list[tuple[str, str]]:
        notices, self._notices = self._notices, []
        return notices

    def add_notice(self, level: str, text: str) -> None:
        self._notices.append((level, text))

    def place(self, devices: tuple[Device, ...]) -> None:
        """A run resumed after a pause continues on the devices it holds now: the next worker
        is started there (the engine places a resumed job afresh)."""
        env, device = placement(devices)
        self._env = {**(self._env or {}), **env}
        if device is not None:
            self._spec = {**self._spec, "options": {**self._spec["options"], "device": device}}
        self.add_notice("info", placed_message(devices))

    def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.close()


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def _prune_logs(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("worker-*.log"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    for old in logs[: max(0, len(logs) - KEPT_LOGS + 1)]:
        old.unlink(missing_ok=True)


def step_metrics(raw: dict[str, Any]) -> StepMetrics:
    extra = dict(raw.get("extra") or {})
    extra.update({k: v for k, v in raw.items() if k not in LOSS_FIELDS and k not in CONTROL_FIELDS})
    return StepMetrics(
        step=int(raw["step"]),
        total_steps=int(raw["total_steps"]),
        epoch_ended=bool(raw.get("epoch_ended")),
        extra=extra,
        summary=str(raw.get("summary") or ""),
        checkpoint=raw.get("checkpoint"),
        checkpoint_score=raw.get("checkpoint_score"),
        **{k: raw.get(k) for k in LOSS_FIELDS},
    )
