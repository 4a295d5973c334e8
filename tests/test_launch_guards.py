"""What a launch must never do: send a grader, a file or a validation file the pre-flight did
not check, create a job after a cancel, or make a second job when the first one's answer
was lost and the user presses Launch again. Against the real local backend."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.backend.http.faults import plan_from_dict
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch.presets import PresetError, load_presets
from tunedeck.core.launch.request import LaunchRequest
from tunedeck.core.paths import AppPaths
from tunedeck.core.service import ServiceError
from tunedeck.tui.launch_fields import format_metadata, parse_metadata


@pytest.fixture
async def service(manual_backend):
    service = await open_service(local_backend=manual_backend)
    await service.connect()
    yield service
    await service.close()


def set_faults(backend, *rules: dict) -> None:
    backend.faults.set_rules([plan_from_dict({"rules": [r]}).rules[0] for r in rules])


async def server_state(backend) -> tuple[list, list]:
    client = openai.AsyncOpenAI(base_url=backend.base_url, api_key=backend.api_key, max_retries=0)
    try:
        jobs = [job async for job in client.fine_tuning.jobs.list()]
        return jobs, (await client.files.list()).data
    finally:
        await client.close()


def rft_request(path, grader) -> LaunchRequest:
    return LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, method="reinforcement", grader=grader)


@pytest.mark.parametrize(
    "grader, says",
    [
        ({"type": "string_check", "name": "x"}, "Missing required parameter"),
        ({"type": "string_check", "name": "x", "input": "{{sample.output_text}}", "reference": "a",
          "operation": "bogus"}, "operation"),  # fmt: skip
        ({"type": "python", "name": "p", "source": "def grade(sample, item:\n    return 1.0\n"}, "source"),
    ],
    ids=["missing-fields", "bad-operation", "python-that-does-not-parse"],
)
async def test_a_grader_the_server_would_refuse_blocks_the_preflight(service, manual_backend, tmp_path, grader, says):
    rft = generate_dataset("rft", 30, tmp_path / "rft.jsonl")
    checked = await service.preflight(rft_request(rft, grader))
    assert not checked.preflight.ok
    assert any(line.startswith("grader:") and says in line for line in checked.preflight.blocking), (
        checked.preflight.blocking
    )
    with pytest.raises(ServiceError, match="pre-flight blocks"):
        await service.launch(checked)
    assert await server_state(manual_backend) == ([], [])


async def test_a_file_id_that_does_not_exist_blocks(service):
    request = LaunchRequest(training_file_id="file-doesnotexist", model=BUILTIN_BASE_MODEL)
    checked = await service.preflight(request)
    assert any("file-doesnotexist does not exist" in line for line in checked.preflight.blocking)


async def test_a_local_validation_file_beside_a_file_id_is_checked(service, manual_backend, sft_file, tmp_path):
    uploaded = await service._api.upload_training_file(sft_file)
    bad = generate_dataset("sft", 12, tmp_path / "valid.jsonl", "--bad-every", "4")
    request = LaunchRequest(training_file_id=uploaded["id"], validation_path=bad, model=BUILTIN_BASE_MODEL)
    checked = await service.preflight(request)
    assert any("valid.jsonl line 4" in line for line in checked.preflight.blocking), checked.preflight.blocking
    small = generate_dataset("sft", 3, tmp_path / "small.jsonl")  # fewer than a training file needs: fine here
    ok = await service.preflight(LaunchRequest(training_file_id=uploaded["id"], validation_path=small, model=BUILTIN_BASE_MODEL))
    assert ok.preflight.ok, ok.preflight.blocking
    assert ok.preflight.validation_examples == 3


async def test_a_validation_file_edited_during_the_upload_is_not_used(service, manual_backend, sft_file, tmp_path):
    valid = generate_dataset("sft", 12, tmp_path / "valid.jsonl")
    checked = await service.preflight(
        LaunchRequest(training_path=sft_file, validation_path=valid, model=BUILTIN_BASE_MODEL)
    )
    assert checked.preflight.ok

    def edit_once_training_is_up(progress) -> None:
        if progress.role == "training" and progress.upload.phase == "done":
            with valid.open("a") as f:
                f.write("not json\n")

    with pytest.raises(ServiceError, match="valid.jsonl changed"):
        await service.launch(checked, progress=edit_once_training_is_up)
    jobs, _ = await server_state(manual_backend)
    assert jobs == []


async def test_a_cancel_after_the_uploads_creates_no_job(service, manual_backend, sft_file):
    import asyncio

    cancel = asyncio.Event()
    checked = await service.preflight(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))

    def cancel_once_uploaded(progress) -> None:
        if progress.upload is not None and progress.upload.phase == "done":
            cancel.set()

    with pytest.raises(ServiceError) as info:
        await service.launch(checked, progress=cancel_once_uploaded, cancel=cancel)
    assert info.value.kind == "cancelled"
    jobs, _ = await server_state(manual_backend)
    assert jobs == []


async def test_launching_again_after_an_uncertain_create_finds_the_first_job(service, manual_backend, sft_file):
    """The create's answer is lost and the listing fails too: the launch ends uncertain. The
    same checked launch sent again carries the same tag, so the backend answers with the job
    the first try made: one job, not two."""

    async def no_sleep(_: float) -> None:
        return None

    checked = await service.preflight(LaunchRequest(training_path=sft_file, model=BUILTIN_BASE_MODEL))
    service._api._client = service._api._client.with_options(max_retries=0)
    set_faults(
        manual_backend,
        {"method": "POST", "path": "/v1/fine_tuning/jobs", "kind": "drop", "after_handling": True, "times": 2},
        {"method": "GET", "path": "/v1/fine_tuning/jobs", "kind": "server_error", "times": 6, "should_retry": False},
    )
    with pytest.raises(ServiceError, match="may or may not exist"):
        await service.launch(checked, sleep=no_sleep)
    set_faults(manual_backend)
    job = await service.launch(checked, sleep=no_sleep)
    jobs, files = await server_state(manual_backend)
    assert [j.id for j in jobs] == [job.id] and len(files) == 1


def test_metadata_with_separators_survives_the_form():
    metadata = {"note": "a, b", "formula": "x=y", "plain": "ok"}
    assert parse_metadata(format_metadata(metadata)) == metadata
    assert parse_metadata(format_metadata({"team": "ml"})) == {"team": "ml"}
    assert format_metadata({"team": "ml"}) == "team=ml"


@pytest.mark.parametrize("field, value", [("metadata", "x"), ("hyperparameters", "x"), ("seed", "7"), ("grader", [])])
def test_a_preset_with_a_wrong_typed_field_is_a_clear_error(field, value):
    paths = AppPaths.discover()
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    preset = {"training_path": "train.jsonl", "model": "m", field: value}
    (paths.config_dir / "presets.json").write_text(json.dumps({"version": 1, "presets": {"bad": preset}}))
    with pytest.raises(PresetError, match=f"preset 'bad'.*'{field}' must be"):
        load_presets(paths)
