"""The server's side of worker processes, with a fake worker (no torch): replies, notices,
bad replies, a dying worker, and a cancel that lands while a step is in flight."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tunedeck.core.local.hf import process
from tunedeck.core.local.hf.chatting import _cut
from tunedeck.core.local.hf.process import SubprocessRun, WorkerGone
from tunedeck.core.local.trainer import TrainingFailure

TESTS = str(Path(__file__).parent)


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch):
    monkeypatch.setattr(process, "WORKER_MODULE", "fake_worker")


def run_with(behaviour: str, tmp_path: Path) -> SubprocessRun:
    return SubprocessRun({"behaviour": behaviour}, tmp_path / "logs", env={"PYTHONPATH": TESTS})


def test_a_step_reply_becomes_step_metrics_and_notices_become_events(tmp_path):
    run = run_with("ok", tmp_path)
    try:
        assert run.total_steps == 3 and run.steps_per_epoch == 1
        assert run.take_notices() == [("warn", "warming up")]
        metrics = run.step()
        assert metrics.step == 1 and metrics.train_loss == 1.5
        assert metrics.extra == {"valid_reward_mean": 0.5}  # method metrics travel in `extra`
        assert run.seconds_per_step is not None
    finally:
        run.close()


def test_a_reply_that_is_not_an_object_fails_clearly(tmp_path):
    run = run_with("bad-reply", tmp_path)
    try:
        with pytest.raises(TrainingFailure, match="bad reply: '42"):
            run.step()
    finally:
        run.close()


def test_a_dying_worker_fails_the_step_with_its_exit_code_and_log(tmp_path):
    run = run_with("die", tmp_path)
    try:
        with pytest.raises(TrainingFailure) as failure:
            run.step()
        assert "exit code 3" in failure.value.message and "illegal memory access" in failure.value.message
    finally:
        run.close()


def test_close_during_a_step_ends_the_worker_and_the_step(tmp_path):
    run = run_with("hang", tmp_path)
    pid = run.pid
    outcome: list[BaseException] = []

    def step() -> None:
        try:
            run.step()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=step)
    thread.start()
    run.close()  # what a cancel does, from the event loop's thread
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerGone)
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    with pytest.raises(WorkerGone):
        run.step()  # a closed run never starts another worker


def test_stop_sequences_that_span_tokens_are_cut_out_whole():
    assert _cut(["Hel", "lo ST", "OP and"], 6) == ["Hel", "lo "]
    assert _cut(["ab", "cd"], 0) == []
