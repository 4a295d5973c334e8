"""The watching twins: `jobs watch | metrics | compare | pause | resume | cancel`, and what
`jobs show` prints now that metrics have their own command. Against the real local backend
in manual time; the watch loop's pause is a parameter, so nothing sleeps."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.cli.jobs_watch import watch_job
from tunedeck.cli.main import main
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.watch.overfit import Verdict


def use_compatible_profile(home, base_url: str) -> None:
    config_dir = home / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(
        f'default_profile = "bench"\n[profiles.bench]\nbackend = "compatible"\n'
        f'base_url = "{base_url}"\napi_key_env = "BENCH_KEY"\n',
        encoding="utf-8",
    )


@pytest.fixture
def cli_backend(isolated_home, manual_backend, monkeypatch):
    """The CLI's default profile points at the manual backend."""
    use_compatible_profile(isolated_home, manual_backend.base_url)
    monkeypatch.setenv("BENCH_KEY", manual_backend.api_key)
    return manual_backend


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _launch(backend, path, steps: int | None, n: int = 1, **request) -> list[str]:
    service = await open_service(local_backend=backend)
    await service.connect()
    ids = []
    try:
        for _ in range(n):
            job = await service.launch(LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, **request))
            ids.append(job.id)
            if steps is not None:
                await asyncio.to_thread(backend.advance, job.id, steps)
        if steps is None:
            await asyncio.to_thread(backend.run_until_settled)
    finally:
        await service.close()
    return ids


def launch(backend, path, steps: int | None = None, n: int = 1, **request) -> list[str]:
    """Launch `n` jobs on the local profile; train `steps` steps of each (None: to the end)."""
    return asyncio.run(_launch(backend, path, steps, n, **request))


# -- watch ----------------------------------------------------------------------------------


async def test_watch_streams_messages_and_one_line_per_step_then_exits_0(backend, sft_file):
    service = await open_service(local_backend=backend)
    await service.connect()
    try:
        job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL, n_epochs=1))
        await backend.advance_async(job.id, 2)
        waits: list[float] = []

        async def sleep(seconds: float) -> None:  # a poll's pause: the backend moves on instead
            waits.append(seconds)
            await backend.advance_async(job.id, 3)

        out: list[str] = []
        err: list[str] = []
        code = await watch_job(service, job.id, interval=0.5, sleep=sleep, out=out.append, err=err.append)
    finally:
        await service.close()
    assert code == 0 and err == []
    assert waits and set(waits) == {0.5}
    assert out[0].startswith(f"{job.id}  {BUILTIN_BASE_MODEL}  SFT  ")
    assert any("Created fine-tuning job" in line for line in out)
    steps = [int(line.split("step ")[1].split("/")[0]) for line in out if "  step " in line]
    total = int(next(line for line in out if "  step " in line).split("/")[1].split()[0])
    assert steps == list(range(1, total + 1))  # one line per step, in order, none twice
    assert "train_loss " in next(line for line in out if "  step 1/" in line)
    assert out[-1].startswith(f"{job.id} succeeded: ft:")


async def test_watch_prints_the_advice_once_when_the_detector_alarms(backend, sft_file, monkeypatch):
    import tunedeck.core.watch.overfit as overfit_module

    def fake_assess(series, *, method, n_epochs=None, checkpoint_steps=None, finished=False, rule=None, **_):
        alarm = (series.last_step() or 0) >= 4
        return Verdict(
            state="overfitting" if alarm else "ok",
            fired_at_step=4 if alarm else None,
            best_step=2,
            best_metric="valid_loss",
            best_value=1.0,
            advice="stop now: validation loss has risen since step 2; use the checkpoint at step 2",
            reasons=(),
        )

    monkeypatch.setattr(overfit_module, "assess", fake_assess)
    service = await open_service(local_backend=backend)
    await service.connect()
    try:
        job = await service.launch(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL, n_epochs=1))

        async def sleep(seconds: float) -> None:
            await backend.advance_async(job.id, 2)

        out: list[str] = []
        code = await watch_job(service, job.id, sleep=sleep, out=out.append, err=out.append)
    finally:
        await service.close()
    assert code == 0
    assert [line for line in out if line.startswith("!")] == [
        "! overfitting: stop now: validation loss has risen since step 2; use the checkpoint at step 2"
    ]


def test_watch_exits_0_on_succeeded_and_1_on_cancelled(capsys, cli_backend, sft_file):
    (done,) = launch(cli_backend, sft_file)
    code, out, err = run_cli(capsys, "jobs", "watch", done)
    assert code == 0
    assert out.splitlines()[-1].startswith(f"{done} succeeded: ft:")
    assert "  step " in out  # the newest cached step

    (running,) = launch(cli_backend, sft_file, steps=2)
    code, out, _ = run_cli(capsys, "jobs", "cancel", running)
    assert (code, out) == (0, f"{running} cancelled\n")
    code, out, _ = run_cli(capsys, "jobs", "watch", running, "--interval", "0.5")
    assert code == 1
    assert out.splitlines()[-1] == f"{running} cancelled"


@pytest.mark.parametrize("interval", ["0", "0.4", "-1", "nan", "inf", "soon"])
def test_watch_takes_an_interval_of_at_least_half_a_second(capsys, cli_backend, interval):
    with pytest.raises(SystemExit) as info:
        main(["jobs", "watch", "ftjob-x", "--interval", interval])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --interval" in err
    assert "at least 0.5 seconds" in err or "finite" in err or "not a number" in err


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_csv_has_every_column_and_one_row_per_step(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file)
    code, out, _ = run_cli(capsys, "jobs", "metrics", job_id, "--csv")
    assert code == 0
    table = list(csv.reader(io.StringIO(out)))
    header, rows = table[0], table[1:]
    assert header[0] == "step" and "train_loss" in header and "train_mean_token_accuracy" in header
    assert "total_steps" not in header
    assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
    assert all(len(row) == len(header) for row in rows)
    loss = header.index("train_loss")
    assert all(float(row[loss]) >= 0 for row in rows)

    code, text, _ = run_cli(capsys, "jobs", "metrics", job_id)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["step", "train_loss"] or "train_loss" in lines[0].split()
    assert len(lines) == len(rows) + 1


def test_metrics_offline_reads_the_cache(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file)
    run_cli(capsys, "jobs", "show", job_id)  # caches it under the bench profile
    code, out, _ = run_cli(capsys, "jobs", "metrics", job_id, "--csv", "--offline")
    assert code == 0 and out.startswith("step,")
    code, _, err = run_cli(capsys, "jobs", "metrics", "ftjob-nope", "--offline")
    assert code == 1 and "no job 'ftjob-nope'" in err


# -- compare ---------------------------------------------------------------------------------


def test_compare_sets_jobs_side_by_side(capsys, cli_backend, sft_file):
    (a,) = launch(cli_backend, sft_file, n_epochs=1)
    (b,) = launch(cli_backend, sft_file, n_epochs=2)
    code, out, _ = run_cli(capsys, "jobs", "compare", a, b, "--json")
    assert code == 0
    shown = json.loads(out)
    assert tuple(shown["job_ids"]) == (a, b)
    assert shown["settings"] and shown["results"]

    code, out, _ = run_cli(capsys, "jobs", "compare", a, b)
    assert code == 0
    lines = out.splitlines()
    assert a in lines[0] and b in lines[0]
    assert "settings" in lines and "results" in lines
    assert any(line.startswith("*") for line in lines)  # the epochs differ


def test_compare_needs_two_jobs(capsys, cli_backend, sft_file):
    code, _, err = run_cli(capsys, "jobs", "compare", "ftjob-a")
    assert code == 2 and "two or more" in err
    code, out, err = run_cli(capsys, "jobs", "compare", "ftjob-a", "ftjob-a")  # one job named twice
    assert (code, out) == (2, "") and "two or more different job ids" in err


# -- pause, resume, cancel ---------------------------------------------------------------------


def test_pause_resume_cancel_print_the_new_status(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file, steps=3)
    assert run_cli(capsys, "jobs", "pause", job_id) == (0, f"{job_id} paused\n", "")
    assert run_cli(capsys, "jobs", "resume", job_id) == (0, f"{job_id} queued\n", "")
    assert run_cli(capsys, "jobs", "cancel", job_id)[:2] == (0, f"{job_id} cancelled\n")

    code, out, err = run_cli(capsys, "jobs", "pause", job_id)
    assert code == 1 and out == ""
    assert err == f"tunedeck: job {job_id} already cancelled: a finished job cannot be paused\n"

    code, out, err = run_cli(capsys, "jobs", "resume", "ftjob-nope")
    assert (code, out, err) == (1, "", "tunedeck: no job 'ftjob-nope' in profile 'bench'\n")


def test_actions_print_json_with_the_jobs_new_state(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file, steps=3)
    code, out, err = run_cli(capsys, "jobs", "pause", job_id, "--json")
    assert code == 0, err
    answered = json.loads(out)
    assert answered["profile"] == "bench" and answered["action"] == "pause"
    assert answered["job"]["id"] == job_id and answered["job"]["status"] == "paused"
    code, out, _ = run_cli(capsys, "jobs", "cancel", job_id, "--json")
    assert code == 0 and json.loads(out)["job"]["status"] == "cancelled"


def test_resume_of_a_job_that_is_not_paused_says_so(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file, steps=3)
    code, out, err = run_cli(capsys, "jobs", "resume", job_id, "--json")
    assert code == 1 and out == ""
    assert err == f"tunedeck: job {job_id} is running, not paused: there is nothing to resume\n"
    assert run_cli(capsys, "jobs", "pause", job_id)[0] == 0
    code, out, err = run_cli(capsys, "jobs", "pause", job_id)
    assert code == 1 and "is already paused" in err and f"tunedeck jobs resume {job_id}" in err


def test_pause_on_a_provider_without_pause_names_the_provider(capsys, cli_backend, sft_file, monkeypatch):
    from tunedeck.core.api import Api, ApiError

    (job_id,) = launch(cli_backend, sft_file, steps=3)

    async def no_pause_route(self, job_id):  # what the SDK's 404 for a missing route becomes
        raise ApiError("not_found", "HTTP 404: Not Found", 404)

    monkeypatch.setattr(Api, "pause_job", no_pause_route)
    code, out, err = run_cli(capsys, "jobs", "pause", job_id)
    assert code == 1 and out == ""
    assert f"cannot pause {job_id}: the provider of profile 'bench' ({cli_backend.base_url}) has no pause" in err
    code, out, _ = run_cli(capsys, "jobs", "show", job_id, "--json", "--offline")
    assert code == 0 and json.loads(out)["job"]["status"] == "running"  # refused, so untouched


def test_actions_need_a_connection(capsys, isolated_home, manual_backend):
    use_compatible_profile(isolated_home, manual_backend.base_url)  # no BENCH_KEY: offline
    code, out, err = run_cli(capsys, "jobs", "pause", "ftjob-a")
    assert code == 1 and out == ""
    assert "cannot pause ftjob-a: not connected" in err


# -- show ------------------------------------------------------------------------------------


def test_show_prints_messages_and_a_metrics_summary_and_json_the_verdict(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file)
    code, out, _ = run_cli(capsys, "jobs", "show", job_id)
    assert code == 0
    assert "Created fine-tuning job" in out
    assert "Step 1/" not in out and "step 1/" not in out  # metrics have their own command
    summary = [line for line in out.splitlines() if line.startswith("metrics: ")]
    assert len(summary) == 1 and f"tunedeck jobs metrics {job_id}" in summary[0]
    assert "overfitting:" in out and "checkpoint:" in out

    code, out, _ = run_cli(capsys, "jobs", "show", job_id, "--json")
    shown = json.loads(out)
    assert Verdict.from_json(shown["overfitting"]).state == shown["overfitting"]["state"]
    steps = [c["step_number"] for c in shown["checkpoints"]]
    assert steps and steps == sorted(steps, reverse=True)
    assert shown["metrics"]  # kept for scripts that read them here


def test_show_names_a_checkpoint_the_job_kept(capsys, cli_backend, sft_file, monkeypatch):
    """A finished job's verdict is worked out with the checkpoints the provider kept, which
    `jobs show` lists: not the verdict stored before they were known."""
    import tunedeck.core.watch.overfit as overfit_module

    def fake_assess(series, *, checkpoint_steps=None, **_):
        best = max(checkpoint_steps) if checkpoint_steps else None
        return Verdict("ok", None, best, "valid_loss", 1.0, f"use the checkpoint at step {best}", ())

    monkeypatch.setattr(overfit_module, "assess", fake_assess)
    (job_id,) = launch(cli_backend, sft_file)
    code, out, _ = run_cli(capsys, "jobs", "show", job_id, "--json")
    shown = json.loads(out)
    kept = max(c["step_number"] for c in shown["checkpoints"])
    assert code == 0 and shown["overfitting"]["best_step"] == kept
    assert shown["overfitting"]["advice"] == f"use the checkpoint at step {kept}"
    code, out, _ = run_cli(capsys, "jobs", "show", job_id, "--offline")
    assert f"overfitting: ok: use the checkpoint at step {kept}" in out


def test_list_json_carries_the_verdict(capsys, cli_backend, sft_file):
    (job_id,) = launch(cli_backend, sft_file)
    run_cli(capsys, "jobs", "show", job_id)
    code, out, _ = run_cli(capsys, "jobs", "list", "--json")
    (row,) = json.loads(out)["jobs"]
    assert code == 0 and row["overfitting"]["state"]
