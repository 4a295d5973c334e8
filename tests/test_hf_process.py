"""The server's side of worker processes, with a fake worker (no torch): replies, notices,
bad replies, a dying worker, and a cancel that lands while a step is in flight."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tunedeck.backend.stop_sequences import cut_at_stop, cut_pieces
from tunedeck.backend.trainers.base import TrainingFailure
from tunedeck.backend.trainers.transformer.server import process
from tunedeck.backend.trainers.transformer.server.process import SubprocessRun, WorkerGone

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
    assert cut_pieces(["Hel", "lo ST", "OP and"], 6) == ["Hel", "lo "]
    assert cut_pieces(["ab", "cd"], 0) == []
    pieces = ["Hel", "lo ST", "OP and"]
    assert cut_at_stop(pieces, ["XX", "STOP"]) and pieces == ["Hel", "lo "]
    assert not cut_at_stop(pieces, ["XX"]) and pieces == ["Hel", "lo "]


def test_workers_never_import_from_the_current_directory(tmp_path, monkeypatch):
    """Started from a folder that holds a module of the worker's name (a checkout's `tunedeck/`
    beside a regular install does this), the worker still runs the installed code."""
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    (decoy / "fake_worker.py").write_text("import sys\nsys.exit(41)\n")
    monkeypatch.chdir(decoy)
    run = run_with("ok", tmp_path)
    try:
        assert run.total_steps == 3 and run.step().step == 1
    finally:
        run.close()
