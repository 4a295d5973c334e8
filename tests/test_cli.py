"""The headless twins: JSON on stdout, diagnostics on stderr, documented exit codes."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import launch_and_finish

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.cli.main import main
from tunedeck.core import __version__
from tunedeck.core.bootstrap import open_service


def use_compatible_profile(home, base_url: str) -> None:
    config_dir = home / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(
        f'default_profile = "bench"\n[profiles.bench]\nbackend = "compatible"\n'
        f'base_url = "{base_url}"\napi_key_env = "BENCH_KEY"\n',
        encoding="utf-8",
    )


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_jobs_list_and_show_json_over_a_compatible_profile(capsys, isolated_home, manual_backend, sft_file, monkeypatch):
    job_id = asyncio.run(launch_and_finish(manual_backend, sft_file))
    use_compatible_profile(isolated_home, manual_backend.base_url)
    monkeypatch.setenv("BENCH_KEY", manual_backend.api_key)

    code, out, _ = run_cli(capsys, "jobs", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["profile"] == "bench"
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert listed["jobs"][0]["status"] == "succeeded"

    code, out, _ = run_cli(capsys, "jobs", "show", job_id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["job"]["id"] == job_id
    assert shown["metrics"] and shown["metrics"][-1]["step"] == shown["metrics"][-1]["total_steps"]
    messages = [e["message"] for e in shown["events"]]
    assert messages[0].startswith("Created fine-tuning job")


def test_offline_listing_reads_the_cache_only(capsys, isolated_home, manual_backend, sft_file, monkeypatch):
    job_id = asyncio.run(launch_and_finish(manual_backend, sft_file))
    # The cached rows belong to the local profile; no network is touched with --offline.
    code, out, _ = run_cli(capsys, "--profile", "local", "jobs", "list", "--json", "--offline")
    assert code == 0
    assert [j["id"] for j in json.loads(out)["jobs"]] == [job_id]


def test_missing_key_falls_back_to_cache_and_says_why(capsys, isolated_home, manual_backend):
    use_compatible_profile(isolated_home, manual_backend.base_url)
    code, out, err = run_cli(capsys, "jobs", "list", "--json")
    assert code == 0
    assert json.loads(out)["jobs"] == []
    assert "set BENCH_KEY" in err


def test_unknown_profile_is_a_usage_error(capsys):
    code, out, err = run_cli(capsys, "--profile", "nope", "jobs", "list")
    assert code == 2 and out == ""
    assert "no profile named 'nope'" in err


def test_unknown_job_fails_with_exit_1(capsys, isolated_home, manual_backend, monkeypatch):
    use_compatible_profile(isolated_home, manual_backend.base_url)
    monkeypatch.setenv("BENCH_KEY", manual_backend.api_key)
    code, out, err = run_cli(capsys, "jobs", "show", "ftjob-doesnotexist")
    assert code == 1 and out == ""
    assert "404" in err or "no job" in err


def test_models_lists_open_models_found_on_disk_as_json(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "models" / "acme" / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("TUNEDECK_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "--on-disk", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    entry = next(m for m in report["models"] if m["name"] == "acme/tiny")
    assert entry["path"] == str(folder) and entry["gguf_file"] is None
    assert report["searched"][0] == f"models folder {tmp_path / 'models'}"
    assert isinstance(report["trainer_installed"], bool)
    assert main(["models", "--on-disk"]) == 0
    assert "acme/tiny  (models folder" in capsys.readouterr().out


async def _form_choices(backend) -> list[str]:
    """The ids the launch form offers: what the app's models worker asks the service for."""
    service = await open_service(local_backend=backend)
    await service.connect()
    try:
        return [choice.id for choice in await service.model_choices()]
    finally:
        await service.close()


def test_models_lists_what_the_launch_form_offers_on_the_local_profile(
    capsys, isolated_home, manual_backend, sft_file, monkeypatch
):
    import tunedeck.core.bootstrap as bootstrap

    asyncio.run(launch_and_finish(manual_backend, sft_file))  # a fine-tuned model to continue from
    real_open = bootstrap.open_service
    monkeypatch.setattr(
        bootstrap, "open_service", lambda name=None, **kw: real_open(name, local_backend=manual_backend, **kw)
    )
    offered = asyncio.run(_form_choices(manual_backend))
    assert offered[0] == BUILTIN_BASE_MODEL and any(m.startswith("ft:") for m in offered)

    code, out, err = run_cli(capsys, "--profile", "local", "models", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["profile"] == "local"
    assert [m["id"] for m in listed["models"]] == offered
    assert listed["models"][0]["fine_tunable"] is True and listed["models"][0]["label"].startswith(BUILTIN_BASE_MODEL)

    code, out, _ = run_cli(capsys, "--profile", "local", "models")
    lines = out.splitlines()
    assert code == 0 and "no open models" not in out
    assert [line.split("  ·  ")[0] for line in lines[: len(offered)]] == offered
    assert lines[-1] == "(open models on this machine, and where they were looked for: tunedeck models --on-disk)"


def test_models_without_a_connection_says_why_and_exits_1(capsys, isolated_home, manual_backend):
    use_compatible_profile(isolated_home, manual_backend.base_url)  # no BENCH_KEY
    code, out, err = run_cli(capsys, "models")
    assert code == 1 and out == ""
    assert err.startswith("tunedeck: cannot list models: ") and "BENCH_KEY" in err


def test_the_headless_cli_loads_nothing_of_the_tui():
    """Job descriptions come from core: only starting the full-screen app imports the TUI."""
    import subprocess
    import sys

    code = "import sys, tunedeck.cli.main\nprint('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert not [m for m in loaded if m.startswith("tunedeck.tui") or m.split(".")[0] in ("rich", "textual")]
    assert "tunedeck.core.describe" in loaded


def test_compute_lists_the_backends_devices_and_who_holds_them(capsys, isolated_home, tmp_path, monkeypatch):
    import tunedeck.core.bootstrap as bootstrap
    from tunedeck.backend import LocalBackend
    from tunedeck.backend.compute import Device

    gpus = [Device("cuda:0", "Big GPU", 80 * 2**30), Device("cuda:1", "Big GPU", 80 * 2**30), Device("cpu", "CPU")]
    backend = LocalBackend(tmp_path / "backend", auto_advance=False, devices=gpus)
    backend.start()
    real_open = bootstrap.open_service
    monkeypatch.setattr(bootstrap, "open_service", lambda name=None, **kw: real_open(name, local_backend=backend, **kw))
    try:
        code, out, err = run_cli(capsys, "--profile", "local", "compute", "--json")
        assert code == 0, err
        listed = json.loads(out)
        assert [d["id"] for d in listed["devices"]] == ["cuda:0", "cuda:1", "cpu"] and listed["waiting"] == []
        assert listed["devices"][0] == {"id": "cuda:0", "name": "Big GPU", "memory_bytes": 80 * 2**30, "fake": False, "job": None}
        code, out, _ = run_cli(capsys, "--profile", "local", "compute")
        assert code == 0 and out.splitlines()[0].split() == ["cuda:0", "GPU", "80", "GiB", "free", "Big", "GPU"]
        assert backend.devices_text() == "cuda:0 (Big GPU, 80 GiB), cuda:1 (Big GPU, 80 GiB), the CPU"
    finally:
        backend.stop()


def test_a_compute_view_keeps_only_what_it_can_read():
    from tunedeck.core.compute import ComputeView

    raw = {"devices": [{"id": "cuda:0", "name": "x", "memory_bytes": True, "job": 3}, "junk", {"name": "no id"}],
           "waiting": ["ftjob-1", 2]}  # fmt: skip
    view = ComputeView.from_json(raw)
    assert [(d.id, d.memory_bytes, d.job) for d in view.devices] == [("cuda:0", None, None)]
    assert view.waiting == ["ftjob-1"] and ComputeView.from_json("nope") == ComputeView()


def test_a_clusters_running_ranks_are_its_devices_in_use():
    from tunedeck.core.compute import ComputeView

    node = {"node_ip": "10.0.0.2", "alive": True, "resources": {"GPU": 8, "CPU": 64}}
    jobs = [
        {"job": "ftjob-a", "rank": 0, "node_ip": "10.0.0.2", "host": "gpu-a", "gpus": ["3"]},
        {"job": "ftjob-a", "rank": 1, "node_ip": "10.0.0.3", "host": "gpu-b", "gpus": ["0"]},
        {"job": "ftjob-b", "rank": 0, "node_ip": "10.0.0.3", "host": "gpu-b", "gpus": []},
        {"job": "ftjob-c", "node_ip": "10.0.0.3"},  # no rank: left out
        "junk",
    ]
    raw = {"devices": [], "cluster": {"ray_address": "ray://head:10001", "connected": True,
                                      "nodes": [node, {**node, "node_ip": "10.0.0.3"}], "jobs": jobs}}  # fmt: skip
    view = ComputeView.from_json(raw)
    assert [(d.id, d.kind, d.job, d.name) for d in view.devices] == [
        ("10.0.0.2/cuda:3", "GPU", "ftjob-a", "gpu-a, rank 0"),
        ("10.0.0.3/cuda:0", "GPU", "ftjob-a", "gpu-b, rank 1"),
        ("10.0.0.3/cpu:0", "CPU", "ftjob-b", "gpu-b, rank 0"),
    ]
    assert view.cluster.text == "Jobs run on the Ray cluster at ray://head:10001: 2 nodes, 16 GPUs, 128 CPUs; 2 jobs running"
    assert [r["rank"] for r in view.as_json()["cluster"]["ranks"]] == [0, 1, 0]
