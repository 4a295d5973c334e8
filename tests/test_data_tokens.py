"""Token counts: tiktoken's ids for known strings, the cookbook's per-example formula, and
the same billed tokens as the cookbook's data-check procedure on a generated file."""

from __future__ import annotations

import json

import bpe_openai
import pytest
from conftest import generate_dataset

from tunedeck.core.datasets import tokens, validate_file
from tunedeck.core.datasets.models import auto_epochs, model_info


def test_known_token_ids():
    assert tokens.encode("hello world", "o200k_base") == [24912, 2375]
    assert tokens.encode("hello world", "cl100k_base") == [15339, 1917]
    assert tokens.counter("o200k_base")("hello world") == 2
    assert tokens.counter("cl100k_base")("hello world") == 2


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_counter_equals_encode_ordinary(encoding):
    count = tokens.counter(encoding)
    samples = [
        "", " ", "\n\n\n", "   leading", "Ünïcödé — “quotes” and emoji 🧪🚀", "日本語のテキスト", "<|endoftext|> is text here",
        "def f(x):\n    return x ** 2\n", "a" * 5000, "word " * 3000, "\t mixed \r\n whitespace  ",
    ]
    for text in samples:
        assert count(text) == len(tokens.encode(text, encoding)), text[:30]
        assert count(text) == len(tokens.encode(text, encoding))  # the cached answer is the same


def test_lone_surrogates_count_like_tiktoken():
    count = tokens.counter("o200k_base")
    assert count("a\ud800b") == len(tokens.encode("a\ufffdb", "o200k_base"))


def cookbook(messages: list[dict], encoding: str) -> int:
    """The cookbook's count written out: 3 per message + encoded string values (+1 per name) + 3."""
    n = 3
    for m in messages:
        n += 3
        for key, value in m.items():
            if isinstance(value, str):
                n += len(tokens.encode(value, encoding))
            if key == "name":
                n += 1
    return n


def test_per_example_formula():
    count = tokens.counter("o200k_base")
    examples = [
        [{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?", "name": "bob"}, {"role": "assistant", "content": "4", "weight": 1}],
        [{"role": "user", "content": "Ünïcödé 🧪"}, {"role": "assistant", "content": "<|endoftext|>"}],
    ]
    for messages in examples:
        by_role: dict[str, int] = {}
        n = tokens.messages_tokens(messages, count, by_role)
        assert n == cookbook(messages, "o200k_base")
        assert sum(by_role.values()) + 3 == n
    # "hello world" -> 2 tokens, "user" -> 1, "hi" -> 1, "assistant" -> 1
    assert tokens.messages_tokens(examples[0], count) == 3 + (3 + 1 + 2) + (3 + 1 + 1)


def test_validator_totals_follow_the_formula(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"question {i} " * (i + 1)}, {"role": "assistant", "content": f"answer {i}", "name": "a"}]} for i in range(12)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = validate_file(path, model="gpt-4o-mini")
    expected = [cookbook(r["messages"], "o200k_base") for r in rows]
    assert report.tokens["total"] == report.tokens["billed"] == sum(expected)
    assert report.tokens["max_example"] == max(expected)
    ordered = sorted(expected)
    assert report.tokens["p50"] == ordered[len(ordered) // 2]
    assert report.tokens["p95"] == ordered[len(ordered) * 19 // 20]
    cl = validate_file(path, model="gpt-3.5-turbo")
    assert cl.encoding == "cl100k_base"
    assert cl.tokens["total"] == sum(cookbook(r["messages"], "cl100k_base") for r in rows)


def test_billing_caps_at_the_context_and_estimates_cost(tmp_path):
    long = {"messages": [{"role": "user", "content": "hello " * 5000}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [long] + [short] * 9), encoding="utf-8")
    report = validate_file(path, model="gpt-3.5-turbo-0613")
    n_long = tokens.messages_tokens(long["messages"], tokens.counter("cl100k_base"))
    n_short = tokens.messages_tokens(short["messages"], tokens.counter("cl100k_base"))
    assert n_long > 4096
    assert report.tokens["billed"] == 4096 + 9 * n_short
    assert report.tokens["too_long"] == 1
    e = report.estimate
    assert e["epochs"] == auto_epochs(10) == 10
    assert e["trained_tokens"] == 10 * report.tokens["billed"]
    assert e["cost_usd"] == pytest.approx(e["trained_tokens"] / 1e6 * 8.00)
    assert e["price"]["usd_per_1m_training_tokens"] == 8.00 and e["price"]["table_date"]


def test_models_and_epochs():
    assert model_info("ft:gpt-4o-mini-2024-07-18:acme::abc123").name == "gpt-4o-mini-2024-07-18"
    assert model_info("gpt-4.1-nano").encoding == "o200k_base"
    assert model_info("davinci-002").encoding == "cl100k_base"
    assert not model_info("something-else").known
    assert [auto_epochs(n) for n in (1, 10, 40, 1000, 9000, 100_000)] == [25, 10, 3, 3, 2, 1]


def cookbook_tokens(messages: list[dict]) -> int:
    """The cookbook's count for one example: 3 per message, every string value's tokens,
    1 per `name`, and 3 to prime the reply."""
    enc = bpe_openai.get_encoding("o200k_base")
    n = 3
    for m in messages:
        n += 3 + sum(len(enc.encode(v)) for v in m.values() if isinstance(v, str)) + ("name" in m)
    return n


def test_same_counts_as_the_cookbook_procedure(tmp_path):
    path = generate_dataset("sft", 300, tmp_path / "train.jsonl")
    counts = [cookbook_tokens(json.loads(line)["messages"]) for line in path.open(encoding="utf-8")]
    report = validate_file(path, model="gpt-4o-mini")
    t = report.tokens
    assert t["billed"] == sum(counts)
    assert (t["min"], t["max_example"]) == (min(counts), max(counts))
    # The cookbook's own script printed these for this file (seed 7, 300 examples):
    # "tokens per example: min 42 max 288 ... median 101 p5 48 p95 217",
    # "billing tokens 33617 epochs 3", "messages per example: ... median 3".
    assert t["billed"] == 33617
    assert (t["min"], t["max_example"], t["p50"], t["p5"], t["p95"]) == (42, 288, 101, 48, 217)
    assert report.estimate["epochs"] == 3
    assert report.messages_per_example["p50"] == 3
