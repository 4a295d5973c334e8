"""The `python` grader: the user's `grade(sample, item) -> float`, run in a process of its own.

The code never runs in the backend's process. Each grader gets one worker process (started
on its first sample, kept for the next ones, stopped with the grader), which:
- runs isolated (`python -I`: no user site, no PYTHON* variables) in an empty temporary
  folder of its own, with an empty environment but for HOME and TMPDIR pointing there;
- is limited to `MEMORY_BYTES` of address space, `CPU_SECONDS` of processor time, files of
  at most `FILE_BYTES` and `OPEN_FILES` open files (`resource` limits, set before the code
  loads), and `SAMPLE_SECONDS` of wall time per sample: past it the worker is killed, the
  sample gets `python_grader_runtime_error`, and the next sample starts a fresh worker;
- has the network taken away before the code loads (socket creation and DNS raise).
The network guard is in-process: it stops a grader reaching out by mistake, as the API's
sandbox does, but it is no boundary against code written to get around it. Graders are the
user's own code, run on the user's machine.

What the API reports, this reports: a `grade` that raises (or returns no number) makes that
sample's reward 0 with `python_grader_runtime_error` and the traceback's last lines in
`python_grader_runtime_error_details`; a worker that dies or cannot start sets
`python_grader_server_error` and `python_grader_server_error_type`.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_BYTES = 256 * 1024
MEMORY_BYTES = 2 << 30
CPU_SECONDS = 600
FILE_BYTES = 256 << 20
OPEN_FILES = 64
SAMPLE_SECONDS = 60.0
START_SECONDS = 30.0
MAX_REPLY_BYTES = 1 << 20

# Runs in the worker: limits, no network, then the user's code (the first line in, as JSON);
# then one JSON line in and one out per sample.
_WORKER = r"""
import json, resource, socket, sys, traceback
limits = json.loads(sys.argv[1])
for name, value in limits.items():
    kind = getattr(resource, name)
    soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))
def _refused(*args, **kwargs):
    raise PermissionError("graders have no network access")
socket.socket = socket.create_connection = socket.getaddrinfo = socket.gethostbyname = _refused
socket.socketpair = socket.fromfd = _refused
out = sys.stdout
sys.stdout = sys.stderr  # a print() in the grader goes to the log, never into the replies
def reply(body):
    out.write(json.dumps(body) + "\n")
    out.flush()
namespace = {"__name__": "grader"}
try:
    exec(compile(json.loads(sys.stdin.readline()), "grader.py", "exec"), namespace)
    grade = namespace["grade"]
    loaded = None
except BaseException:
    loaded = traceback.format_exc(limit=-3)
for line in sys.stdin:
    if loaded is not None:
        reply({"error": loaded})
        continue
    request = json.loads(line)
    try:
        score = grade(request["sample"], request["item"])
        reply({"score": float(score)})
    except BaseException:
        reply({"error": traceback.format_exc(limit=-3)})
"""


class PythonGraderError(ValueError):
    """The source cannot be a grader (the message says why, for the 400)."""


def check_source(source: Any) -> str:
    """The source, when it parses and defines `grade`; else `PythonGraderError`."""
    if not isinstance(source, str) or not source.strip():
        raise PythonGraderError("expected the grader's Python source, defining grade(sample, item)")
    if len(source.encode("utf-8", "replace")) > MAX_SOURCE_BYTES:
        raise PythonGraderError(f"longer than {MAX_SOURCE_BYTES // 1024} KB")
    try:
        tree = ast.parse(source, "grader.py")
    except SyntaxError as exc:
        raise PythonGraderError(f"line {exc.lineno}: {exc.msg}") from None
    defines = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if "grade" not in defines:
        raise PythonGraderError("it defines no grade(sample, item) function")
    return source


@dataclass
class Outcome:
    score: float | None
    runtime_error: str | None = None
    server_error: str | None = None


@dataclass
class PythonWorker:
    """One grader's worker process; `run` is thread-safe (one sample at a time)."""

    source: str
    _process: subprocess.Popen[str] | None = None
    _folder: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, sample: dict[str, Any], item: Any) -> Outcome:
        with self._lock:
            try:
                process = self._started()
            except OSError as exc:
                return Outcome(None, server_error=f"worker_start_failed: {exc}")
            try:
                request = json.dumps({"sample": sample, "item": item}, default=str)
            except (TypeError, ValueError) as exc:
                return Outcome(None, runtime_error=f"the sample or item is not JSON: {exc}")
            reply = self._exchange(process, request)
            if reply is None:
                return Outcome(None, runtime_error=f"grade() ran past {SAMPLE_SECONDS:g} s (or its worker died): stopped")
            if "error" in reply:
                return Outcome(None, runtime_error=str(reply["error"])[-2000:])
            score = reply.get("score")
            if not isinstance(score, (int, float)) or not math.isfinite(score):
                return Outcome(None, runtime_error=f"grade() returned {score!r}, not a finite number")
            return Outcome(float(score))

    def _started(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.stop()
        self._folder = tempfile.mkdtemp(prefix="tunedeck-grader-")
        limits = {
            "RLIMIT_AS": MEMORY_BYTES,
            "RLIMIT_CPU": CPU_SECONDS,
            "RLIMIT_FSIZE": FILE_BYTES,
            "RLIMIT_NOFILE": OPEN_FILES,
        }
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER, json.dumps(limits)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._folder,
            env={"HOME": self._folder, "TMPDIR": self._folder, "PATH": os.defpath},
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(self.source) + "\n")
        self._process.stdin.flush()
        return self._process

    def _exchange(self, process: subprocess.Popen[str], request: str) -> dict[str, Any] | None:
        """One request and its reply line; None when the worker died or ran out of time (it is
        then stopped, and the next sample starts another)."""
        answer: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            answer.append(process.stdout.readline(MAX_REPLY_BYTES))

        try:
            assert process.stdin is not None
            process.stdin.write(request + "\n")
            process.stdin.flush()
        except OSError:
            self.stop()
            return None
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(SAMPLE_SECONDS)
        if reader.is_alive() or not answer or not answer[0]:
            self.stop()
            return None
        try:
            reply = json.loads(answer[0])
        except ValueError:
            self.stop()
            return None
        return reply if isinstance(reply, dict) else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass(eq=False)
class PythonGrader:
    """`{"type": "python", "name", "source"}`: the reward is what `grade(sample, item)` returns."""

    name: str
    source: str
    type: str = "python"

    def __post_init__(self) -> None:
        self._worker = PythonWorker(self.source)
        # The worker process goes with the grader (and with the backend's process at exit).
        weakref.finalize(self, self._worker.stop)

    def grade(self, namespaces: dict[str, Any]) -> Any:
        from .grader import Grade

        outcome = self._worker.run(namespaces.get("sample") or {}, namespaces.get("item"))
        if outcome.server_error is not None:
            return Grade(0.0, {"python_grader_server_error"}, details={"python_grader_server_error_type": outcome.server_error})
        if outcome.runtime_error is not None:
            details = {"python_grader_runtime_error_details": outcome.runtime_error}
            return Grade(0.0, {"python_grader_runtime_error"}, details=details)
        return Grade(outcome.score if outcome.score is not None else 0.0)
