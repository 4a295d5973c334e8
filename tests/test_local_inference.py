"""`/v1/chat/completions` through the real SDK: the untrained base model, a fine-tuned model
that learned something, checkpoints, streaming, sampling, and bad requests."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import generate_dataset

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend

HELD_OUT = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One backend with one SFT job on 300 learnable tickets, shared by the module (training
    is the slow part); in thread mode, so the sync SDK can talk to it."""
    folder = tmp_path_factory.mktemp("inference")
    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    training = generate_dataset("sft", 300, folder / "train.jsonl", "--learnable")
    held_out = generate_dataset("sft", HELD_OUT, folder / "held_out.jsonl", "--learnable", "--seed", "99")
    file = client.files.create(file=training, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, seed=3)
    backend.run_until_settled()
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    yield client, job, tickets(held_out)
    client.close()
    backend.stop()


def tickets(path) -> list[tuple[list[dict], str]]:
    """(prompt, label) for the last ticket of each example: system message + that ticket."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(row["messages"][:1] + row["messages"][-2:-1], row["messages"][-1]["content"]) for row in rows]


def accuracy(client, model: str, items) -> float:
    answers = [client.chat.completions.create(model=model, messages=prompt).choices[0].message.content
               for prompt, _ in items]  # fmt: skip
    return sum(answer == label for answer, (_, label) in zip(answers, items)) / len(items)


def test_the_fine_tuned_model_answers_with_what_it_learned_and_the_base_model_does_not(trained):
    client, job, items = trained
    assert accuracy(client, job.fine_tuned_model, items) >= 0.7
    assert accuracy(client, BUILTIN_BASE_MODEL, items) <= 0.3


def test_a_completion_has_the_api_shape(trained):
    client, job, items = trained
    completion = client.chat.completions.create(model=job.fine_tuned_model, messages=items[0][0])
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == job.fine_tuned_model and completion.created > 0
    choice = completion.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == 1 and usage.prompt_tokens > 10  # one label word
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_the_untrained_base_model_guesses_the_same_way_for_the_same_question(trained):
    from tunedeck.backend.inference import UNTRAINED_GUESSES

    client, _, items = trained
    guesses = set()
    for prompt, label in items[:8]:
        first, again = (client.chat.completions.create(model=BUILTIN_BASE_MODEL, messages=prompt) for _ in range(2))
        answer = first.choices[0].message.content
        assert answer == again.choices[0].message.content and first.choices[0].finish_reason == "stop"
        assert answer in UNTRAINED_GUESSES and answer != label  # a polite guess that answers nothing
        guesses.add(answer)
    assert len(guesses) > 1  # picked by the question, not one fixed string
    cut = client.chat.completions.create(model=BUILTIN_BASE_MODEL, messages=items[0][0], max_tokens=2)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2


def test_every_checkpoint_answers(trained):
    client, job, items = trained
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(checkpoints) == 3
    for checkpoint in checkpoints:
        name = checkpoint.fine_tuned_model_checkpoint
        answer = client.chat.completions.create(model=name, messages=items[1][0]).choices[0].message.content
        assert answer in ("billing", "shipping", "account", "technical", "returns", "other")


def test_streaming_sends_the_same_answer_chunk_by_chunk(trained):
    client, job, items = trained
    prompt = items[2][0]
    whole = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt, max_tokens=5, stop=["zzz"])
    stream = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt, max_tokens=5,
                                            stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_sampling_follows_temperature_seed_n_and_max_tokens(trained):
    client, job, items = trained
    prompt = items[3][0]

    def sample(seed: int) -> list[str]:
        completion = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt, n=4,
                                                    temperature=2.0, seed=seed, max_tokens=8)  # fmt: skip
        return [choice.message.content for choice in completion.choices]

    assert sample(1) == sample(1) and len(sample(1)) == 4
    cut = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt, max_completion_tokens=1)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 1


def test_a_stop_sequence_cuts_the_answer(trained):
    client, job, items = trained
    prompt = items[5][0]
    answer = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt).choices[0].message.content
    cut = client.chat.completions.create(model=job.fine_tuned_model, messages=prompt, stop=[answer[2:4], "zzz"])
    assert cut.choices[0].message.content == answer[:2] and cut.choices[0].finish_reason == "stop"


def test_unknown_and_deleted_models_are_404s(trained):
    client, job, items = trained
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="ft:tunedeck-ngram:local::nope", messages=items[0][0])
    assert info.value.code == "model_not_found" and info.value.param == "model"
    oldest = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    client.chat.completions.create(model=oldest, messages=items[0][0])  # loaded into the cache
    client.models.delete(oldest)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=oldest, messages=items[0][0])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": BUILTIN_BASE_MODEL}, "messages"),
        ({"model": BUILTIN_BASE_MODEL, "messages": []}, "messages"),
        ({"model": BUILTIN_BASE_MODEL, "messages": ["hi"]}, "messages[0]"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
        ({"model": BUILTIN_BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ],
)  # fmt: skip
def test_bad_requests_are_400s_naming_the_param(trained, body, param):
    client = trained[0]
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=body, cast_to=object)
    assert info.value.param == param


def test_content_parts_and_tool_turns_are_read(trained):
    client, job, items = trained
    prompt, label = items[4]
    parts = [{"type": "text", "text": prompt[1]["content"]}, {"type": "image_url", "image_url": {"url": "x"}}]
    messages = [prompt[0], {"role": "assistant", "content": None, "tool_calls": []}, {"role": "user", "content": parts}]
    answer = client.chat.completions.create(model=job.fine_tuned_model, messages=messages).choices[0].message.content
    assert answer == client.chat.completions.create(model=job.fine_tuned_model, messages=prompt).choices[0].message.content


def test_an_unknown_parameter_is_refused_naming_it(trained):
    client, job, items = trained
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=job.fine_tuned_model, messages=items[0][0], extra_body={"temprature": 0.5})
    assert caught.value.body["param"] == "temprature" and "Unrecognized request argument" in caught.value.message
