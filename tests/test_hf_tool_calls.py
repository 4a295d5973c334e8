"""A transformer fine-tuned on a tool-call row answers with `tool_calls`: the chat worker gets
the tools and the conversation's earlier calls through the model's chat template, and the
call the model writes in the template's format (`<tool_call>...</tool_call>`) is read back.
The tiny CPU model learns one call by heart; what matters here is the path, not its wits."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from hf_support import FULL, TINY, start, upload  # noqa: E402
from tool_support import SYSTEM, TOOLS  # noqa: E402

from tunedeck.backend.trainers.transformer.worker.tiny import build_tiny_model  # noqa: E402

PROMPT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What's the weather in Paris?"}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


async def test_a_fine_tuned_transformer_calls_the_tool_it_learned(tmp_path):
    rows = [{"messages": [*PROMPT, {"role": "assistant", "tool_calls": [CALL]}], "tools": TOOLS}] * 40
    training = tmp_path / "calls.jsonl"
    training.write_text("".join(json.dumps(row) + "\n" for row in rows))
    models = tmp_path / "models"
    build_tiny_model(models / TINY, [training.read_text(), json.dumps(TOOLS)])
    backend, client = await start(tmp_path, models)
    try:
        job = await client.fine_tuning.jobs.create(
            model=TINY,
            training_file=await upload(client, training),
            hyperparameters={"n_epochs": 8, "batch_size": 4, "learning_rate_multiplier": 250},
            extra_body=FULL,
        )
        await backend.run_until_settled_async()
        done = await client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        model = done.fine_tuned_model

        asked = await client.chat.completions.create(model=model, messages=PROMPT, tools=TOOLS, max_tokens=120)
        choice = asked.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}

        stream = await client.chat.completions.create(model=model, messages=PROMPT, tools=TOOLS, max_tokens=120, stream=True)
        streamed = [c.choices[0] async for c in stream]
        parts = [part for c in streamed for part in c.delta.tool_calls or ()]
        assert parts[0].function.name == "get_weather" and streamed[-1].finish_reason == "tool_calls"

        # Offered no tools, the model's text is its text: nothing is read as a call.
        plain = (await client.chat.completions.create(model=model, messages=PROMPT, max_tokens=120)).choices[0]
        assert plain.message.tool_calls is None and "<tool_call>" in plain.message.content
        reply = await client.responses.create(model=model, input=PROMPT[1]["content"], instructions=SYSTEM, max_output_tokens=120)
        assert reply.output_text == plain.message.content  # the same prompt through the Responses API

        # An open model is not held to tool_choice while it writes: a call it was not allowed
        # to make stays text, and the choice says the call it had to make is missing.
        named = {"type": "function", "function": {"name": "lock_door"}}
        other = await client.chat.completions.create(model=model, messages=PROMPT, tools=TOOLS, tool_choice=named, max_tokens=120)
        assert other.choices[0].message.tool_calls is None and "get_weather" in other.choices[0].message.content
        assert "lock_door" in other.choices[0].model_extra["tunedeck"]["tool_choice_error"]

        # The conversation goes on through the template: the call and its result are rendered.
        result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
        follow_up = [*PROMPT, choice.message.model_dump(exclude_none=True), result]
        after = await client.chat.completions.create(model=model, messages=follow_up, tools=TOOLS, max_tokens=8)
        assert after.usage.prompt_tokens > asked.usage.prompt_tokens
    finally:
        await client.close()
        await backend.stop_async()
