"""Results to conclusions: scores per model with intervals and cost, the paired comparison and
its sentence, the per-example filters, failure samples, the analysis question, the Markdown
report, inference prices and the models that can write notes."""

from __future__ import annotations

import re

import pytest

from tunedeck.core.datasets.synth import write_dataset
from tunedeck.core.evaluate.analysis import (
    MAX_PROMPT_CHARS,
    analysis_messages,
    failure_sample,
    fenced,
    markdown_report,
    suitable_analysis_models,
)
from tunedeck.core.evaluate.examples import read_examples
from tunedeck.core.evaluate.graders import grade, pass_threshold
from tunedeck.core.evaluate.prices import PRICES_DATE, cost_usd, inference_price
from tunedeck.core.evaluate.records import (
    EvalRunInfo,
    EvalSettings,
    ExampleProblem,
    ExampleResult,
    GraderChoice,
    ModelSpec,
)
from tunedeck.core.evaluate.results import FILTERS, example_rows, summarise
from tunedeck.core.evaluate.stats import mcnemar_p, wilson_interval

FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme:tickets:abc123"
MODELS = (
    ModelSpec("gpt-4o-mini-2024-07-18", "base", "base", "Answer with the category."),
    ModelSpec(FINE_TUNED, "fine-tuned", "fine_tuned"),
)


def settings_for(path, grader=None, models=MODELS):
    return EvalSettings(str(path), "0" * 64, models, grader or GraderChoice())


def answered(settings, example, key, answer, tokens=(100, 5)):
    """A result as the runner stores it: the answer graded by the real grader code."""
    got = grade(settings.grader, answer, example)
    return ExampleResult(
        key,
        example.index,
        answer,
        got.score,
        None if got.score is None else got.score >= pass_threshold(settings.grader),
        got.sub_scores,
        got.error,
        None if got.error is None else "grader",
        *tokens,
    )


def request_failed(key, index):
    return ExampleResult(key, index, None, None, None, error="rate limited", error_kind="request")


@pytest.fixture
def run(tmp_path):
    """60 RFT tickets: the fine-tuned model right on 50, the base on 21 (19 shared), one
    request error for the base, one example the fine-tuned model was not asked yet."""
    path = tmp_path / "tickets.jsonl"
    write_dataset("rft", 60, path, seed=5, learnable=True)
    examples = read_examples(path).examples
    settings = settings_for(path)
    results = []
    for ex in examples:
        right, wrong = ex.reference, "other" if ex.reference != "other" else "billing"
        if ex.index == 0:
            results.append(request_failed("base", 0))
        else:
            results.append(answered(settings, ex, "base", right if ex.index % 3 == 0 or ex.index in (1, 2) else wrong))
        if ex.index != 59:
            results.append(answered(settings, ex, "fine-tuned", right if ex.index % 6 != 1 else f" {wrong}\n"))
    return settings, examples, results


def outcome_table(examples, results, key):
    return {r.example_index: r.passed for r in results if r.model_key == key}


def test_scores_per_model(run):
    settings, examples, results = run
    summary = summarise(settings, results, len(examples), local=False)
    base, tuned = summary.scores
    base_passes = sum(1 for p in outcome_table(examples, results, "base").values() if p)
    tuned_passes = sum(1 for p in outcome_table(examples, results, "fine-tuned").values() if p)
    assert (base.key, base.model, base.kind) == ("base", "gpt-4o-mini-2024-07-18", "base")
    assert base.graded == 59 and base.passes == base_passes and base.errors == base.request_errors == 1
    assert base.missing == 0 and base.grader_errors == 0
    assert tuned.graded == 59 and tuned.passes == tuned_passes and tuned.errors == 0 and tuned.missing == 1
    assert tuned.mean == pytest.approx(tuned_passes / 59) and tuned.pass_rate == tuned.mean
    assert tuned.pass_interval == wilson_interval(tuned_passes, 59)
    assert tuned.interval.low < tuned.mean < tuned.interval.high
    assert tuned.prompt_tokens == 59 * 100 and tuned.completion_tokens == 59 * 5
    assert tuned.cost_usd == pytest.approx((5900 * 0.30 + 295 * 1.20) / 1e6)
    assert base.cost_usd == pytest.approx((5900 * 0.15 + 295 * 0.60) / 1e6)
    local = summarise(settings, results, len(examples), local=True)
    assert [s.cost_usd for s in local.scores] == [0.0, 0.0]


def test_a_judge_models_tokens_are_counted_in_the_cost(run):
    import dataclasses

    _, examples, results = run
    settings = settings_for(examples.path, GraderChoice(kind="model", judge_model="gpt-4.1-mini"))
    judged = [dataclasses.replace(r, judge_prompt_tokens=300, judge_completion_tokens=10) for r in results]
    base, tuned = summarise(settings, judged, len(examples), local=False).scores
    judge_cost = (59 * 300 * 0.40 + 59 * 10 * 1.60) / 1e6
    assert (tuned.judge_prompt_tokens, tuned.judge_completion_tokens) == (59 * 300, 59 * 10)
    assert tuned.judge_cost_usd == pytest.approx(judge_cost)
    assert tuned.cost_usd == pytest.approx((5900 * 0.30 + 295 * 1.20) / 1e6 + judge_cost)
    unpriced = settings_for(examples.path, GraderChoice(kind="model", judge_model="my-own-judge"))
    assert summarise(unpriced, judged, len(examples), local=False).scores[1].cost_usd is None  # not a partial sum


def test_paired_comparison_counts_examples_both_graded(run):
    settings, examples, results = run
    (pair,) = summarise(settings, results, len(examples), local=False).pairs
    base, tuned = outcome_table(examples, results, "base"), outcome_table(examples, results, "fine-tuned")
    shared = [i for i in base if i in tuned and base[i] is not None and tuned[i] is not None]
    a_only = sum(1 for i in shared if base[i] and not tuned[i])
    b_only = sum(1 for i in shared if tuned[i] and not base[i])
    assert (pair.a, pair.b, pair.n) == ("base", "fine-tuned", len(shared)) == ("base", "fine-tuned", 58)
    assert (pair.a_only, pair.b_only) == (a_only, b_only)
    assert pair.both + pair.a_only + pair.b_only + pair.neither == pair.n
    assert pair.p_value == mcnemar_p(a_only, b_only) and pair.p_value < 0.001
    assert pair.mean_diff == pytest.approx((b_only - a_only) / 58)
    assert pair.diff_interval.low < pair.mean_diff < pair.diff_interval.high
    assert pair.sentence() == (
        f"fine-tuned passes {b_only} examples base fails; base passes {a_only} fine-tuned fails "
        f"(McNemar exact p < 0.0001, n = 58)"
    )


def test_sentence_wording_and_three_models(tmp_path):
    path = tmp_path / "r.jsonl"
    write_dataset("rft", 10, path)
    examples = read_examples(path).examples
    models = (*MODELS, ModelSpec(FINE_TUNED + ":ckpt-step-10", "step 10", "checkpoint"))
    settings = settings_for(path, models=models)
    results = [answered(settings, ex, "base", "nope") for ex in examples]
    results += [answered(settings, ex, "fine-tuned", ex.reference if ex.index == 0 else "nope") for ex in examples]
    summary = summarise(settings, results, len(examples), local=True)
    first, second = summary.pairs
    assert (
        first.sentence()
        == "fine-tuned passes 1 example base fails; base passes 0 fine-tuned fails (McNemar exact p = 1, n = 10)"
    )
    assert (second.a, second.b, second.n, second.mean_diff, second.diff_interval) == ("base", "step 10", 0, None, None)
    assert second.sentence() == "base and step 10 have no example both were graded on"
    assert summary.scores[2].missing == 10 and summary.scores[2].mean is None and summary.scores[2].interval is None


def test_intervals_stay_within_the_score_range(tmp_path):
    path = tmp_path / "r.jsonl"
    write_dataset("rft", 3, path)
    examples = read_examples(path).examples
    settings = settings_for(path)
    results = [answered(settings, ex, "fine-tuned", ex.reference if ex.index else "no") for ex in examples]
    results += [answered(settings, ex, "base", "no") for ex in examples]
    base, tuned = summarise(settings, results, 3, local=True).scores
    # pass/fail scores are a proportion: Wilson intervals, never a point at 0% or 100%
    assert tuned.mean == pytest.approx(2 / 3) and tuned.interval == wilson_interval(2, 3)
    assert base.interval.low == 0.0 and 0.5 < base.interval.high < 0.6
    (pair,) = summarise(settings, results, 3, local=True).pairs
    assert pair.mean_diff == pytest.approx(2 / 3)
    assert pair.diff_interval.low < 2 / 3 < pair.diff_interval.high <= 1.0


def test_grader_errors_count_as_errors_not_failures(tmp_path):
    path = tmp_path / "r.jsonl"
    write_dataset("rft", 4, path)
    examples = read_examples(path).examples
    custom = {"type": "string_check", "name": "g", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "{{item.label}}"}  # fmt: skip
    settings = settings_for(path, GraderChoice("custom", grader=custom))
    results = [answered(settings, ex, "base", "x") for ex in examples]
    (base, tuned) = summarise(settings, results, len(examples), local=True).scores
    assert base.graded == 0 and base.errors == base.grader_errors == 4 and base.mean is None and base.passes == 0
    assert tuned.missing == 4
    assert [row.index for row in example_rows(settings, results, 4, "failures")] == [0, 1, 2, 3]


def test_filters(run):
    settings, examples, results = run
    base, tuned = outcome_table(examples, results, "base"), outcome_table(examples, results, "fine-tuned")
    n = len(examples)
    rows = example_rows(settings, results, n)
    assert [r.index for r in rows] == list(range(n))
    assert set(rows[0].results) == {"base", "fine-tuned"} and set(rows[59].results) == {"base"}
    assert [r.index for r in example_rows(settings, results, n, "failures")] == [
        i for i in range(n) if base.get(i) is False or tuned.get(i) is False or i == 0
    ]
    disagreements = [
        i for i in range(n) if base.get(i) is not None and tuned.get(i) is not None and base[i] != tuned[i]
    ]
    assert [r.index for r in example_rows(settings, results, n, "disagreements")] == disagreements
    assert [r.index for r in example_rows(settings, results, n, "flipped")] == disagreements
    assert FILTERS == ("all", "failures", "disagreements", "flipped")
    with pytest.raises(ValueError):
        example_rows(settings, results, n, "wrong")


def test_flipped_is_against_the_first_model_only(tmp_path):
    path = tmp_path / "r.jsonl"
    write_dataset("rft", 2, path)
    examples = read_examples(path).examples
    models = (*MODELS, ModelSpec("gpt-4.1", "big", "model"))
    settings = settings_for(path, models=models)
    ex = examples[0]
    results = [answered(settings, ex, "base", "no"), answered(settings, ex, "fine-tuned", "no"),
               answered(settings, ex, "big", ex.reference)]  # fmt: skip
    assert [r.index for r in example_rows(settings, results, 2, "flipped")] == [0]
    results[0] = answered(settings, ex, "base", ex.reference)
    assert [r.index for r in example_rows(settings, results, 2, "disagreements")] == [0]
    results[1] = answered(settings, ex, "fine-tuned", ex.reference)
    assert example_rows(settings, results, 2, "flipped") == []


# -- analysis ---------------------------------------------------------------------------------


def test_failure_sample_is_seeded_and_prefers_what_others_got_right(run):
    settings, examples, results = run
    tuned = outcome_table(examples, results, "fine-tuned")
    base = outcome_table(examples, results, "base")
    failures = sorted(i for i, p in tuned.items() if p is False)
    beaten = [i for i in failures if base.get(i)]
    assert beaten and len(beaten) < len(failures)
    sample = failure_sample(examples, results, "fine-tuned", size=len(beaten) + 1, seed=3)
    indices = [ex.index for ex, _ in sample]
    assert indices[: len(beaten)] == beaten and indices[-1] in failures
    assert all(ex.index == r.example_index and r.model_key == "fine-tuned" for ex, r in sample)
    assert failure_sample(examples, results, "fine-tuned", size=3, seed=3) == failure_sample(
        examples, results, "fine-tuned", size=3, seed=3
    )
    every = failure_sample(examples, results, "base", size=100)
    assert sorted(ex.index for ex, _ in every) == sorted(
        i for i, p in base.items() if p is False
    )  # request errors left out
    seeds = {tuple(ex.index for ex, _ in failure_sample(examples, results, "base", size=4, seed=s)) for s in range(6)}
    assert len(seeds) > 1


def test_analysis_messages_hold_each_failure_and_stay_bounded(run):
    settings, examples, results = run
    sample = failure_sample(examples, results, "base", size=5)
    system, user = analysis_messages(settings, sample, "base")
    assert system["role"] == "system" and "prompt" in system["content"] and "training" in system["content"]
    text = user["content"]
    assert "gpt-4o-mini-2024-07-18" in text and "exact match" in text and "Answer with the category." in text
    for example, result in sample:
        assert f"line {example.line}" in text and example.prompt[-1]["content"][:200] in text
        assert f"Reference: {example.reference}" in text and f"Answer: {result.answer}" in text
    huge = [(ex.__class__(ex.index, ex.line, [{"role": "user", "content": "w " * 50_000}], "r" * 50_000, ex.item), r)
            for ex, r in failure_sample(examples, results, "base", size=40)]  # fmt: skip
    bounded = analysis_messages(settings, huge, "base")
    assert sum(len(m["content"]) for m in bounded) <= MAX_PROMPT_CHARS
    assert re.search(r"\d+ more failures left out", bounded[1]["content"])


def test_markdown_report(run):
    settings, examples, results = run
    hostile = ExampleResult("fine-tuned", 1, "a | b ```` c", 0.0, False)
    results = [r for r in results if not (r.model_key == "fine-tuned" and r.example_index == 1)] + [hostile]
    summary = summarise(settings, results, len(examples), local=False)
    info = EvalRunInfo("ev_123", 1_764_000_000.0, settings, "finished", len(examples), len(results), 1,
                       (ExampleProblem(7, "messages", "bad | row"),), "- add more billing rows", "o4-mini")  # fmt: skip
    report = markdown_report(info, summary, examples, results)
    assert report.startswith("# Evaluation ev_123\n")
    assert "exact match" in report and "## Scores" in report and "| base | 59 |" in report
    assert "95% CI" in report and "$0.00" in report
    assert summary.pairs[0].sentence() in report
    assert "## Notes (by o4-mini)\n\n- add more billing rows" in report
    assert "bad \\| row" in report
    assert "### Line 2" in report and "`````\na | b ```` c\n`````" in report
    failures = len(example_rows(settings, results, len(examples), "failures"))
    assert report.count("### Line ") == failures
    assert markdown_report(EvalRunInfo("x", 0.0, settings), summary, examples, results).count("## Notes") == 0


def test_fenced_outlasts_any_backtick_run():
    assert fenced("plain") == "```\nplain\n```"
    assert fenced("has ``` and `````` inside").startswith("```````\n")


def test_suitable_analysis_models():
    ids = ["text-embedding-3-small", "gpt-4o-mini", "whisper-1", "tts-1", "dall-e-3", "omni-moderation-latest",
           "gpt-4.1", "o4-mini", "gpt-5", "davinci-002", "babbage-002", "gpt-4o-mini-transcribe", "gpt-image-1",
           "tunedeck-ngram", "ft:tunedeck-ngram:local::abc", "gpt-3.5-turbo", "o3"]  # fmt: skip
    kept = suitable_analysis_models(ids)
    assert kept[:3] == ["gpt-5", "o3", "o4-mini"]
    assert kept[3:5] == ["gpt-4.1", "gpt-4o-mini"]
    assert set(kept[5:]) == {"gpt-3.5-turbo", "tunedeck-ngram", "ft:tunedeck-ngram:local::abc"}
    assert suitable_analysis_models(["text-embedding-3-large"]) == []


# -- prices -------------------------------------------------------------------------------------


def test_prices():
    assert PRICES_DATE == "2026-11-26"
    assert inference_price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert inference_price("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert inference_price("gpt-4.1-nano") == (0.10, 0.40)
    assert inference_price("ft:gpt-4.1-2025-04-14:acme::xyz") == (3.00, 12.00)
    assert inference_price("ft:gpt-4o-mini-2024-07-18:acme:tickets:abc:ckpt-step-40") == (0.30, 1.20)
    assert inference_price("ft:o4-mini-2025-04-16:acme::r1") == (4.00, 16.00)
    assert inference_price("ft:davinci-002:acme::d") == (12.00, 12.00)
    assert inference_price("ft:gpt-3.5-turbo-0125:acme::x") == (3.00, 6.00)
    assert inference_price("tunedeck-ngram") is None and inference_price("ft:tunedeck-ngram:local::a") is None
    assert cost_usd("gpt-4.1-mini", 2_000_000, 1_000_000, local=False) == pytest.approx(0.40 * 2 + 1.60)
    assert cost_usd("tunedeck-ngram", 10, 10, local=False) is None
    assert cost_usd("gpt-4.1", 10, 10, local=True) == 0.0
