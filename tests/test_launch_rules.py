"""The one set of job rules (`core.datasets.jobrules`): what the launch form says about each
field, how typed text becomes a value, that the local backend accepts and refuses exactly
what the form does (with the same words), and the launch request's body and round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.core.datasets.jobrules import (
    HYPERPARAMETER_RULES,
    LAUNCH_TAG_KEY,
    OPTION_RULES,
    hyperparameters_to_send,
    parse_value,
    request_problems,
)
from tunedeck.core.launch.request import LaunchRequest

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}  # fmt: skip
SCHEMA = {"type": "json_schema", "json_schema": {"name": "label", "schema": {"type": "object"}}}
CHAT = b"".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}).encode()
    + b"\n"
    for i in range(10)
)


def fields_of(request: LaunchRequest, *, local: bool = True) -> list[str]:
    return [f for f, _ in request_problems(request, local=local)]


def sft(**kwargs: Any) -> LaunchRequest:
    return LaunchRequest(training_path=Path("train.jsonl"), model=BUILTIN_BASE_MODEL, **kwargs)


# -- what the form says -------------------------------------------------------------------------


def test_a_good_request_has_no_problems():
    assert request_problems(sft(hyperparameters={"n_epochs": 3}, suffix="v1.2_x-y", seed=0), local=True) == []
    by_id = LaunchRequest(training_file_id="file-1", model="gpt-4o-mini", method="dpo", hyperparameters={"beta": 2})
    assert request_problems(by_id, local=False) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (LaunchRequest(training_path=Path("t.jsonl"), model=" "), "model"),
        (LaunchRequest(model="m"), "training_file"),
        (sft(method="magic"), "method"),
        (sft(hyperparameters={"n_epochs": 0}), "hyperparameters.n_epochs"),
        (sft(hyperparameters={"n_epochs": 51}), "hyperparameters.n_epochs"),
        (sft(hyperparameters={"n_epochs": 2.5}), "hyperparameters.n_epochs"),
        (sft(hyperparameters={"batch_size": "4"}), "hyperparameters.batch_size"),  # the form converts, not the rules
        (sft(hyperparameters={"batch_size": True}), "hyperparameters.batch_size"),
        (sft(hyperparameters={"learning_rate_multiplier": 0}), "hyperparameters.learning_rate_multiplier"),
        (sft(method="dpo", hyperparameters={"beta": 2.5}), "hyperparameters.beta"),
        (sft(method="reinforcement", grader=GRADER, hyperparameters={"reasoning_effort": "max"}),
         "hyperparameters.reasoning_effort"),  # fmt: skip
        (sft(method="reinforcement", grader=GRADER, hyperparameters={"eval_samples": 0}),
         "hyperparameters.eval_samples"),  # fmt: skip
        (sft(suffix="has space"), "suffix"),
        (sft(suffix="s" * 65), "suffix"),
        (sft(seed=-1), "seed"),
        (sft(seed=2_147_483_648), "seed"),
        (sft(metadata={f"k{i}": "v" for i in range(16)}), "metadata"),  # one pair goes to the launch tag
        (sft(metadata={"k" * 65: "v"}), "metadata"),
        (sft(metadata={"k": "v" * 513}), "metadata"),
        (sft(metadata={"k": 1}), "metadata"),
        (sft(metadata={LAUNCH_TAG_KEY: "mine"}), "metadata"),
        (sft(wandb={"entity": "me"}), "integrations.wandb"),
        (sft(wandb={"project": " "}), "integrations.wandb"),
        (sft(options={"lora_rank": 0}), "options.lora_rank"),
        (sft(options={"lora_rnak": 8}), "options.lora_rnak"),
        (sft(options={"device": "tpu"}), "options.device"),
        (sft(method="reinforcement"), "grader"),
        (sft(method="reinforcement", grader={"name": "no type"}), "grader"),
        (sft(method="reinforcement", grader=GRADER, response_format={"type": "json_object"}), "response_format"),
    ],
)
def test_each_field_the_server_would_refuse_is_named(request_, field):
    assert fields_of(request_) == [field]


def test_options_go_only_to_the_local_backend():
    request = sft(options={"lora_rank": 8})
    assert request_problems(request, local=True) == []
    assert request_problems(request, local=False) == [("options", "tunedeck options apply only to the local backend.")]


def test_what_another_method_would_take_is_not_checked_since_it_is_not_sent():
    request = sft(hyperparameters={"beta": 99, "eval_samples": "x"}, grader={"bad": 1}, response_format="nope")
    assert request_problems(request, local=True) == []
    assert "beta" not in request.body("file-1", None)["method"]["supervised"]["hyperparameters"]


def test_problems_say_the_field_and_what_it_takes():
    (problem,) = request_problems(sft(hyperparameters={"n_epochs": 0}), local=True)
    assert problem == ("hyperparameters.n_epochs", "Epochs: expected an integer from 1 to 50 or 'auto', got 0.")
    (option,) = request_problems(sft(options={"lora_dropout": 2}), local=True)
    assert option == ("options.lora_dropout", "LoRA dropout: expected a number from 0 to 1, got 2.")
    assert [p.field for p in sft(seed=-5, suffix="a:b").problems(local=True)] == ["suffix", "seed"]


def test_every_rule_has_a_label_and_help():
    for rule in (*HYPERPARAMETER_RULES.values(), *OPTION_RULES.values()):
        assert rule.label and rule.help.startswith(rule.expected)
        assert rule.help.endswith("or 'auto'") == rule.auto
    assert not HYPERPARAMETER_RULES["reasoning_effort"].auto and HYPERPARAMETER_RULES["n_epochs"].auto


# -- typed text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("n_epochs", "", "auto"),
        ("n_epochs", " Auto ", "auto"),
        ("hyperparameters.n_epochs", "12", 12),
        ("learning_rate_multiplier", "0.05", 0.05),
        ("learning_rate_multiplier", "2", 2.0),
        ("beta", "1e-1", 0.1),
        ("reasoning_effort", "HIGH", "high"),
        ("reasoning_effort", "", "auto"),
        ("options.lora_rank", "8", 8),
        ("lora_dropout", "0", 0.0),
        ("training_type", "auto", "auto"),  # an option's own "auto", not "let the server pick"
        ("lora_rank", "", None),
        ("device", "cuda:1", "cuda:1"),
        ("seed", "42", 42),
        ("seed", "", None),
    ],
)
def test_typed_text_becomes_the_value_the_rules_check(name, text, value):
    parsed = parse_value(name, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("n_epochs", "three", "Epochs (n_epochs): expected an integer from 1 to 50 or 'auto', got 'three'"),
        ("n_epochs", "2.5", "Epochs (n_epochs): expected an integer from 1 to 50 or 'auto', got '2.5'"),
        ("learning_rate_multiplier", "nan", "Learning rate multiplier (learning_rate_multiplier): expected a number"),
        ("reasoning_effort", "max", "Reasoning effort (reasoning_effort): expected default, low, medium or high, got"),
        ("training_type", "half", "Training type (training_type): expected auto, lora or full, got 'half'"),
        ("lora_rank", "auto", "LoRA rank (lora_rank): expected an integer from 1 to 1024, got 'auto'"),
        ("seed", "x", "Seed: expected an integer from 0 to 2147483647, got 'x'"),
        ("temperature", "1", "'temperature' is not a hyperparameter or a tunedeck option"),
    ],
)
def test_text_of_the_wrong_type_names_the_field_and_what_it_takes(name, text, expected):
    with pytest.raises(ValueError) as error:
        parse_value(name, text)
    assert str(error.value).startswith(expected)


# -- the backend refuses what the form refuses, in the same words -------------------------------


@pytest.fixture
def training_file(sync_client) -> str:
    return sync_client.files.create(file=("t.jsonl", CHAT), purpose="fine-tune").id


def create(client, request: LaunchRequest, file_id: str, tag: str | None = None):
    return client.fine_tuning.jobs.create(**request.body(file_id, None, launch_tag=tag))


@pytest.mark.parametrize(
    ("method", "name", "good", "bad"),
    [
        ("supervised", "n_epochs", 50, 51),
        ("supervised", "batch_size", 256, 0),
        ("supervised", "learning_rate_multiplier", 1e-9, -0.5),
        ("dpo", "beta", 2, 2.5),
        ("reinforcement", "compute_multiplier", 10, 0),
        ("reinforcement", "eval_interval", 1, 1.5),
        ("reinforcement", "reasoning_effort", "high", "max"),
    ],
)
def test_the_backend_takes_what_the_form_takes_and_refuses_it_in_the_same_words(
    sync_client, training_file, method, name, good, bad
):
    extra = {"grader": GRADER, "response_format": SCHEMA} if method == "reinforcement" else {}
    others = {"reasoning_effort": "low"} if method == "reinforcement" else {}  # see the test below
    accepted = sft(method=method, hyperparameters={**others, name: good}, **extra)
    assert accepted.problems(local=True) == []
    job = create(sync_client, accepted, training_file)
    assert getattr(job.method, method).hyperparameters.model_dump()[name] == good

    refused = sft(method=method, hyperparameters={**others, name: bad}, **extra)
    ((field, message),) = request_problems(refused, local=True)
    with pytest.raises(openai.BadRequestError) as error:
        create(sync_client, refused, training_file)
    expected = f"expected {HYPERPARAMETER_RULES[name].help}, got {bad!r}"
    assert field == f"hyperparameters.{name}" and expected in message
    assert error.value.param == f"method.{method}.hyperparameters.{name}" and expected in error.value.message


def test_an_rft_request_that_leaves_the_reasoning_effort_unset_is_accepted(sync_client, training_file):
    """The effort has no "auto" (the API takes default, low, medium or high), so a request
    that leaves it unset must not send "auto" for it."""
    request = sft(method="reinforcement", grader=GRADER)
    assert request.problems(local=True) == []
    job = create(sync_client, request, training_file)
    assert job.method.reinforcement.grader.name == "exact"


def test_an_unset_reasoning_effort_is_left_to_the_server(sync_client, training_file):
    sent = hyperparameters_to_send("reinforcement", {"n_epochs": 2, "beta": 0.5})
    assert sent == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto",
                    "compute_multiplier": "auto", "eval_interval": "auto", "eval_samples": "auto"}  # fmt: skip
    method = {"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": sent}}
    job = sync_client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training_file, method=method)
    assert job.method.reinforcement.hyperparameters.reasoning_effort == "default"  # never "auto": not a value it takes


@pytest.mark.parametrize(
    ("request_", "param", "words"),
    [
        (sft(options={"lora_rank": 0}), "tunedeck.lora_rank", "expected an integer from 1 to 1024, got 0"),
        (sft(options={"training_type": "half"}), "tunedeck.training_type", "expected auto, lora or full"),
        (sft(options={"sharding": "shard"}), "tunedeck.sharding", "ask for 'devices' of 2 or more"),
        (sft(suffix="a:b"), "suffix", "up to 64 characters from letters, digits, '.', '_' and '-'"),
        (sft(seed=-1), "seed", "an integer from 0 to 2147483647"),
        (sft(metadata={"k": "v" * 513}), "metadata", "values must be strings of at most 512 characters"),
        (sft(wandb={"entity": "me"}), "integrations[0]", None),
    ],
)
def test_the_rest_of_the_body_is_refused_by_both(sync_client, training_file, request_, param, words):
    ((_, message),) = request_problems(request_, local=True)
    with pytest.raises(openai.BadRequestError) as error:
        create(sync_client, request_, training_file)
    assert error.value.param == param
    if words is not None:
        assert words in message and words in error.value.message


def test_the_metadata_limit_leaves_room_for_the_launch_tag(sync_client, training_file):
    fifteen = sft(metadata={f"k{i}": "v" for i in range(15)})
    assert fifteen.problems(local=True) == []
    assert len(create(sync_client, fifteen, training_file, tag="t1").metadata) == 16
    sixteen = sft(metadata={f"k{i}": "v" for i in range(16)})
    assert [p.field for p in sixteen.problems(local=True)] == ["metadata"]
    with pytest.raises(openai.BadRequestError) as error:
        create(sync_client, sixteen, training_file, tag="t2")
    assert error.value.param == "metadata"


# -- the body and the round trips ---------------------------------------------------------------


def test_the_body_of_each_method():
    assert sft().body("file-t", None) == {
        "model": BUILTIN_BASE_MODEL,
        "training_file": "file-t",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}}},  # fmt: skip
    }
    dpo = sft(method="dpo", hyperparameters={"beta": 0.3, "n_epochs": 2}).body("file-t", "file-v")
    assert dpo["validation_file"] == "file-v"
    assert dpo["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto", "beta": 0.3}}}  # fmt: skip
    rft = sft(method="reinforcement", grader=GRADER, response_format=SCHEMA,
              hyperparameters={"reasoning_effort": "low"}).body("file-t", None)  # fmt: skip
    assert rft["method"]["reinforcement"]["grader"] == GRADER
    assert rft["method"]["reinforcement"]["response_format"] == SCHEMA
    assert rft["method"]["reinforcement"]["hyperparameters"]["reasoning_effort"] == "low"


def test_the_body_carries_suffix_seed_metadata_wandb_and_options_with_the_tag_last():
    request = sft(suffix="v1", seed=7, metadata={"team": "a", LAUNCH_TAG_KEY: "forged"},
                  wandb={"project": "p", "tags": ["x"]}, options={"lora_rank": 8})  # fmt: skip
    body = request.body("file-t", None, launch_tag="tag-1")
    assert (body["suffix"], body["seed"]) == ("v1", 7)
    assert body["metadata"] == {"team": "a", LAUNCH_TAG_KEY: "tag-1"}
    assert body["integrations"] == [{"type": "wandb", "wandb": {"project": "p", "tags": ["x"]}}]
    assert body["extra_body"] == {"tunedeck": {"lora_rank": 8}}
    assert "extra_body" not in sft().body("file-t", None)


@pytest.mark.parametrize("method", ["supervised", "dpo", "reinforcement"])
def test_a_job_launches_again_as_it_was_asked_for(sync_client, training_file, method):
    extra = {"grader": GRADER, "response_format": SCHEMA} if method == "reinforcement" else {}
    asked = sft(method=method, hyperparameters={"n_epochs": 2, "reasoning_effort": "low"}, suffix="again", seed=11,
                metadata={"team": "a"}, wandb={"project": "p"}, options={"lora_rank": 8}, **extra)  # fmt: skip
    job = create(sync_client, asked, training_file, tag="tag-9").to_dict()  # the fields the API sent
    again = LaunchRequest.from_job(job)
    assert again.training_file_id == training_file and again.training_path is None
    assert again.metadata == {"team": "a"}
    assert again.body(training_file, None, "tag-9") == asked.body(training_file, None, "tag-9")


def test_a_request_survives_json():
    request = LaunchRequest(
        training_path=Path("/data/train.jsonl"), validation_path=Path("v.jsonl"), model="gpt-4o-mini",
        method="reinforcement", hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 0.5},
        suffix="s", seed=3, metadata={"a": "b"}, wandb={"project": "p"}, options={"device": "cpu"},
        grader=GRADER, response_format=SCHEMA,
    )  # fmt: skip
    text = json.dumps(request.to_json())
    assert LaunchRequest.from_json(json.loads(text)) == request
    assert LaunchRequest.from_json({**request.to_json(), "from_the_future": 1}) == request
