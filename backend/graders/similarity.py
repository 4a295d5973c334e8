"""The `text_similarity` grader's metrics, in pure Python: each maps two texts to [0, 1].

How close each is to what OpenAI runs (its exact implementations are not published):
- `fuzzy_match`: rapidfuzz's `fuzz.ratio` / 100, the normalised InDel similarity
  2 * LCS(characters) / (total characters), computed exactly (bit-parallel LCS).
- `bleu`: sentence BLEU-4 (uniform weights, brevity penalty) with add-one smoothing of
  the 2..4-gram precisions (Lin & Och 2004), so a short answer without a 4-gram match
  does not score exactly 0. Case-sensitive, on word and punctuation tokens.
- `gleu`: Google-BLEU (Wu et al. 2016): min(precision, recall) over all 1..4-grams.
- `meteor`: an approximation: exact unigram matches only (no stemming, synonyms or
  paraphrases), F-mean weighted 9:1 towards recall, times the usual fragmentation penalty
  1 - 0.5 * (chunks / matches) ** 3.
- `rouge_1` .. `rouge_5`, `rouge_l`: F1 of n-gram overlap / of the longest common
  subsequence, on lower-cased alphanumeric tokens (rouge-score's default tokenizer).
- `cosine`: cosine of bag-of-words count vectors. OpenAI compares text *embeddings*
  here, so paraphrases score lower locally than on the real API.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, Sequence

WORD_PATTERN = re.compile(r"[a-z0-9]+")
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")  # words and punctuation, as the trainer tokenises
BLEU_ORDER = 4
METEOR_ALPHA, METEOR_GAMMA, METEOR_BETA = 0.9, 0.5, 3.0


def tokenize(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text)


def _rouge_tokens(text: str) -> list[str]:
    return WORD_PATTERN.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: float, candidate_total: int, reference_total: int) -> float:
    if overlap <= 0 or candidate_total == 0 or reference_total == 0:
        return 0.0
    precision, recall = overlap / candidate_total, overlap / reference_total
    return 2 * precision * recall / (precision + recall)


def fuzzy_match(candidate: str, reference: str) -> float:
    if not candidate and not reference:
        return 1.0
    return 2 * _lcs_length(candidate, reference) / (len(candidate) + len(reference))


def bleu(candidate: str, reference: str) -> float:
    hypothesis, truth = tokenize(candidate), tokenize(reference)
    if not hypothesis or not truth:
        return 0.0
    log_precision = 0.0
    for n in range(1, BLEU_ORDER + 1):
        counts, truth_counts = _ngrams(hypothesis, n), _ngrams(truth, n)
        matches = sum(min(count, truth_counts[gram]) for gram, count in counts.items())
        total = max(0, len(hypothesis) - n + 1)
        if n == 1:
            if matches == 0:
                return 0.0
            log_precision += math.log(matches / total)
        else:
            log_precision += math.log((matches + 1) / (total + 1))
    brevity = 1.0 if len(hypothesis) > len(truth) else math.exp(1 - len(truth) / len(hypothesis))
    return brevity * math.exp(log_precision / BLEU_ORDER)


def gleu(candidate: str, reference: str) -> float:
    hypothesis, truth = tokenize(candidate), tokenize(reference)
    matches = hypothesis_total = truth_total = 0
    for n in range(1, BLEU_ORDER + 1):
        counts, truth_counts = _ngrams(hypothesis, n), _ngrams(truth, n)
        matches += sum(min(count, truth_counts[gram]) for gram, count in counts.items())
        hypothesis_total += sum(counts.values())
        truth_total += sum(truth_counts.values())
    if hypothesis_total == 0 or truth_total == 0:
        return 0.0
    return min(matches / hypothesis_total, matches / truth_total)


def meteor(candidate: str, reference: str) -> float:
    hypothesis, truth = _rouge_tokens(candidate), _rouge_tokens(reference)
    alignment = _align_unigrams(hypothesis, truth)
    matches = len(alignment)
    if matches == 0:
        return 0.0
    precision, recall = matches / len(hypothesis), matches / len(truth)
    f_mean = precision * recall / (METEOR_ALPHA * precision + (1 - METEOR_ALPHA) * recall)
    chunks = 1 + sum(
        1 for (h1, t1), (h2, t2) in zip(alignment, alignment[1:]) if h2 != h1 + 1 or t2 != t1 + 1
    )
    return f_mean * (1 - METEOR_GAMMA * (chunks / matches) ** METEOR_BETA)


def _align_unigrams(hypothesis: list[str], truth: list[str]) -> list[tuple[int, int]]:
    """Pair each hypothesis word with the first unused equal reference word, in order."""
    free: dict[str, list[int]] = {}
    for index, word in enumerate(truth):
        free.setdefault(word, []).append(index)
    pairs = []
    for index, word in enumerate(hypothesis):
        spots = free.get(word)
        if spots:
            pairs.append((index, spots.pop(0)))
    return pairs


def rouge_n(n: int) -> Callable[[str, str], float]:
    def score(candidate: str, reference: str) -> float:
        counts, truth_counts = _ngrams(_rouge_tokens(candidate), n), _ngrams(_rouge_tokens(reference), n)
        overlap = sum(min(count, truth_counts[gram]) for gram, count in counts.items())
        return _f1(overlap, sum(counts.values()), sum(truth_counts.values()))

    return score


def rouge_l(candidate: str, reference: str) -> float:
    hypothesis, truth = _rouge_tokens(candidate), _rouge_tokens(reference)
    return _f1(_lcs_length(hypothesis, truth), len(hypothesis), len(truth))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, one bit per element of `a` in a Python int
    (Allison-Dix / Hyyro): O(len(a) * len(b) / word size), fast enough for long texts."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for index, element in enumerate(a):
        masks[element] = masks.get(element, 0) | (1 << index)
    full = (1 << len(a)) - 1
    row = full
    for element in b:
        matches = row & masks.get(element, 0)
        row = ((row + matches) | (row - matches)) & full
    return len(a) - row.bit_count()


def cosine(candidate: str, reference: str) -> float:
    a, b = Counter(_rouge_tokens(candidate)), Counter(_rouge_tokens(reference))
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


METRICS: dict[str, Callable[[str, str], float]] = {
    "cosine": cosine,
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": rouge_n(n) for n in range(1, 6)},
    "rouge_l": rouge_l,
}
