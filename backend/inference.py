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
Tools, response formats and logprobs are accepted and ignored.
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

from .errors import ApiError, bad_request
from .stop_sequences import cut_at_stop
from .storage.ids import random_text
from .storage.store import Store
from .trainers.base import Turn
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
    return ChatRequest(
        model=model,
        prompt=_messages(body.get("messages")),
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        n=_integer(body, "n", 1, 1, MAX_CHOICES),
        seed=_integer(body, "seed", None, -(2**63), 2**63 - 1),
        stop=_stop(body.get("stop")),
        stream=_boolean(body, "stream"),
        include_usage=_boolean(stream_options, "include_usage", "stream_options.include_usage"),
    )


def _messages(raw: Any) -> list[Turn]:
    if raw is None:
        raise _missing("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("Invalid 'messages': expected a non-empty array of messages.", param="messages")
    return [_message(message, f"messages[{index}]") for index, message in enumerate(raw)]


def _message(message: Any, param: str) -> Turn:
    if not isinstance(message, dict):
        raise bad_request(f"Invalid '{param}': expected an object with a 'role'.", param=param)
    role = message.get("role")
    if role not in CHAT_ROLES:
        expected = ", ".join(CHAT_ROLES)
        where = f"{param}.role"
        raise bad_request(f"Invalid '{where}': expected one of {expected}; got {str(role)[:40]!r}.", param=where)
    return Turn(role, _content_text(message.get("content"), message, f"{param}.content"))


def _content_text(content: Any, message: dict[str, Any], param: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:  # an assistant turn that only called tools
        calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
        names = [c.get("function", {}).get("name") for c in calls if isinstance(c, dict)]
        return " ".join(f"{n}()" for n in names if isinstance(n, str))
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
        if weights is None:
            return [untrained_guess(request, rng) for _ in range(request.n)]
        return [
            generate(model, request.prompt, request.max_tokens, request.temperature, request.top_p, rng, request.stop)
            for _ in range(request.n)
        ]


    def _transformer_answer(self, request: ChatRequest, weights: Path | None) -> list[Generation]:
        body = {
            "messages": [{"role": turn.role, "content": turn.text} for turn in request.prompt],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": request.n,
            "seed": request.seed,
            "stop": list(request.stop),
        }
        reply = self._transformer.answer(request.model, weights, body)
        return [
            Generation(a["pieces"], a["finish_reason"], reply["prompt_tokens"], a["completion_tokens"])
            for a in reply["answers"]
        ]


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
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": g.text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": g.finish_reason,
        }
        for index, g in enumerate(generations)
    ]
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
        yield chunk(index, {}, generation.finish_reason)
    if request.include_usage:
        yield {**envelope, "choices": [], "usage": usage(request, generations)}


def _envelope(completion_id: str, created: int, model: str, kind: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": kind,
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
    }
