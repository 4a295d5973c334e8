"""Model aliases through the unmodified SDK: code written for OpenAI, naming an OpenAI model,
trains and chats with a local model; `/v1/models` lists the alias and what it stands for;
the job says which model really trained."""

from __future__ import annotations

import argparse

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, AliasError, LocalBackend

OPENAI_NAME = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def client(tmp_path):
    backend = LocalBackend(tmp_path / "backend", auto_advance=False, model_aliases={OPENAI_NAME: BUILTIN_BASE_MODEL})
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    yield client, backend
    client.close()
    backend.stop()


def test_a_job_on_an_openai_name_trains_the_model_it_stands_for(client, tmp_path):
    client, backend = client
    training = generate_dataset("sft", 60, tmp_path / "train.jsonl", "--learnable")
    file = client.files.create(file=training, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=OPENAI_NAME, training_file=file.id, seed=1)
    assert job.model == BUILTIN_BASE_MODEL  # what really trains, in the job itself
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    assert f"Model {OPENAI_NAME} is an alias on this backend: training {BUILTIN_BASE_MODEL}" in messages
    backend.run_until_settled()
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith(f"ft:{BUILTIN_BASE_MODEL}:")


def test_chat_and_responses_on_the_alias_answer_as_the_model_and_name_the_alias(client):
    client, _ = client
    messages = [{"role": "user", "content": "Where is my parcel?"}]
    aliased = client.chat.completions.create(model=OPENAI_NAME, messages=messages)
    direct = client.chat.completions.create(model=BUILTIN_BASE_MODEL, messages=messages)
    assert aliased.model == OPENAI_NAME  # the name the code asked for
    assert aliased.choices[0].message.content == direct.choices[0].message.content
    response = client.responses.create(model=OPENAI_NAME, input="Where is my parcel?")
    assert response.model == OPENAI_NAME and response.output_text == direct.choices[0].message.content


def test_models_lists_the_alias_with_what_it_stands_for(client):
    client, _ = client
    listed = {m.id: m for m in client.models.list().data}
    assert OPENAI_NAME in listed and BUILTIN_BASE_MODEL in listed
    assert listed[OPENAI_NAME].model_extra["tunedeck"]["alias_of"] == BUILTIN_BASE_MODEL
    assert client.models.retrieve(OPENAI_NAME).model_extra["tunedeck"]["alias_of"] == BUILTIN_BASE_MODEL


def test_an_alias_of_a_model_not_served_is_refused_naming_both(tmp_path):
    backend = LocalBackend(tmp_path / "b", auto_advance=False, model_aliases={"gpt-4.1-mini": "no-such-model"})
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    try:
        training = generate_dataset("sft", 20, tmp_path / "train.jsonl", "--learnable")
        file = client.files.create(file=training, purpose="fine-tune")
        with pytest.raises(openai.BadRequestError, match=r"gpt-4.1-mini \(an alias of no-such-model here\)"):
            client.fine_tuning.jobs.create(model="gpt-4.1-mini", training_file=file.id)
    finally:
        client.close()
        backend.stop()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"a": "b", "b": BUILTIN_BASE_MODEL}, "itself an alias"),
        ({"a": "ft:tunedeck-ngram:local::x"}, "fine-tuned"),
        ({"a": ""}, "must be a model name"),
    ],
)
def test_a_bad_alias_table_is_refused_before_serving(tmp_path, table, message):
    with pytest.raises(AliasError, match=message):
        LocalBackend(tmp_path / "b", model_aliases=table)


def test_serve_reads_the_profiles_aliases_and_the_flags_over_them(tmp_path):
    from tunedeck.cli.serve import model_aliases
    from tunedeck.core.paths import AppPaths

    paths = AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    paths.config_dir.mkdir()
    paths.config_file.write_text(
        '[profiles.local]\nbackend = "local"\n[profiles.local.model_aliases]\n'
        '"gpt-4o-mini-2024-07-18" = "Qwen/Qwen2.5-0.5B-Instruct"\n"o4-mini" = "tunedeck-ngram"\n'
    )
    args = argparse.Namespace(profile="local", alias=["o4-mini=other", "gpt-4.1-mini = tunedeck-ngram"])
    assert model_aliases(args, paths) == {
        "gpt-4o-mini-2024-07-18": "Qwen/Qwen2.5-0.5B-Instruct",
        "o4-mini": "other",  # the flag wins
        "gpt-4.1-mini": "tunedeck-ngram",
    }
    with pytest.raises(ValueError, match="expected NAME=MODEL"):
        model_aliases(argparse.Namespace(profile="local", alias=["nonsense"]), paths)
    with pytest.raises(ValueError, match="no profile named 'gpu'"):
        model_aliases(argparse.Namespace(profile="gpu", alias=[]), paths)
    paths.config_file.write_text('[profiles.oa]\nbackend = "openai"\n[profiles.oa.model_aliases]\n"a" = "b"\n')
    with pytest.raises(ValueError, match="model_aliases is for local profiles"):
        model_aliases(argparse.Namespace(profile="local", alias=[]), paths)
