"""Tool calls and JSON answers through the unmodified SDK: the built-in model fine-tuned on
function-calling rows calls the right function with the right arguments on phrasings it
never saw, keeps to `tool_choice`, streams its calls as the API does; fine-tuned on JSON
answers it keeps to a `response_format` schema; and what it cannot keep is reported."""

from __future__ import annotations

import json
import random

import jsonschema
import openai
import pytest
from tool_support import (
    CHAT_REPLY,
    ORDER_SCHEMA,
    SYSTEM,
    TOOLS,
    held_out,
    order,
    write_order_dataset,
    write_tool_dataset,
)

from tunedeck.backend import BUILTIN_BASE_MODEL, LocalBackend

WEATHER = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Could you check the weather over in Oslo"}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One backend, two fine-tunes of the built-in model: on 300 function-calling rows, and
    on 300 orders answered with JSON."""
    folder = tmp_path_factory.mktemp("tool-calls")
    backend = LocalBackend(folder / "backend", auto_advance=False)
    client = openai.OpenAI(base_url=backend.start(), api_key=backend.api_key, max_retries=0)
    models = {}
    for name, path in (("tools", write_tool_dataset(folder / "tools.jsonl", 300)),
                       ("orders", write_order_dataset(folder / "orders.jsonl", 300))):  # fmt: skip
        file = client.files.create(file=path, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=file.id, seed=3)
        backend.run_until_settled()
        job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        models[name] = job.fine_tuned_model
    yield client, models
    client.close()
    backend.stop()


def calls_of(message) -> list[tuple[str, dict]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or ()]


def test_a_tool_call_fine_tune_calls_the_right_function_on_phrasings_it_never_saw(trained):
    client, models = trained
    items = held_out(40)
    right = 0
    for prompt, function, arguments in items:
        choice = client.chat.completions.create(model=models["tools"], messages=prompt, tools=TOOLS).choices[0]
        if function is None:  # small talk: answered in words
            right += choice.message.tool_calls is None and choice.message.content == CHAT_REPLY
            continue
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        right += calls_of(choice.message) == [(function, arguments)]
    assert right / len(items) >= 0.9
    assert {f for _, f, _ in items} == {"get_weather", "set_lights", "lock_door", None}  # every kind was asked


def test_after_the_tools_result_it_answers_in_words(trained):
    client, models = trained
    asked = client.chat.completions.create(model=models["tools"], messages=WEATHER, tools=TOOLS).choices[0].message
    result = {"role": "tool", "tool_call_id": asked.tool_calls[0].id, "content": "done"}
    follow_up = [*WEATHER, asked.model_dump(exclude_none=True), result]
    answer = client.chat.completions.create(model=models["tools"], messages=follow_up, tools=TOOLS).choices[0]
    assert answer.finish_reason == "stop" and answer.message.content == "Done." and answer.message.tool_calls is None


def test_tool_choice_is_kept(trained):
    client, models = trained

    def ask(**options):
        return client.chat.completions.create(model=models["tools"], messages=WEATHER, **options).choices[0]

    assert calls_of(ask(tools=TOOLS).message) == [("get_weather", {"city": "Oslo"})]
    assert calls_of(ask(tools=TOOLS, tool_choice="required").message) == [("get_weather", {"city": "Oslo"})]
    for unasked in (ask(), ask(tools=TOOLS, tool_choice="none")):  # no tools, or none to be called: words
        assert unasked.message.tool_calls is None and unasked.message.content and unasked.finish_reason == "stop"
    named = ask(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "lock_door"}})
    assert [name for name, _ in calls_of(named.message)] == ["lock_door"]
    assert set(calls_of(named.message)[0][1]) == {"room"}  # only the arguments its schema names
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [TOOLS[2]]}}
    assert [name for name, _ in calls_of(ask(tools=TOOLS, tool_choice=allowed).message)] == ["lock_door"]
    small_talk = [WEATHER[0], {"role": "user", "content": "Hello!"}]
    forced = client.chat.completions.create(model=models["tools"], messages=small_talk, tools=TOOLS, tool_choice="required")
    assert forced.choices[0].message.tool_calls and forced.choices[0].finish_reason == "tool_calls"


def test_a_model_that_never_learned_a_call_still_calls_when_it_must(trained):
    client, _ = trained
    choice = client.chat.completions.create(
        model=BUILTIN_BASE_MODEL, messages=WEATHER, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}
    ).choices[0]
    assert choice.finish_reason == "tool_calls" and calls_of(choice.message) == [("get_weather", {})]


def test_streamed_calls_reassemble_to_the_same_answer(trained):
    client, models = trained
    whole = client.chat.completions.create(model=models["tools"], messages=WEATHER, tools=TOOLS).choices[0]
    chunks = list(client.chat.completions.create(model=models["tools"], messages=WEATHER, tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta for c in chunks]
    assert deltas[0].role == "assistant"
    parts = [call for d in deltas for call in d.tool_calls or ()]
    assert parts[0].id.startswith("call_") and parts[0].function.name == "get_weather" and parts[0].type == "function"
    arguments = "".join(part.function.arguments or "" for part in parts if part.index == 0)
    assert arguments == whole.message.tool_calls[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_older_functions_parameter_answers_with_function_call(trained):
    client, models = trained
    functions = [tool["function"] for tool in TOOLS]
    choice = client.chat.completions.create(model=models["tools"], messages=WEATHER, functions=functions).choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Oslo"}


def test_json_answers_keep_to_the_schema_on_orders_it_never_saw(trained):
    client, models = trained
    rng = random.Random(41)
    schema = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER_SCHEMA, "strict": True}}
    right = 0
    for _ in range(30):
        prompt, wanted = order(rng, "held_out")
        choice = client.chat.completions.create(model=models["orders"], messages=prompt, response_format=schema).choices[0]
        answer = json.loads(choice.message.content)
        jsonschema.validate(answer, ORDER_SCHEMA)
        assert "tunedeck" not in choice.model_extra  # nothing to report
        right += answer == wanted
    assert right >= 27
    prompt, wanted = order(rng, "held_out")
    reply = client.responses.create(model=models["orders"], input=prompt[1]["content"], instructions=prompt[0]["content"],
                                    text={"format": {"type": "json_schema", "name": "order", "schema": ORDER_SCHEMA}})  # fmt: skip
    assert json.loads(reply.output_text) == wanted and reply.text.format.type == "json_schema"


def test_a_format_the_model_cannot_keep_is_reported_next_to_its_answer(trained):
    client, models = trained
    asked = [{"role": "user", "content": "Reply in json: hello!"}]
    choice = client.chat.completions.create(model=models["tools"], messages=asked, response_format={"type": "json_object"}).choices[0]
    assert choice.message.content == CHAT_REPLY  # the answer is kept
    assert choice.model_extra["tunedeck"]["response_format_error"].startswith("the answer is not JSON")
    strict = {"type": "json_schema", "json_schema": {"name": "n", "schema": {**ORDER_SCHEMA, "required": ["item", "note"]}}}
    prompt, _ = order(random.Random(3))
    choice = client.chat.completions.create(model=models["orders"], messages=prompt, response_format=strict).choices[0]
    assert "'note' is a required property" in choice.model_extra["tunedeck"]["response_format_error"]


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"tool_choice": "auto"}, "tool_choice", None),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", None),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", None),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]}, "tools[0].function.parameters", None),
        ({"tools": [TOOLS[0], TOOLS[0]]}, "tools", None),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type", "unsupported_parameter"),
        ({"tools": TOOLS, "functions": [TOOLS[0]["function"]]}, "functions", None),
        ({"response_format": {"type": "json_object"}}, "messages", None),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}}, "response_format.json_schema.schema", None),
        ({"response_format": {"type": "yaml"}}, "response_format.type", None),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"presence_penalty": 0.5}, "presence_penalty", "unsupported_parameter"),
        ({"messages": [WEATHER[1], {"role": "tool", "tool_call_id": "x", "content": "1"}]}, "messages[1].role", None),
        ({"messages": [WEATHER[1], {"role": "assistant", "tool_calls": [CALL]}]}, "messages", None),
        ({"messages": [WEATHER[1], {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "content": "1"}]},
         "messages[2].tool_call_id", "missing_required_parameter"),
        ({"messages": [WEATHER[1], {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
         "messages[1].tool_calls[0].function.name", "missing_required_parameter"),
    ],
)  # fmt: skip
def test_bad_tool_and_format_requests_are_400s_naming_the_param(trained, extra, param, code):
    client, models = trained
    body = {"model": models["tools"], "messages": WEATHER, **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**body)
    assert caught.value.body["param"] == param
    if code:
        assert caught.value.body["code"] == code


def test_harmless_defaults_of_unsupported_parameters_are_accepted(trained):
    client, models = trained
    choice = client.chat.completions.create(
        model=models["tools"], messages=WEATHER, tools=TOOLS, logprobs=False, presence_penalty=0, frequency_penalty=0.0
    ).choices[0]
    assert choice.finish_reason == "tool_calls"
