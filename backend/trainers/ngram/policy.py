"""The n-gram model as something that answers: load it, extend it, and decode from it.

A `TokenModel` is a featurizer plus its weight matrix (`sft.py` trains it; DPO and RFT
fine-tune it further). The next token's logits are the summed weight rows of the prompt's
context features (fixed for the whole answer) and of the local features of the tokens
decoded so far, exactly as in training. Decoding stops at `<end>` or after `max_tokens`.
`<unk>` is never emitted: a model cannot say a word it does not know, so decoding the
untrained base model (whose only tokens are `<unk>` and `<end>`) gives the empty string; the
backend's chat answers it with a guess instead (`inference.untrained_guess`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...stop_sequences import cut_at_stop
from ..base import ChatExample, ToolCall, Turn
from .features import END_TOKEN, Featurizer, build_vocabulary, context_feature_names, local_feature_names, turn_tokens
from .model import MAX_VOCABULARY, hash_rows, load_weights, save_weights
from .structured import Answer, AnswerRules, Constraint, is_marker, read_answer

UNKNOWN_ID, END_ID = 0, 1  # where features.build_vocabulary puts `<unk>` and `<end>`
NO_SPACE_BEFORE = frozenset(".,!?;:)]}%'-/")
NO_SPACE_AFTER = frozenset("([{$'-/")


@dataclass
class TokenModel:
    featurizer: Featurizer
    weights: np.ndarray  # (feature rows, vocabulary) float32
    base_model: str

    @property
    def vocabulary(self) -> list[str]:
        return self.featurizer.vocabulary

    def context_ids(self, prompt: Sequence[Turn], tools: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Rows and values of the context features of an answer to `prompt` (offering `tools`)."""
        names, values = context_feature_names(prompt, tools)
        rows = np.fromiter((self.featurizer.row(n) for n in names), dtype=np.int64, count=len(names))
        return rows, np.asarray(values, dtype=np.float32)

    def context_logits(self, prompt: Sequence[Turn], tools: Sequence[str] = ()) -> np.ndarray:
        rows, values = self.context_ids(prompt, tools)
        return values @ self.weights[rows]

    def next_logits(self, context_logits: np.ndarray, tokens: Sequence[str]) -> np.ndarray:
        rows = [self.featurizer.row(n) for n in local_feature_names(tokens, len(tokens))]
        return context_logits + self.weights[rows].sum(axis=0)


def untrained_model(base_model: str, vocabulary: Sequence[str]) -> TokenModel:
    """Zero weights: every next token equally likely (what the base model is)."""
    featurizer = Featurizer(vocabulary, hash_rows(len(vocabulary)))
    return TokenModel(featurizer, np.zeros((featurizer.dim, len(vocabulary)), dtype=np.float32), base_model)


def load_model(path: Path) -> TokenModel:
    featurizer, weights, meta = load_weights(path)
    return TokenModel(featurizer, weights, str(meta.get("base_model", "")))


def save_model(model: TokenModel, path: Path, steps: int) -> None:
    save_weights(path, model.featurizer, model.weights, model.base_model, steps)


def starting_model(base_model: str, initial_weights: Path | None, answers: Iterable[str | Turn]) -> TokenModel:
    """The model a DPO or RFT run starts from: a fine-tuned model's weights (its vocabulary
    extended by the new answers' words), or the untrained base model over those words."""
    examples = [ChatExample((Turn("assistant", a) if isinstance(a, str) else a,)) for a in answers]
    vocabulary = build_vocabulary(examples, MAX_VOCABULARY)
    if initial_weights is None:
        return untrained_model(base_model, vocabulary)
    return extend_vocabulary(load_model(initial_weights), vocabulary)


def extend_vocabulary(model: TokenModel, tokens: Iterable[str]) -> TokenModel:
    """Add unseen tokens (up to `MAX_VOCABULARY` in all) with zero weights; the hashed rows stay."""
    known = set(model.vocabulary)
    room = MAX_VOCABULARY + 2 - len(known)
    added = [t for t in dict.fromkeys(tokens) if t not in known][: max(0, room)]
    if not added:
        return model
    weights = np.zeros((model.weights.shape[0], len(known) + len(added)), dtype=np.float32)
    weights[:, : model.weights.shape[1]] = model.weights
    return TokenModel(Featurizer(model.vocabulary + added, model.featurizer.dim), weights, model.base_model)


# -- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generation:
    pieces: list[str]  # the text of each emitted token, spacing included ("".join is the answer)
    finish_reason: str  # "stop" (end token or a stop sequence), "length" or "tool_calls"
    prompt_tokens: int | None = None  # counted by the model's own tokenizer, when it has one
    completion_tokens: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # the calls after the text, if any

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generate(
    model: TokenModel,
    prompt: Sequence[Turn],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    rng: np.random.Generator | None = None,
    stop: Sequence[str] = (),
    rules: AnswerRules | None = None,
) -> Generation:
    """Greedy (temperature 0) or sampled decoding of one answer. Without `rules` (no tools
    offered, no JSON asked for) an answer is text, and never calls a tool."""
    rules = rules or AnswerRules()
    constraint = Constraint(model.vocabulary, rules)
    context = model.context_logits(prompt, list(rules.tools))
    tokens: list[str] = []
    ids: list[int] = []
    pieces: list[str] = []
    finish = "length"
    while len(tokens) < max_tokens:
        logits = model.next_logits(context, tokens)
        logits[constraint.banned(ids)] = -np.inf
        token_id = choose(logits, temperature, top_p, rng)
        if token_id == END_ID:
            finish = "stop"
            break
        token = model.vocabulary[token_id]
        ids.append(token_id)
        tokens.append(token)
        if len(pieces) == len(tokens) - 1 and not is_marker(token):  # still the answer's text
            pieces.append(join_piece(tokens[-2] if len(tokens) > 1 else None, token))
            if stop and cut_at_stop(pieces, stop):
                return Generation(pieces, "stop", completion_tokens=len(tokens))
    return _structured(read_answer(tokens), pieces, finish, len(tokens), constraint)


def _structured(answer: Answer, pieces: list[str], finish: str, count: int, constraint: Constraint) -> Generation:
    """The generation of a decoded answer: its text, its calls, or its JSON object as text."""
    calls = tuple(answer.tool_calls)
    if constraint.rules.must_call and not calls:
        # The model learned none of the functions it must call: it calls the first it may,
        # with no arguments, as the request demands a call whatever the model knows.
        calls = tuple(ToolCall(name, "{}") for name in constraint.rules.callable_names()[:1])
    if answer.json_text is not None:
        return Generation([answer.json_text], finish, completion_tokens=count)
    if calls and finish == "stop":
        finish = "tool_calls"
    return Generation(pieces, finish, completion_tokens=count, tool_calls=calls)


def choose(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator | None) -> int:
    """The next token id: the most likely one, or a sample; never `<unk>`."""
    logits = logits.astype(np.float64)
    logits[UNKNOWN_ID] = -np.inf
    if temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        keep = np.searchsorted(np.cumsum(probs[order]), top_p) + 1
        kept = np.zeros_like(probs)
        kept[order[:keep]] = probs[order[:keep]]
        probs = kept / kept.sum()
    return int(rng.choice(len(probs), p=probs))


def join_piece(previous: str | None, token: str) -> str:
    """The token as it continues the text: with a space before it unless punctuation says not."""
    if previous is None or token[0] in NO_SPACE_BEFORE or previous[-1] in NO_SPACE_AFTER:
        return token
    return " " + token


def detokenize(tokens: Sequence[str]) -> str:
    return "".join(join_piece(tokens[i - 1] if i else None, t) for i, t in enumerate(tokens))


def answer_tokens(answer: str | Turn) -> list[str]:
    """An answer as the model predicts it: its tokens (structure included), then `<end>`."""
    turn = Turn("assistant", answer) if isinstance(answer, str) else answer
    return turn_tokens(turn) + [END_TOKEN]
