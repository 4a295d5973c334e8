"""`POST /v1/responses` through the unmodified SDK: what the cookbook's RFT notebook asks with
(`client.responses.create(...).output_text`), streamed and not, every body checked against
the SDK's own types; what the local models cannot do is a 400 naming it."""

from __future__ import annotations

import json

import openai
import pytest
from eval_support import train
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

LABELS = ("billing", "shipping", "account", "technical", "returns", "other")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A backend with one fine-tuned ticket classifier (thread mode, for the sync SDK)."""
    run = train(tmp_path_factory.mktemp("responses"))
    client = openai.OpenAI(base_url=run.backend.base_url, api_key=run.backend.api_key, max_retries=0)
    rows = [json.loads(line) for line in run.held_out.read_text().splitlines()[:20]]
    yield client, run.fine_tuned, rows
    client.close()
    run.backend.stop()


def test_a_response_answers_as_the_chat_completion_does(trained):
    client, model, rows = trained
    right = 0
    for row in rows:
        system, ticket, label = row["messages"][0], row["messages"][-2], row["messages"][-1]["content"]
        response = client.responses.create(model=model, instructions=system["content"], input=[ticket])
        chat = client.chat.completions.create(model=model, messages=[system, ticket])
        assert response.output_text == chat.choices[0].message.content  # the same model, the same answer
        right += response.output_text == label
    assert right >= 0.7 * len(rows)  # it learned the labels


def test_the_body_has_the_apis_shape(trained):
    client, model, rows = trained
    raw = client.responses.with_raw_response.create(
        model=model, input=rows[0]["messages"][-2]["content"], metadata={"run": "a"}, max_output_tokens=16
    )
    body = raw.http_response.json()
    response = Response.model_validate(body)  # the SDK's own types, enums included
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == model and response.metadata == {"run": "a"} and response.max_output_tokens == 16
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.content[0].type == "output_text"
    assert response.output_text in LABELS
    usage = response.usage
    assert usage.output_tokens == 1 and usage.input_tokens > 5
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_a_string_input_and_content_parts_are_read(trained):
    client, model, rows = trained
    ticket = rows[1]["messages"][-2]["content"]
    plain = client.responses.create(model=model, input=ticket).output_text
    parts = client.responses.create(
        model=model, input=[{"role": "user", "content": [{"type": "input_text", "text": ticket}]}]
    ).output_text
    assert plain == parts and plain in LABELS


def test_streaming_sends_the_apis_events_in_order(trained):
    client, model, rows = trained
    ticket = rows[2]["messages"][-2]["content"]
    whole = client.responses.create(model=model, input=ticket)
    events = list(client.responses.create(model=model, input=ticket, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == whole.output_text == events[-1].response.output_text
    assert events[0].response.status == "in_progress" and events[-1].response.status == "completed"
    adapter = TypeAdapter(ResponseStreamEvent)
    for event in events:  # each event as the SDK's types define it
        adapter.validate_python(event.model_dump(mode="json"))


def test_an_answer_cut_at_max_output_tokens_is_incomplete(trained):
    client, model, rows = trained
    ticket = rows[3]["messages"][-2]["content"]
    # One token is the label, with no room left for the end: cut, as the chat completion's "length".
    cut = client.responses.create(model=model, input=ticket, max_output_tokens=1)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text in LABELS and cut.output[0].status == "incomplete"
    whole = client.responses.create(model=model, input=ticket, max_output_tokens=2)
    assert whole.status == "completed" and whole.incomplete_details is None and whole.output_text == cut.output_text
    events = list(client.responses.create(model=model, input=ticket, max_output_tokens=1, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"text": {"format": {"type": "json_object"}}}, "input"),  # the API's rule: the input says "json"
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}}, "text.format.schema"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input[0].type"),
        ({"background": True}, "background"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_what_the_local_models_cannot_do_is_a_400_naming_it(trained, extra, param):
    client, model, _ = trained
    body = {"model": model, "input": "hello", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**body)
    assert caught.value.body["param"] == param


def test_an_unknown_parameter_and_an_unknown_model_are_refused(trained):
    client, model, _ = trained
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="hello", extra_body={"temprature": 0})
    assert "temprature" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="ft:nope", input="hello")
