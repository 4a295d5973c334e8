"""`POST /v1/responses`: the part of OpenAI's Responses API that fine-tuning code uses to ask a
model (the cookbook's RFT notebook does its inference so), answered by the same local models
as chat completions.

Served: `input` as a string or as messages (text content: `input_text`/`output_text`/`text`
parts), `instructions` (a system turn before the input), `max_output_tokens`, `temperature`,
`top_p`, `text.format` (`text`, and `json_object`/`json_schema` as chat completions serve
`response_format`: kept where the model can, checked always, a failure reported in the
response's `tunedeck.response_format_error`), `metadata`, `store` (accepted; nothing is kept
to fetch later), `stream` (the API's server-sent events, `response.created` to
`response.completed` or `response.incomplete`). Everything else the API knows is refused
with a 400 naming it, never ignored: tools, images and files, `previous_response_id`,
background mode. An unknown parameter is refused as the API refuses one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .chat_options import AnswerShape, format_error, response_format_of
from .errors import ApiError, bad_request

# The request checks chat completions use: the same words for the same mistakes.
from .inference import DEFAULT_MAX_TOKENS, MAX_TOKENS_LIMIT, ChatRequest, _boolean, _integer, _missing, _number, usage
from .storage.ids import random_text
from .trainers.base import Turn
from .trainers.ngram.policy import Generation

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")
KNOWN = {
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "text", "metadata",
    "store", "stream", "user", "tools", "tool_choice", "parallel_tool_calls", "previous_response_id",
    "reasoning", "truncation", "include", "background", "service_tier", "stream_options", "prompt",
    "max_tool_calls", "top_logprobs", "safety_identifier", "prompt_cache_key", "conversation",
}  # fmt: skip
"""Every parameter the API takes: one not listed here is unknown, and refused as the API does."""
UNSUPPORTED = {
    "previous_response_id": "responses are not stored here, so none can be continued: send the whole conversation as 'input'",
    "conversation": "conversations are not stored here: send the whole conversation as 'input'",
    "background": "background responses are not served here: ask without 'background'",
    "prompt": "stored prompts are not served here: send the text as 'input'",
}
"""Parameters refused whatever their value (when set), with what to do instead."""


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    chat: ChatRequest
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    user: str | None


def parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    for key in body:
        if key not in KNOWN:
            raise bad_request(f"Unrecognized request argument supplied: {key[:100]}", param=key, code="unknown_parameter")
    for key, why in UNSUPPORTED.items():
        if body.get(key) not in (None, False):
            raise _unsupported(key, why)
    tools = body.get("tools")
    if tools not in (None, []):
        raise _unsupported("tools", "the local models do not call tools through the Responses API")
    if body.get("tool_choice") not in (None, "auto", "none"):
        raise _unsupported("tool_choice", "there are no tools to choose")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model") if model is None else bad_request("Invalid 'model': expected a model name.", param="model")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("Invalid 'instructions': expected a string.", param="instructions")
    prompt = _input(body.get("input"))
    if instructions:
        prompt = [Turn("system", instructions), *prompt]
    shape = _answer_shape(body.get("text"), prompt)
    max_output_tokens = _integer(body, "max_output_tokens", None, 1, MAX_TOKENS_LIMIT)
    chat = ChatRequest(
        model=model,
        prompt=prompt,
        max_tokens=max_output_tokens or DEFAULT_MAX_TOKENS,
        # Greedy unless a temperature is given (the API's default is 1), as chat completions
        # are here: an evaluation against the local backend is reproducible by default.
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        n=1,
        seed=None,
        stop=(),
        stream=_boolean(body, "stream"),
        include_usage=True,
        shape=shape,
        messages=tuple({"role": turn.role, "content": turn.text} for turn in prompt),
    )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad_request("Invalid 'metadata': expected an object of strings.", param="metadata")
    user = body.get("user")
    return ResponsesRequest(
        chat=chat,
        instructions=instructions,
        max_output_tokens=max_output_tokens,
        metadata=metadata,
        user=user if isinstance(user, str) else None,
    )


def _input(raw: Any) -> list[Turn]:
    if isinstance(raw, str):
        return [Turn("user", raw)]
    if raw is None:
        raise _missing("input")
    if not isinstance(raw, list) or not raw:
        raise bad_request("Invalid 'input': expected a string or a non-empty array of messages.", param="input")
    return [_item(item, f"input[{index}]") for index, item in enumerate(raw)]


def _item(item: Any, param: str) -> Turn:
    if not isinstance(item, dict):
        raise bad_request(f"Invalid '{param}': expected a message object.", param=param)
    kind = item.get("type", "message")
    if kind != "message":
        raise _unsupported(f"{param}.type", f"only messages are served here, not {str(kind)[:40]!r} items")
    role = item.get("role")
    if role not in ROLES:
        where = f"{param}.role"
        raise bad_request(f"Invalid '{where}': expected one of {', '.join(ROLES)}; got {str(role)[:40]!r}.", param=where)
    return Turn(role, _text(item.get("content"), f"{param}.content"))


def _text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"Invalid '{param}': expected a string or an array of content parts.", param=param)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            where = f"{param}[{index}]"
            raise _unsupported(where, f"only text parts ({', '.join(TEXT_PARTS)}) are served here, not {str(kind)[:40]!r}")
        texts.append(part["text"])
    return "".join(texts)


def _answer_shape(text: Any, prompt: list[Turn]) -> AnswerShape:
    """The JSON format `text.format` asks for, checked as chat completions check theirs."""
    if text is None:
        return AnswerShape()
    if not isinstance(text, dict):
        raise bad_request("Invalid 'text': expected an object.", param="text")
    messages = [{"role": turn.role, "content": turn.text} for turn in prompt]
    response_format, schema = response_format_of(text.get("format"), messages, "text.format", "input")
    return AnswerShape(response_format=response_format, schema=schema)


def _unsupported(param: str, why: str) -> ApiError:
    return bad_request(f"'{param}' is not supported by the local backend: {why}.", param=param, code="unsupported_parameter")


# -- the response --------------------------------------------------------------------------------


def new_response_ids() -> tuple[str, str]:
    """A response's id and its one message's id."""
    return "resp_" + random_text(48), "msg_" + random_text(48)


def response_body(
    ids: tuple[str, str], created: int, request: ResponsesRequest, generation: Generation | None
) -> dict[str, Any]:
    """The response object: in progress (no `generation` yet) or done."""
    response_id, message_id = ids
    chat = request.chat
    status, incomplete, output, used = "in_progress", None, [], None
    if generation is not None:
        cut = generation.finish_reason == "length"
        status = "incomplete" if cut else "completed"
        incomplete = {"reason": "max_output_tokens"} if cut else None
        output = [message_item(message_id, generation.text, "incomplete" if cut else "completed")]
        counted = usage(chat, [generation])
        used = {
            "input_tokens": counted["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": counted["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counted["total_tokens"],
        }
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": chat.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "temperature": chat.temperature,
        "text": {"format": dict(chat.shape.response_format or {"type": "text"})},
        "tool_choice": "auto",
        "tools": [],
        "top_p": chat.top_p,
        "truncation": "disabled",
        "usage": used,
        "user": request.user,
        "metadata": dict(request.metadata),
        **_format_report(chat, generation),
    }


def _format_report(chat: ChatRequest, generation: Generation | None) -> dict[str, Any]:
    """The `tunedeck` extension of a finished response whose text breaks the JSON format asked for."""
    problem = format_error(chat.shape, generation.text) if generation is not None else None
    return {"tunedeck": {"response_format_error": problem}} if problem else {}


def message_item(message_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [output_text(text)]
    return {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": content}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def stream_events(
    ids: tuple[str, str], created: int, request: ResponsesRequest, generation: Generation
) -> Iterator[dict[str, Any]]:
    """The API's events for one answer, in its order, numbered from 0."""
    message_id = ids[1]
    started = response_body(ids, created, request, None)
    done = response_body(ids, created, request, generation)
    where = {"item_id": message_id, "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": message_item(message_id, None, "in_progress")},
        {"type": "response.content_part.added", **where, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
    ]
    events += [{"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []} for piece in generation.pieces]
    events += [
        {"type": "response.output_text.done", **where, "text": generation.text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": output_text(generation.text)},
        {"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]},
        {"type": "response.completed" if done["status"] == "completed" else "response.incomplete", "response": done},
    ]
    for number, event in enumerate(events):
        yield {**event, "sequence_number": number}
