"""Output into a pipe the reader has closed (`tunedeck jobs show ID | head`) ends quietly, as
Unix tools do: exit 0, nothing on stderr, for every command that prints. The commands run in
a process of their own, their stdout the write end of a pipe whose read end is already
closed, so the first write (or the final flush) meets EPIPE for certain."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from conftest import launch_and_finish


def run_into_closed_pipe(*argv: str, unbuffered: bool) -> subprocess.CompletedProcess[str]:
    """`tunedeck ARGV | true`, with the reader gone before the first byte is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ)
    if unbuffered:  # every print writes at once: the error is met mid-command, not at exit
        env["PYTHONUNBUFFERED"] = "1"
    else:
        env.pop("PYTHONUNBUFFERED", None)
    try:
        return subprocess.run(
            [sys.executable, "-m", "tunedeck.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.fixture
def cached_job(isolated_home, manual_backend, sft_file) -> str:
    """A finished job in the local profile's cache (read with --offline: no backend started)."""
    return asyncio.run(launch_and_finish(manual_backend, sft_file))


@pytest.mark.parametrize("unbuffered", [False, True], ids=["flushed-at-exit", "written-at-once"])
def test_jobs_show_and_list_into_a_closed_pipe_exit_0_without_a_traceback(cached_job, unbuffered):
    for argv in (
        ("--profile", "local", "jobs", "show", cached_job, "--offline"),
        ("--profile", "local", "jobs", "show", cached_job, "--offline", "--json"),
        ("--profile", "local", "jobs", "list", "--offline"),
        ("--profile", "local", "jobs", "metrics", cached_job, "--offline"),
    ):
        done = run_into_closed_pipe(*argv, unbuffered=unbuffered)
        assert (done.returncode, done.stderr) == (0, ""), argv


def test_data_and_other_commands_into_a_closed_pipe_exit_0(isolated_home, sft_file):
    for argv in (
        ("data", "validate", str(sft_file)),
        ("data", "stats", str(sft_file)),
        ("paths",),
        ("profiles",),
        ("models", "--on-disk"),
        ("eval", "list"),
    ):
        done = run_into_closed_pipe(*argv, unbuffered=True)
        assert (done.returncode, done.stderr) == (0, ""), argv


def test_a_command_that_fails_keeps_its_exit_code_into_a_closed_pipe(isolated_home, tmp_path):
    """Only the closed pipe is forgiven: an error still says so and exits as documented."""
    done = run_into_closed_pipe("data", "validate", str(tmp_path / "missing.jsonl"), unbuffered=True)
    assert done.returncode == 2 and "missing.jsonl" in done.stderr and "Traceback" not in done.stderr
