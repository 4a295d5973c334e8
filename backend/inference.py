"""Chat completions from the local models: request checks, model loading, response bodies.

Every model the backend knows can answer: the built-in base model, every fine-tuned model
and every checkpoint (`ft:...`, `ft:...:ckpt-step-N`), whatever method trained it. Loaded
weights are kept in a small LRU cache. The built-in base model has learned no words, so it
answers as an untrained assistant would, with one of `UNTRAINED_GUESSES` (the same one for
the same question when greedy): "benchmark the base model first" then shows an answer that
fails, as a real base model's unhelpful one does, rather than nothing.

Decoding is greedy unless the request gives a `temperature` above 0 (the real API's
default is 1): evaluations against the local backend are then reproducible by default.
With a temperature, `top_p` and `seed` apply as in the API. An answer ends at the model's
`<end>` token (`finish_reason` "stop"), at a `stop` sequence, or after `max_tokens` /
`max_completion_tokens` tokens (default `DEFAULT_MAX_TOKENS`; "length"). Token counts in
`usage` are the built-in tokenizer's (prompt: the cookbook's per-message estimate).

Tool calls are served as the API serves them (`message.tool_calls`, `finish_reason`
"tool_calls"; `function_call` for requests that use the older `functions`): the built-in
model writes the calls it learned from tool-call rows (`trainers/ngram/structured.py`, kept
to the tools offered and to `tool_choice`); a transformer writes them in its chat template's
tool format and `tool_call_text.py` reads them back. `response_format` is kept where the
model can (`chat_options.py`) and every answer is checked against it; parameters the local
models cannot honour are refused.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tunedeck.core.datasets.detect import CHAT_ROLES
from tunedeck.core.datasets.tokens import PRIMING_TOKENS, TOKENS_PER_MESSAGE

from .chat_options import AnswerShape, format_error, parse_answer_shape
from .errors import ApiError, bad_request
from .jobs.training_data import message_calls
from .stop_sequences import cut_at_stop
from .storage.ids import random_text
from .storage.store import Store
from .tool_call_text import parse_tool_calls
from .trainers.base import ToolCall, Turn
from .trainers.ngram.features import END_TOKEN, UNKNOWN_TOKEN, tokenize
from .trainers.ngram.policy import Generation, TokenModel, generate, join_piece, load_model, untrained_model

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 4096
MAX_CHOICES = 16
MAX_STOP_SEQUENCES = 4
CACHED_MODELS = 4
SYSTEM_FINGERPRINT = "fp_tunedeck_local"
UNTRAINED_GUESSES = (
    "I'm not sure I understand. Could you tell me more?",
    "Thanks for your message. Could you give me a few more details?",
    "Let me look into that. What exactly would you like to know?",
    "I can help with that. Can you describe it in more detail?",
)
"""What the untrained built-in model says: a polite guess that answers nothing."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    prompt: list[Turn]
    max_tokens: int
    temperature: float  # 0: greedy
    top_p: float
    n: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    shape: AnswerShape = AnswerShape()
    messages: tuple[dict[str, Any], ...] = ()  # the prompt as chat templates take it (transformers)

    @property
    def prompt_tokens(self) -> int:
        return PRIMING_TOKENS + sum(TOKENS_PER_MESSAGE + len(tokenize(t.text)) for t in self.prompt)


# -- the request --------------------------------------------------------------------------------


CHAT_PARAMETERS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "stop",
    "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
    "response_format", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "user",
    "metadata", "store", "service_tier", "reasoning_effort", "modalities", "audio", "prediction",
    "web_search_options", "verbosity", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
})  # fmt: skip
"""Every parameter the API's chat completions take: any other is refused, as the API refuses it
(a misspelt `temprature` is an error, never a silent default)."""


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    for key in body:
        if key not in CHAT_PARAMETERS:
            raise bad_request(f"Unrecognized request argument supplied: {key[:100]}", param=key, code="unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing_or_invalid(body, "model", "a model name")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise bad_request("Invalid 'stream_options': expected an object.", param="stream_options")
    prompt = _messages(body.get("messages"))
    shape = parse_answer_shape(body, body["messages"])
    return ChatRequest(
        model=model,
        prompt=prompt,
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        n=_integer(body, "n", 1, 1, MAX_CHOICES),
        seed=_integer(body, "seed", None, -(2**63), 2**63 - 1),
        stop=_stop(body.get("stop")),
        stream=_boolean(body, "stream"),
        include_usage=_boolean(stream_options, "include_usage", "stream_options.include_usage"),
        shape=shape,
        messages=tuple(template_messages(body["messages"], prompt)),
    )


def _messages(raw: Any) -> list[Turn]:
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("Invalid 'messages': expected a non-empty array of messages.", param="messages")
    turns = [_message(message, f"messages[{index}]") for index, message in enumerate(raw)]
    _check_tool_answers(raw)
    return turns


def _message(message: Any, param: str) -> Turn:
    if not isinstance(message, dict):
        raise bad_request(f"Invalid '{param}': expected an object with a 'role'.", param=param)
    role = message.get("role")
    if role not in CHAT_ROLES:
        expected = ", ".join(CHAT_ROLES)
        where = f"{param}.role"
        raise bad_request(f"Invalid '{where}': expected one of {expected}; got {str(role)[:40]!r}.", param=where)
    calls = _calls(message, param) if role == "assistant" else ()
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _missing(f"{param}.tool_call_id")
    return Turn(role, _content_text(message.get("content"), f"{param}.content"), tool_calls=calls)


def _calls(message: dict[str, Any], param: str) -> tuple[ToolCall, ...]:
    """An assistant message's calls, each checked as the API checks them."""
    raw = message.get("tool_calls")
    if raw is None:
        return message_calls(message)  # `function_call`, the older form, if any
    if not isinstance(raw, list):
        raise bad_request(f"Invalid type for '{param}.tool_calls': expected an array.", param=f"{param}.tool_calls")
    for index, call in enumerate(raw):
        where = f"{param}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise _missing(f"{where}.id")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _missing(f"{where}.function.name")
        if not isinstance(function.get("arguments"), str):
            raise _missing(f"{where}.function.arguments")
    return message_calls(message)


def _check_tool_answers(messages: list[dict[str, Any]]) -> None:
    """Every call answered by a `tool` message right after it, and no `tool` message without
    a call before it: the API refuses a conversation that breaks either."""
    waiting: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if message["tool_call_id"] not in waiting:
                raise bad_request(
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceding message "
                    f"with 'tool_calls' (messages[{index}]).",
                    param=f"messages[{index}].role",
                )
            waiting.remove(message["tool_call_id"])
            continue
        if waiting:
            break
        if role == "assistant" and isinstance(message.get("tool_calls"), list):
            waiting = [call["id"] for call in message["tool_calls"]]
    if waiting:
        raise bad_request(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)[:300]}",
            param="messages",
        )


def template_messages(raw: list[dict[str, Any]], turns: list[Turn]) -> list[dict[str, Any]]:
    """The conversation as a chat template takes it: text content, calls with their ids."""
    messages = []
    for message, turn in zip(raw, turns):
        out: dict[str, Any] = {"role": turn.role, "content": turn.text}
        if turn.tool_calls:
            ids = [c.get("id") for c in message.get("tool_calls") or () if isinstance(c, dict)]
            out["tool_calls"] = [
                {
                    "id": ids[i] if i < len(ids) else f"call_{i}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for i, call in enumerate(turn.tool_calls)
            ]
        for key in ("tool_call_id", "name"):
            if isinstance(message.get(key), str):
                out[key] = message[key]
        messages.append(out)
    return messages


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:  # an assistant turn that only called tools
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(f"Invalid '{param}': each content part needs a 'type'.", param=param)
            if isinstance(part.get("text"), str):
                texts.append(part["text"])  # text parts; images, audio and files carry no words we read
        return " ".join(texts)
    raise bad_request(f"Invalid '{param}': expected a string or an array of content parts.", param=param)


def _max_tokens(body: dict[str, Any]) -> int:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return _integer(body, key, DEFAULT_MAX_TOKENS, 1, MAX_TOKENS_LIMIT)


def _integer(body: dict[str, Any], key: str, default: Any, low: int, high: int) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"Invalid '{key}': expected an integer from {low} to {high}.", param=key)
    return value


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise bad_request(f"Invalid '{key}': expected a number from {low:g} to {high:g}.", param=key)
    return float(value)


def _boolean(body: dict[str, Any], key: str, param: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"Invalid '{param or key}': expected true or false.", param=param or key)
    return value


def _stop(raw: Any) -> tuple[str, ...]:
    stops = [raw] if isinstance(raw, str) else raw
    if stops is None:
        return ()
    if not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in stops):
        raise bad_request(f"Invalid 'stop': expected a string or up to {MAX_STOP_SEQUENCES} strings.", param="stop")
    return tuple(s for s in stops if s)


def _missing_or_invalid(body: dict[str, Any], key: str, what: str) -> ApiError:
    if body.get(key) is None:
        return _missing(key)
    return bad_request(f"Invalid '{key}': expected {what}.", param=key)


def _missing(key: str) -> ApiError:
    return bad_request(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")


# -- the models ---------------------------------------------------------------------------------


class ChatModels:
    """Finds a model by name and keeps the last few loaded (thread-safe: answers run off-loop)."""

    def __init__(
        self, store: Store, data_dir: Path, base_models: Callable[[], list[str]], transformer: Any = None
    ) -> None:
        """`transformer`: a `TransformerChat` (transformer/server/chat.py) that answers for transformer models."""
        self._transformer = transformer
        self._store = store
        self._data_dir = data_dir
        self._base_models = base_models
        self._cache: OrderedDict[str, TokenModel] = OrderedDict()
        self._lock = threading.Lock()

    def weights_of(self, name: str) -> Path | None:
        """The weights file of a fine-tuned model, None for a base model; 404 for anything else.
        (Call on the event loop: it reads the store.)"""
        if name in self._base_models():
            return None
        found = self._store.get_model(name)
        if found is None:
            raise model_not_found(name)
        return self._data_dir / found["weights"]

    def load(self, name: str, weights: Path | None) -> TokenModel:
        key = str(weights) if weights is not None else f"base:{name}"
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if weights is None:
            model = untrained_model(name, [UNKNOWN_TOKEN, END_TOKEN])
        else:
            try:
                model = load_model(weights)
            except (OSError, ValueError, KeyError):  # deleted or damaged since the store named it
                raise model_not_found(name) from None
        with self._lock:
            self._cache[key] = model
            while len(self._cache) > CACHED_MODELS:
                self._cache.popitem(last=False)
        return model

    def answer(self, request: ChatRequest, weights: Path | None) -> list[Generation]:
        if self._transformer is not None and self._transformer.handles(request.model, weights):
            return self._transformer_answer(request, weights)
        model = self.load(request.model, weights)
        rng = None
        if request.temperature > 0:  # numpy wants a non-negative seed; the API allows any int64
            rng = np.random.default_rng(None if request.seed is None else request.seed % 2**64)
        rules = request.shape.rules()
        if weights is None and rules.must_call:  # it knows no call, but the request demands one
            call = ToolCall(rules.callable_names()[0], "{}")
            return [Generation([], "tool_calls", completion_tokens=1, tool_calls=(call,)) for _ in range(request.n)]
        if weights is None:
            return [untrained_guess(request, rng) for _ in range(request.n)]
        return [
            generate(model, request.prompt, request.max_tokens, request.temperature, request.top_p, rng, request.stop, rules)
            for _ in range(request.n)
        ]


    def _transformer_answer(self, request: ChatRequest, weights: Path | None) -> list[Generation]:
        shape = request.shape
        body = {
            "messages": list(request.messages),
            "tools": shape.offered_tools() if shape.tool_choice != "none" else [],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
            "seed": request.seed,
            "stop": list(request.stop),
        }
        reply = self._transformer.answer(request.model, weights, body)
        return [
            read_transformer_answer(a["pieces"], a["finish_reason"], reply["prompt_tokens"], a["completion_tokens"], shape)
            for a in reply["answers"]
        ]


def read_transformer_answer(
    pieces: list[str], finish_reason: str, prompt_tokens: int, completion_tokens: int, shape: AnswerShape
) -> Generation:
    """A transformer's answer, with the tool calls it wrote in its template's format read
    back as calls (only calls to functions offered, and only where the request allows them)."""
    offered = shape.rules().callable_names()
    if not offered:
        return Generation(pieces, finish_reason, prompt_tokens, completion_tokens)
    text, calls = parse_tool_calls("".join(pieces), offered)
    if not shape.parallel_tool_calls or shape.legacy_functions:
        calls = calls[:1]
    if not calls:
        return Generation(pieces, finish_reason, prompt_tokens, completion_tokens)
    finish = "tool_calls" if finish_reason == "stop" else finish_reason
    return Generation([text] if text else [], finish, prompt_tokens, completion_tokens, tuple(calls))


def untrained_guess(request: ChatRequest, rng: np.random.Generator | None) -> Generation:
    """The untrained model's answer: a guess picked by the question (greedy) or at random
    (sampled), cut at a stop sequence or at `max_tokens` as any answer is."""
    if rng is None:
        question = "\n".join(turn.text for turn in request.prompt)
        text = UNTRAINED_GUESSES[zlib.crc32(question.encode("utf-8", "replace")) % len(UNTRAINED_GUESSES)]
    else:
        text = UNTRAINED_GUESSES[int(rng.integers(len(UNTRAINED_GUESSES)))]
    tokens = tokenize(text)
    pieces: list[str] = []
    for token in tokens[: request.max_tokens]:
        pieces.append(join_piece(tokens[len(pieces) - 1] if pieces else None, token))
        if request.stop and cut_at_stop(pieces, request.stop):
            return Generation(pieces, "stop")
    return Generation(pieces, "stop" if len(tokens) <= request.max_tokens else "length")


def model_not_found(name: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{name[:200]}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


# -- the response --------------------------------------------------------------------------------


def new_completion_id() -> str:
    return "chatcmpl-" + random_text(29)


def usage(request: ChatRequest, generations: list[Generation]) -> dict[str, Any]:
    completion = sum(len(g.pieces) if g.completion_tokens is None else g.completion_tokens for g in generations)
    counted = generations[0].prompt_tokens if generations else None
    prompt = request.prompt_tokens if counted is None else counted
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body(
    completion_id: str, created: int, request: ChatRequest, generations: list[Generation]
) -> dict[str, Any]:
    choices = []
    for index, g in enumerate(generations):
        message: dict[str, Any] = {"role": "assistant", "content": g.text, "refusal": None, "annotations": []}
        calls = call_bodies(g)
        if calls and request.shape.legacy_functions:
            message.update(content=g.text or None, function_call=calls[0]["function"])
        elif calls:
            message.update(content=g.text or None, tool_calls=calls)
        choice = {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason(request, g)}
        choices.append({**choice, **format_report(request, g)})
    return {
        **_envelope(completion_id, created, request.model, "chat.completion"),
        "choices": choices,
        "usage": usage(request, generations),
    }


def chunk_bodies(
    completion_id: str, created: int, request: ChatRequest, generations: list[Generation]
) -> Iterator[dict[str, Any]]:
    """The stream's chunks: a role, one chunk per token, a finish reason, per choice; then usage if asked."""
    envelope = _envelope(completion_id, created, request.model, "chat.completion.chunk")
    extra = {"usage": None} if request.include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**envelope, "choices": [choice], **extra}

    for index, generation in enumerate(generations):
        yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
        for piece in generation.pieces:
            yield chunk(index, {"content": piece})
        for position, call in enumerate(call_bodies(generation)):
            # The API sends a call's id and name first, then its arguments in pieces.
            if request.shape.legacy_functions:
                yield chunk(index, {"function_call": {"name": call["function"]["name"], "arguments": ""}})
                yield chunk(index, {"function_call": {"arguments": call["function"]["arguments"]}})
                break
            head = {"index": position, "id": call["id"], "type": "function"}
            yield chunk(index, {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]})
            yield chunk(index, {"tool_calls": [{"index": position, "function": {"arguments": call["function"]["arguments"]}}]})
        last = chunk(index, {}, finish_reason(request, generation))
        last["choices"][0].update(format_report(request, generation))
        yield last
    if request.include_usage:
        yield {**envelope, "choices": [], "usage": usage(request, generations)}


def call_bodies(generation: Generation) -> list[dict[str, Any]]:
    """The generation's calls as the API writes them, each with an id of its own."""
    return [
        {"id": "call_" + random_text(24), "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in generation.tool_calls
    ]


def finish_reason(request: ChatRequest, generation: Generation) -> str:
    if generation.finish_reason == "tool_calls" and request.shape.legacy_functions:
        return "function_call"
    return generation.finish_reason


def format_report(request: ChatRequest, generation: Generation) -> dict[str, Any]:
    """The choice's `tunedeck` extension when its answer breaks what was asked: a format its
    text does not keep, or a call `tool_choice` demanded that an open model did not write
    (the built-in model always calls when it must; a transformer is not held to it)."""
    if generation.tool_calls:
        return {}  # the format is the text answer's; a call answers instead
    report = {}
    rules = request.shape.rules()
    if rules.must_call:
        wanted = ", ".join(rules.callable_names())
        report["tool_choice_error"] = f"tool_choice asked for a call ({wanted[:200]}); the model answered in words"
    problem = format_error(request.shape, generation.text)
    if problem:
        report["response_format_error"] = problem
    return {"tunedeck": report} if report else {}


def _envelope(completion_id: str, created: int, model: str, kind: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": kind,
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
    }
