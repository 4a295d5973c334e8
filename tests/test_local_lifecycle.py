"""The local backend as the app and `tunedeck serve` run it: in its own thread with the sync
SDK, in automatic time, across restarts of the same data directory, and as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend, load_or_create_api_key
from tunedeck.backend.ownership import BackendBusy
from tunedeck.backend.trainers.base import StepMetrics, Trainer, TrainingRun


def test_sync_client_uploads_lists_and_trains_in_thread_mode(tmp_path, sft_file):
    backend = LocalBackend(tmp_path / "b", auto_advance=False)
    base_url = backend.start()
    try:
        assert base_url == backend.base_url and base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=base_url, api_key=backend.api_key, max_retries=0)
        file = client.files.create(file=sft_file, purpose="fine-tune")
        assert [f.id for f in client.files.list()] == [file.id]
        job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
        assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]

        running = backend.advance(job.id, 2)
        assert running["status"] == "running"
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
        backend.run_until_settled()
        assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
        with pytest.raises(KeyError):
            backend.advance("ftjob-unknown")
        client.close()
    finally:
        backend.stop()
    assert backend.base_url is None


async def test_auto_advance_trains_by_itself(tmp_path, sft_file):
    backend = LocalBackend(tmp_path / "b", step_delay=0)  # the product default mode, unpaced
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    try:
        file = await client.files.create(file=sft_file, purpose="fine-tune")
        jobs = [await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id) for _ in range(3)]
        await backend.run_until_settled_async()  # awaits the background drivers; no polling, no sleeps
        for job in jobs:
            assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
    finally:
        await client.close()
        await backend.stop_async()


def tickets(n: int) -> bytes:
    """`n` learnable classification examples: a cue word names the label."""
    cues = {"billing": "invoice", "shipping": "parcel", "account": "password", "technical": "crash"}
    lines = []
    for i in range(n):
        label = list(cues)[i * 7 % len(cues)]
        text = f"ticket {i} says my {cues[label]} needs attention please"
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
        lines.append(json.dumps({"messages": messages}) + "\n")
    return "".join(lines).encode()


async def test_a_500_example_job_trains_in_seconds(tmp_path):
    backend = LocalBackend(tmp_path / "b", step_delay=0)
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    try:
        file = await client.files.create(file=("big.jsonl", tickets(500)), purpose="fine-tune")
        started = time.perf_counter()
        job = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
        await backend.run_until_settled_async()
        elapsed = time.perf_counter() - started
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded" and done.hyperparameters.n_epochs == 3
        assert elapsed < 10
    finally:
        await client.close()
        await backend.stop_async()


async def test_jobs_files_and_events_survive_a_restart(tmp_path, sft_file):
    data_dir = tmp_path / "b"
    first = LocalBackend(data_dir, auto_advance=False)
    client = openai.AsyncOpenAI(base_url=await first.start_async(), api_key=first.api_key, max_retries=0)
    file = await client.files.create(file=sft_file, purpose="fine-tune")
    finished = await client.fine_tuning.jobs.create(
        model=BUILTIN_BASE_MODEL, training_file=file.id, metadata={"k": "v"}
    )
    await first.run_until_async(finished.id, "succeeded")
    interrupted = await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id)
    await first.advance_async(interrupted.id, 3)
    finished_events = [e.id for e in (await client.fine_tuning.jobs.list_events(finished.id, limit=1000)).data]
    model = (await client.fine_tuning.jobs.retrieve(finished.id)).fine_tuned_model
    await client.close()
    await first.stop_async()

    second = LocalBackend(data_dir, auto_advance=False)
    client = openai.AsyncOpenAI(base_url=await second.start_async(), api_key=second.api_key, max_retries=0)
    try:
        assert [j.id async for j in client.fine_tuning.jobs.list(limit=1)] == [interrupted.id, finished.id]
        events_now = (await client.fine_tuning.jobs.list_events(finished.id, limit=1000)).data
        assert [e.id for e in events_now] == finished_events
        assert (await client.fine_tuning.jobs.retrieve(finished.id)).metadata == {"k": "v"}
        assert model in [m.id for m in (await client.models.list()).data]
        assert (await client.files.content(file.id)).read() == sft_file.read_bytes()

        requeued = await client.fine_tuning.jobs.retrieve(interrupted.id)
        assert requeued.status == "queued"
        newest = (await client.fine_tuning.jobs.list_events(interrupted.id, limit=1)).data[0]
        assert "restarted" in newest.message and "re-queued" in newest.message
        await second.run_until_settled_async()
        assert (await client.fine_tuning.jobs.retrieve(interrupted.id)).status == "succeeded"
    finally:
        await client.close()
        await second.stop_async()


async def test_one_backend_per_data_directory(tmp_path):
    first = LocalBackend(tmp_path / "b", auto_advance=False)
    base_url = await first.start_async()
    try:
        with pytest.raises(BackendBusy) as info:
            await LocalBackend(tmp_path / "b", auto_advance=False).start_async()
        assert info.value.base_url == base_url
    finally:
        await first.stop_async()


def test_serve_prints_its_url_and_stops_on_ctrl_c(tmp_path):
    code = "import sys; from tunedeck.backend import serve; serve(sys.argv[1], port=0)"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "served")], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        assert found, line
        base_url = found.group(0)
        key = load_or_create_api_key(tmp_path / "served")
        models = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(models, timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == BUILTIN_BASE_MODEL
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        process.stdout.close()


class FlakyRun(TrainingRun):
    """A run whose third step crashes, like a trainer bug or a full disk."""

    total_steps, steps_per_epoch = 10, 5

    def __init__(self) -> None:
        self.done = 0

    def step(self):
        self.done += 1
        if self.done == 3:
            raise RuntimeError("disk full")
        return StepMetrics(self.done, self.total_steps, 1.0, 0.5)

    def save(self, path) -> None:
        path.write_bytes(b"weights")


class FlakyTrainer(Trainer):
    def base_models(self) -> list[str]:
        return ["flaky-model"]

    def supports(self, method: str) -> bool:
        return True

    def start(self, spec):
        return FlakyRun()


async def test_a_crashing_trainer_fails_its_job_not_the_server(tmp_path, sft_file):
    backend = LocalBackend(tmp_path / "b", auto_advance=False, trainers=[FlakyTrainer()])
    client = openai.AsyncOpenAI(base_url=await backend.start_async(), api_key=backend.api_key, max_retries=0)
    try:
        assert [m.id for m in (await client.models.list()).data] == ["flaky-model"]
        file = await client.files.create(file=sft_file, purpose="fine-tune")
        job = await client.fine_tuning.jobs.create(model="flaky-model", training_file=file.id)
        await backend.run_until_settled_async()
        failed = await client.fine_tuning.jobs.retrieve(job.id)
        assert failed.status == "failed" and failed.error.code == "internal_error"
        assert "disk full" in failed.error.message
        steps = [e.data["step"] for e in (await client.fine_tuning.jobs.list_events(job.id, limit=100)).data if e.data]
        assert steps == [2, 1]
    finally:
        await client.close()
        await backend.stop_async()


def test_an_endpoint_file_left_by_a_dead_backend_is_never_read_beside_a_live_lock(tmp_path):
    """A killed backend leaves its endpoint file; the next one takes the lock before it
    listens. In between, nothing may read the dead address and pid (stop would signal a
    stranger's process)."""
    from tunedeck.backend import find_running
    from tunedeck.backend.ownership import ENDPOINT_NAME, Ownership

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / ENDPOINT_NAME).write_text(json.dumps({"base_url": "http://127.0.0.1:9/v1", "pid": 999_999}))
    claimed = Ownership.claim(data_dir)
    try:
        assert find_running(data_dir) is None  # served, but not yet listening anywhere
        claimed.publish("http://127.0.0.1:10/v1")
        running = find_running(data_dir)
        assert running is not None and (running.base_url, running.pid) == ("http://127.0.0.1:10/v1", os.getpid())
    finally:
        claimed.release()
    assert find_running(data_dir) is None
