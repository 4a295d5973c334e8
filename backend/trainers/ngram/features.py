"""Tokens and hashed features for the built-in n-gram trainer.

Every assistant token is predicted from two kinds of features:
- *context* features, shared by all tokens of one assistant message: a bias, the words and
  word pairs of the latest non-assistant turn (`u:`) and of the earlier ones (`c:`), each
  scaled by 1/sqrt(count) so long prompts do not dominate (words generalise; pairs are
  rare enough to memorise examples, which is how a small noisy set overfits);
- *local* features of the token itself: the previous token, the previous two, the position.

Feature names are hashed (crc32, stable across processes, unlike `hash()`) into `dim`
rows of the weight matrix. Kept apart from the trainer so a later chat-completions
endpoint can featurise a prompt exactly as training did.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..base import ChatExample, Turn
from .structured import structure_tokens

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
UNKNOWN_TOKEN = "<unk>"
END_TOKEN = "<end>"  # predicted after an assistant message's last token, so a model knows when to stop
START_TOKEN = "<s>"
POSITION_CAP = 8
LOCAL_FEATURES = 3  # previous token, previous two tokens, position
FEATURE_VERSION = 1  # bump when feature names change: saved models record it


def tokenize(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text)


def turn_tokens(turn: Turn) -> list[str]:
    """What the model predicts for an assistant message: its words, with its tool calls or
    its JSON object as structure tokens (`structured.py`)."""
    structure = structure_tokens(turn)
    if structure is None:
        return tokenize(turn.text)
    return (tokenize(turn.text) if turn.tool_calls else []) + structure


def build_vocabulary(examples: Iterable[ChatExample], max_size: int) -> list[str]:
    """The `max_size` most frequent assistant tokens (ties by text), after the two specials."""
    counts: Counter[str] = Counter()
    for example in examples:
        for turn in example.turns:
            if turn.role == "assistant":
                counts.update(turn_tokens(turn))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_size]
    return [UNKNOWN_TOKEN, END_TOKEN] + [token for token, _ in ranked]


def context_feature_names(before: Sequence[Turn], tools: Sequence[str] = ()) -> tuple[list[str], list[float]]:
    """Names and values of the context features of an assistant message preceded by `before`,
    in a conversation that offers the functions named `tools` (one feature each: whether to
    call depends on what is offered)."""
    prompt_turns = [t for t in before if t.role != "assistant"]
    names, values = ["bias"], [1.0]
    names.extend(f"t:{name}" for name in tools)
    values.extend([1.0] * len(tools))
    if prompt_turns:
        _add_bag(names, values, "u:", prompt_turns[-1].text)
        for turn in prompt_turns[:-1]:
            _add_bag(names, values, "c:", turn.text)
    return names, values


def _add_bag(names: list[str], values: list[float], prefix: str, text: str) -> None:
    tokens = [w.lower() for w in tokenize(text)]
    words = sorted(set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:])})
    if not words:
        return
    value = 1.0 / np.sqrt(len(words))
    names.extend(prefix + w for w in words)
    values.extend([value] * len(words))


def local_feature_names(tokens: Sequence[str], position: int) -> list[str]:
    """Features of predicting `tokens[position]` from the tokens before it."""
    prev1 = tokens[position - 1] if position >= 1 else START_TOKEN
    prev2 = tokens[position - 2] if position >= 2 else START_TOKEN
    return [f"p1:{prev1}", f"p2:{prev2} {prev1}", f"pos:{min(position, POSITION_CAP)}"]


@dataclass(frozen=True, slots=True)
class Featurized:
    """The trainable tokens of one example (or of a batch of them), as flat arrays.

    Segments are assistant messages. `ctx_*` rows belong to segment `ctx_segment`;
    positions (one per predicted token) to `position_segment`. Both are sorted by segment
    and every segment has at least one of each, which lets `np.add.reduceat` sum them.
    """

    ctx_ids: np.ndarray  # (C,) int64 feature rows
    ctx_values: np.ndarray  # (C,) float32
    ctx_segment: np.ndarray  # (C,) int64
    local_ids: np.ndarray  # (P, LOCAL_FEATURES) int64
    targets: np.ndarray  # (P,) int64 vocabulary ids
    position_segment: np.ndarray  # (P,) int64
    n_segments: int

    @property
    def n_positions(self) -> int:
        return int(self.targets.shape[0])

    def ctx_starts(self) -> np.ndarray:
        return _starts(self.ctx_segment, self.n_segments)

    def position_starts(self) -> np.ndarray:
        return _starts(self.position_segment, self.n_segments)


def _starts(segment_of_row: np.ndarray, n_segments: int) -> np.ndarray:
    return np.searchsorted(segment_of_row, np.arange(n_segments))


def concatenate(parts: Sequence[Featurized]) -> Featurized:
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [p.n_segments for p in parts[:-1]])
    return Featurized(
        ctx_ids=np.concatenate([p.ctx_ids for p in parts]),
        ctx_values=np.concatenate([p.ctx_values for p in parts]),
        ctx_segment=np.concatenate([p.ctx_segment + o for p, o in zip(parts, offsets)]),
        local_ids=np.concatenate([p.local_ids for p in parts]),
        targets=np.concatenate([p.targets for p in parts]),
        position_segment=np.concatenate([p.position_segment + o for p, o in zip(parts, offsets)]),
        n_segments=int(sum(p.n_segments for p in parts)),
    )


class Featurizer:
    """Turns examples into `Featurized` arrays for a fixed vocabulary and hash size."""

    def __init__(self, vocabulary: Sequence[str], dim: int) -> None:
        self.vocabulary = list(vocabulary)
        self.dim = dim
        self._token_ids = {token: i for i, token in enumerate(self.vocabulary)}
        self._rows: dict[str, int] = {}

    def row(self, name: str) -> int:
        found = self._rows.get(name)
        if found is None:
            found = self._rows[name] = zlib.crc32(name.encode("utf-8")) % self.dim
        return found

    def token_id(self, token: str) -> int:
        return self._token_ids.get(token, 0)  # 0 is UNKNOWN_TOKEN

    def example(self, example: ChatExample) -> Featurized | None:
        """The example's trainable tokens, or None when no assistant message has weight 1."""
        ctx_ids: list[int] = []
        ctx_values: list[float] = []
        ctx_segment: list[int] = []
        local_ids: list[list[int]] = []
        targets: list[int] = []
        position_segment: list[int] = []
        segment = 0
        for index, turn in enumerate(example.turns):
            if turn.role != "assistant" or turn.weight == 0:
                continue
            names, values = context_feature_names(example.turns[:index], example.tools)
            ctx_ids.extend(self.row(n) for n in names)
            ctx_values.extend(values)
            ctx_segment.extend([segment] * len(names))
            tokens = turn_tokens(turn) + [END_TOKEN]
            for position, token in enumerate(tokens):
                local_ids.append([self.row(n) for n in local_feature_names(tokens, position)])
                targets.append(self.token_id(token))
                position_segment.append(segment)
            segment += 1
        if segment == 0:
            return None
        return Featurized(
            ctx_ids=np.asarray(ctx_ids, dtype=np.int64),
            ctx_values=np.asarray(ctx_values, dtype=np.float32),
            ctx_segment=np.asarray(ctx_segment, dtype=np.int64),
            local_ids=np.asarray(local_ids, dtype=np.int64).reshape(-1, LOCAL_FEATURES),
            targets=np.asarray(targets, dtype=np.int64),
            position_segment=np.asarray(position_segment, dtype=np.int64),
            n_segments=segment,
        )
