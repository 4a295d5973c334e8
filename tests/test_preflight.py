"""The pre-flight: what it blocks, warns about and estimates, and that its figures are the
ones the local backend then shows on the job (example count, resolved hyperparameters,
trained tokens)."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.datasets.jobrules import auto_epochs
from tunedeck.core.datasets.models import model_info
from tunedeck.core.launch.preflight import build_preflight
from tunedeck.core.launch.request import LaunchRequest

TODAY = datetime.date(2026, 6, 1)
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "eq"}  # fmt: skip
LABELS = ["billing", "shipping", "返品", "café ☕", "account"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def chat_row(i: int) -> dict[str, Any]:
    label = LABELS[i % len(LABELS)]
    return {"messages": [
        {"role": "system", "content": "Sort the ticket. Réponds en un mot.", "name": "router"},
        {"role": "user", "content": [{"type": "text", "text": f"ticket {i}: où est ma commande 📦 #{i * 7}?"}]},
        {"role": "assistant", "content": "thinking…", "weight": 0},
        {"role": "user", "content": "just the label"},
        {"role": "assistant", "content": label, "weight": 1},
    ]}  # fmt: skip


def preference_row(i: int) -> dict[str, Any]:
    label = LABELS[i % len(LABELS)]
    return {"input": {"messages": [{"role": "user", "content": f"ticket {i}: 請幫我 {label}"}]},
            "preferred_output": [{"role": "assistant", "content": label}],
            "non_preferred_output": [{"role": "assistant", "content": "other"}]}  # fmt: skip


def reinforcement_row(i: int) -> dict[str, Any]:
    label = LABELS[i % len(LABELS)]
    return {"messages": [{"role": "user", "content": f"ticket {i}: ¿dónde está {label}?"}], "reference_answer": label}


# 25 examples: auto gives 4 epochs, where 24 or 26 (a blank line counted, one example lost)
# would give 4 and 3; blank lines inside and after the examples are skipped by the backend.
N_EXAMPLES = 25
assert (auto_epochs(N_EXAMPLES - 1), auto_epochs(N_EXAMPLES), auto_epochs(N_EXAMPLES + 1)) == (4, 4, 3)


def drifting_file(path: Path, make_row) -> Path:
    lines = [json.dumps(make_row(i), ensure_ascii=False) for i in range(N_EXAMPLES)]
    lines.insert(10, "")
    lines.insert(20, "   ")
    return write_lines(path, [*lines, ""])


@pytest.mark.parametrize(
    ("method", "make_row", "extra"),
    [
        ("supervised", chat_row, {}),
        ("dpo", preference_row, {"hyperparameters": {"beta": 0.2}}),
        ("reinforcement", reinforcement_row, {"grader": EXACT, "hyperparameters": {"reasoning_effort": "low"}}),
    ],
)
def test_the_preflight_shows_what_the_local_backend_then_does(
    tmp_path, threaded_backend, sync_client, method, make_row, extra
):
    path = drifting_file(tmp_path / "train.jsonl", make_row)
    request = LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, method=method, seed=3, **extra)
    preflight = build_preflight(request, local=True, today=TODAY)
    assert preflight.ok, preflight.blocking
    assert preflight.warnings == [
        "train.jsonl: 3 finding(s) the local backend lets through, another provider refuses the file for; "
        "first: train.jsonl line 11: the line is empty; remove it (every line must be one example)"
    ]
    assert preflight.training_examples == N_EXAMPLES and preflight.hyperparameters["n_epochs"] == 4

    file_id = sync_client.files.create(file=("train.jsonl", path.read_bytes()), purpose="fine-tune").id
    created = sync_client.fine_tuning.jobs.create(**request.body(file_id, None))
    threaded_backend.run_until_settled()
    job = sync_client.fine_tuning.jobs.retrieve(created.id)
    assert job.status == "succeeded", job.error

    resolved = getattr(job.method, method).hyperparameters.model_dump(exclude_none=True)
    assert resolved == preflight.hyperparameters
    assert job.trained_tokens == preflight.trained_tokens == preflight.training_tokens * 4
    assert preflight.training_tokens == preflight.training.tokens["billed"] > N_EXAMPLES * 3
    if method == "supervised":
        steps = [e for e in sync_client.fine_tuning.jobs.list_events(job.id, limit=1000) if e.type == "metrics"]
        assert len(steps) == preflight.steps == math.ceil(N_EXAMPLES / resolved["batch_size"]) * 4


def test_blank_lines_block_a_launch_elsewhere(tmp_path):
    path = drifting_file(tmp_path / "train.jsonl", chat_row)
    preflight = build_preflight(LaunchRequest(training_path=path, model="gpt-4o-mini"), local=False, today=TODAY)
    assert not preflight.ok
    assert preflight.blocking[0] == "train.jsonl has 3 errors the job would fail on"
    assert preflight.blocking[1].startswith("train.jsonl line 11: ")


def test_invalid_lines_block_naming_the_file_and_the_first_lines(tmp_path):
    lines = [json.dumps(chat_row(i)) for i in range(20)]
    for at in (6, 8, 9, 10, 11, 12, 13):  # lines 7, 9, ... counted from 1
        lines[at] = '{"messages": [{"role": "user", "content": "cut off'
    path = write_lines(tmp_path / "train.jsonl", lines)
    preflight = build_preflight(LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL), local=True, today=TODAY)
    assert not preflight.ok
    assert preflight.blocking[0] == "train.jsonl has 7 errors the job would fail on"
    assert [line.split(":")[0] for line in preflight.blocking[1:6]] == [
        "train.jsonl line 7", "train.jsonl line 9", "train.jsonl line 10", "train.jsonl line 11", "train.jsonl line 12"
    ]  # fmt: skip
    assert "JSON" in preflight.blocking[1]
    assert preflight.blocking[6].startswith("train.jsonl: 2 more")


def test_the_validation_file_is_checked_too(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(12)])
    valid = write_lines(tmp_path / "valid.jsonl", ["[1, 2]", json.dumps(chat_row(1))])
    request = LaunchRequest(training_path=train, validation_path=valid, model=BUILTIN_BASE_MODEL)
    preflight = build_preflight(request, local=True, today=TODAY)
    assert preflight.blocking[0] == "valid.jsonl has 1 error the job would fail on"
    assert preflight.blocking[1].startswith("valid.jsonl line 1: ")
    assert preflight.validation_examples == 2 and preflight.request_body["validation_file"] == (
        "<uploaded at launch: valid.jsonl>"
    )


def test_a_dpo_file_checked_as_sft_blocks_about_its_format(tmp_path):
    path = write_lines(tmp_path / "prefs.jsonl", [json.dumps(preference_row(i)) for i in range(12)])
    preflight = build_preflight(LaunchRequest(training_path=path, model="gpt-4o-mini"), local=False, today=TODAY)
    assert not preflight.ok
    assert "prefs.jsonl: the file is in the DPO preference format, but the method is sft" in preflight.blocking


def test_rft_without_a_grader_blocks(tmp_path):
    path = write_lines(tmp_path / "rft.jsonl", [json.dumps(reinforcement_row(i)) for i in range(12)])
    request = LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, method="reinforcement")
    preflight = build_preflight(request, local=True, today=TODAY)
    assert [p.field for p in preflight.problems] == ["grader"]
    assert preflight.blocking == [preflight.problems[0].message]


def test_a_grader_reading_a_field_the_rows_lack_blocks_naming_the_line(tmp_path):
    rows = [reinforcement_row(i) for i in range(12)]
    del rows[3]["reference_answer"]
    path = write_lines(tmp_path / "rft.jsonl", [json.dumps(r) for r in rows])
    grader = {**EXACT, "reference": "{{item.reference_answer}}"}
    request = LaunchRequest(training_path=path, model=BUILTIN_BASE_MODEL, method="reinforcement", grader=grader)
    preflight = build_preflight(request, local=True, today=TODAY)
    assert preflight.blocking[0] == "rft.jsonl has 1 error the job would fail on"
    assert preflight.blocking[1].startswith("rft.jsonl line 4: ")
    assert "{{item.reference_answer}}" in preflight.blocking[1]


def test_warnings_do_not_block(tmp_path):
    rows = [chat_row(i) for i in range(12)]
    rows[5] = rows[2]  # a duplicate
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(r) for r in rows])
    preflight = build_preflight(LaunchRequest(training_path=path, model="gpt-4o-mini"), local=False, today=TODAY)
    assert preflight.ok and preflight.blocking == []
    assert preflight.warnings == ["train.jsonl line 6: the same example as line 3"]
    assert preflight.render_text()[-1] == f"READY ({len(preflight.warnings)} warning(s))"


@pytest.mark.parametrize(
    ("shutdown", "blocks", "warns", "days"),
    [("2026-07-15", False, True, 44), ("2026-05-31", True, False, -1), ("2027-06-01", False, False, 365)],
)
def test_a_model_that_shuts_down_soon_warns_and_one_shut_down_blocks(tmp_path, shutdown, blocks, warns, days):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(12)])
    request = LaunchRequest(training_path=path, model="gpt-4o-mini")
    preflight = build_preflight(request, local=False, model_info={"shutdown_date": shutdown}, today=TODAY)
    assert preflight.deprecation == {"shutdown_date": shutdown, "days_left": days}
    assert any(f"shut down on {shutdown}" in b for b in preflight.blocking) == blocks
    assert any(f"shuts down on {shutdown}" in w for w in preflight.warnings) == warns


def test_the_cost_comes_from_the_price_table(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(40)])
    request = LaunchRequest(training_path=path, model="gpt-4o-mini", hyperparameters={"n_epochs": 2})
    preflight = build_preflight(request, local=False, today=TODAY)
    price = model_info("gpt-4o-mini").usd_per_1m_training_tokens
    assert price is not None and preflight.hyperparameters["n_epochs"] == 2
    assert preflight.trained_tokens == 2 * preflight.training_tokens
    assert preflight.cost_usd == pytest.approx(preflight.trained_tokens / 1e6 * price)
    assert "gpt-4o-mini-2024-07-18" in preflight.cost_note

    local = build_preflight(request, local=True, today=TODAY)
    assert local.cost_usd == 0.0 and local.trained_tokens == preflight.trained_tokens


def test_rft_elsewhere_is_billed_by_the_hour_and_an_unknown_model_has_no_price(tmp_path):
    path = write_lines(tmp_path / "rft.jsonl", [json.dumps(reinforcement_row(i)) for i in range(12)])
    rft = LaunchRequest(training_path=path, model="o4-mini", method="reinforcement", grader=EXACT)
    preflight = build_preflight(rft, local=False, today=TODAY)
    assert preflight.ok and preflight.cost_usd is None and "per hour" in preflight.cost_note
    assert any("per hour" in w for w in preflight.warnings)

    chat = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(12)])
    unknown = build_preflight(LaunchRequest(training_path=chat, model="my-model"), local=False, today=TODAY)
    assert unknown.cost_usd is None and "no price is known for my-model" in unknown.cost_note
    assert unknown.trained_tokens is not None


def test_a_file_given_by_id_is_not_checked_here(tmp_path):
    request = LaunchRequest(training_file_id="file-abc", model="gpt-4o-mini", hyperparameters={"batch_size": 4})
    preflight = build_preflight(request, local=False, today=TODAY)
    assert preflight.ok and preflight.training is None
    assert any("file-abc is on the provider" in w for w in preflight.warnings)
    assert preflight.hyperparameters == {"n_epochs": "auto", "batch_size": 4, "learning_rate_multiplier": "auto"}
    assert preflight.trained_tokens is None and preflight.cost_usd is None
    assert preflight.request_body["training_file"] == "file-abc"


def test_field_problems_block_and_the_body_is_shown_as_it_would_be_sent(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(12)])
    request = LaunchRequest(training_path=path, model="gpt-4o-mini", hyperparameters={"n_epochs": 0}, suffix="a b")
    preflight = build_preflight(request, local=False, today=TODAY)
    assert [p.field for p in preflight.problems] == ["hyperparameters.n_epochs", "suffix"]
    assert preflight.blocking == [p.message for p in preflight.problems]
    assert preflight.hyperparameters is None  # nothing resolves from a refused value
    assert preflight.request_body == request.body("<uploaded at launch: train.jsonl>", None)
    out = preflight.to_json()
    assert json.loads(json.dumps(out))["problems"][0]["field"] == "hyperparameters.n_epochs"
    text = preflight.render_text(problems=True)
    assert f"✖ {preflight.blocking[0]}" in text and text[-1].startswith("BLOCKED: 2 problem(s)")


def test_a_missing_file_blocks_naming_it(tmp_path):
    request = LaunchRequest(training_path=tmp_path / "gone.jsonl", model="gpt-4o-mini")
    preflight = build_preflight(request, local=False, today=TODAY)
    assert len(preflight.blocking) == 1 and "gone.jsonl" in preflight.blocking[0]


def test_an_unknown_method_blocks_without_a_body(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(chat_row(i)) for i in range(12)])
    preflight = build_preflight(LaunchRequest(training_path=path, model="gpt-4o-mini", method="magic"), local=False)
    assert [p.field for p in preflight.problems] == ["method"] and not preflight.ok
    assert preflight.request_body == {} and preflight.training is None


def test_untrusted_text_reaches_the_lines_only_as_visible_placeholders(tmp_path):
    path = write_lines(tmp_path / "train\x1b[2J.jsonl", ["{bad"] + [json.dumps(chat_row(i)) for i in range(12)])
    request = LaunchRequest(training_path=path, model="gpt-4o-mini\u202e")
    preflight = build_preflight(request, local=False, model_info={"shutdown_date": "2026-06-10"}, today=TODAY)
    lines = [*preflight.blocking, *preflight.warnings, *preflight.render_text(problems=True)]
    assert any("shuts down" in line for line in preflight.warnings) and preflight.blocking
    assert not [line for line in lines if "\x1b" in line or "\u202e" in line]
