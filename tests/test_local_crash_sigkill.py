"""A real crash: `tunedeck serve` as a process of its own, SIGKILLed while a job trains, then
started again on the same data directory. The job resumes from its latest resume point,
finishes, and its events report every step exactly once.

Real time here (the server paces steps at its demo speed, 0.05 s), so every wait is a poll
with a deadline, never a fixed sleep."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, load_or_create_api_key

T = TypeVar("T")
DEADLINE_S = 30.0
RESUMED = re.compile(r"Fine-tuning job resumed from step (\d+)/200 after the local backend restarted; "
                     r"training continues from step (\d+)")  # fmt: skip

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


class Server:
    """`python -m tunedeck.cli serve` on a data directory and a free port, with an SDK client."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        command = [sys.executable, "-m", "tunedeck.cli", "serve", "--data-dir", str(data_dir), "--port", "0"]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        base_url = self.wait_for("its address", self._endpoint)
        key = load_or_create_api_key(data_dir)  # made before the address was published
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)

    def _endpoint(self) -> str | None:
        try:
            published = json.loads((self.data_dir / "endpoint.json").read_text())
        except (OSError, ValueError):
            return None
        # A killed server leaves its endpoint file behind: wait for this process's own.
        return published.get("base_url") if published.get("pid") == self.process.pid else None

    def wait_for(self, what: str, probe: Callable[[], T | None]) -> T:
        """Poll `probe` until it returns something; fail after DEADLINE_S, or if the server dies."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}) before {what}:\n{self.output()}")
            found = probe()
            if found is not None:
                return found
            time.sleep(0.05)
        pytest.fail(f"no {what} after {DEADLINE_S} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    """Oldest first, every page."""
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    return [e.data["step"] for e in reversed(events) if e.type == "metrics"]


def resume_point_step(data_dir: Path, job_id: str) -> int | None:
    found = [int(p.name.rsplit("-", 1)[1]) for p in (data_dir / "models" / "paused" / job_id).glob("resume-step-*")]
    return max(found) if found else None


def test_a_sigkilled_server_resumes_the_job_from_its_checkpoint_and_reports_each_step_once(tmp_path):
    data_dir = tmp_path / "backend"
    training = generate_dataset("sft", 400, tmp_path / "f.jsonl", "--learnable")
    first = Server(data_dir, tmp_path / "first.log")
    try:
        file = first.client.files.create(file=("f.jsonl", training.read_bytes()), purpose="fine-tune")
        method: dict[str, Any] = {
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}},
        }
        job = first.client.fine_tuning.jobs.create(
            model=BUILTIN_BASE_MODEL, training_file=file.id, seed=3, method=method
        )
        point = first.wait_for("resume point", lambda: resume_point_step(data_dir, job.id))
        first.wait_for("step past the point", lambda: max(metric_steps(first.client, job.id)) > point or None)
    finally:
        first.kill()  # SIGKILL: no pause, no clean stop, whatever was in flight is lost

    second = Server(data_dir, tmp_path / "second.log")
    try:
        before = metric_steps(second.client, job.id)
        assert before == list(range(1, len(before) + 1)) and point < len(before) < 200
        status = second.wait_for(
            "the job's end",
            lambda: (
                (s := second.client.fine_tuning.jobs.retrieve(job.id).status) in ("succeeded", "failed") and s or None
            ),
        )
        assert status == "succeeded", second.client.fine_tuning.jobs.retrieve(job.id).error
        assert metric_steps(second.client, job.id) == list(range(1, 201))  # each step once, no gap
        said = [e.message for e in second.client.fine_tuning.jobs.list_events(job.id, limit=100)]
        resumed = [m for m in map(RESUMED.fullmatch, said) if m is not None]
        assert len(resumed) == 1
        at, continues = int(resumed[0][1]), int(resumed[0][2])
        assert point <= at <= len(before) and continues == at + 1  # from the killed server's latest point
        assert resume_point_step(data_dir, job.id) is None  # gone with the finished run
    finally:
        second.kill()
