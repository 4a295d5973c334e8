"""`POST /v1/chat/completions` and `POST /v1/responses`: answers from the base model, fine-tuned
models and checkpoints.

Decoding runs in a worker thread (the default executor, not the training one), so a long
answer never holds up the event loop or waits behind training steps. `stream: true` sends
the answer as server-sent events, one chunk per token, ending with `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from aiohttp import web

from ..aliases import ModelAliases
from ..inference import ChatModels, chunk_bodies, completion_body, new_completion_id, parse_chat_request
from ..responses import new_response_ids, parse_responses_request, response_body, stream_events
from .bodies import read_json
from .server import json_response


def inference_routes(
    models: ChatModels, clock: Callable[[], float], aliases: ModelAliases | None = None
) -> web.RouteTableDef:
    """`aliases`: a request may name a base model by an alias; the body still names the alias."""
    routes = web.RouteTableDef()
    aliases = aliases or ModelAliases()

    @routes.post("/v1/chat/completions")
    async def chat_completions(request: web.Request) -> web.StreamResponse:
        chat = parse_chat_request(await read_json(request))
        served = replace(chat, model=aliases.resolve(chat.model))
        weights = models.weights_of(served.model)
        generations = await asyncio.get_running_loop().run_in_executor(None, models.answer, served, weights)
        completion_id, created = new_completion_id(), int(clock())
        if chat.stream:
            return await _stream(request, chunk_bodies(completion_id, created, chat, generations))
        return json_response(completion_body(completion_id, created, chat, generations))

    @routes.post("/v1/responses")
    async def responses(request: web.Request) -> web.StreamResponse:
        asked = parse_responses_request(await read_json(request))
        served = replace(asked.chat, model=aliases.resolve(asked.chat.model))
        weights = models.weights_of(served.model)
        (generation,) = await asyncio.get_running_loop().run_in_executor(None, models.answer, served, weights)
        ids, created = new_response_ids(), int(clock())
        if asked.chat.stream:
            return await _stream_events(request, stream_events(ids, created, asked, generation))
        return json_response(response_body(ids, created, asked, generation))

    return routes


async def _stream(request: web.Request, chunks: Iterable[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:  # the client stopped reading; nothing is left to tell it
        pass
    return response


async def _stream_events(request: web.Request, events: Iterable[dict[str, Any]]) -> web.StreamResponse:
    """The Responses API's stream: each event named, no `[DONE]` at the end."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        for event in events:
            data = json.dumps(event, ensure_ascii=False)
            await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
        await response.write_eof()
    except ConnectionResetError:  # the client stopped reading; nothing is left to tell it
        pass
    return response
