"""Grading answers: the local backend's grader code is what scores, per-example grader errors
are kept with their example, JSON fields score one by one, and judge replies are read."""

from __future__ import annotations

import json

import pytest

from tunedeck.backend import check_grader, run_grader
from tunedeck.core.datasets.synth import write_dataset
from tunedeck.core.evaluate.examples import read_examples
from tunedeck.core.evaluate.graders import (
    DEFAULT_PASS,
    SIMILARITY_METRICS,
    Grade,
    default_grader_for_job,
    describe_grader,
    grade,
    grader_problem,
    judge_messages,
    parse_judge,
    pass_threshold,
)
from tunedeck.core.evaluate.records import EvalExample, GraderChoice


def example(reference, item=None, prompt=None):
    prompt = prompt or [{"role": "system", "content": "s"}, {"role": "user", "content": "What is it?"}]
    return EvalExample(0, 1, prompt, reference, item if item is not None else {"reference_answer": reference})


@pytest.fixture
def rft_examples(tmp_path):
    path = tmp_path / "rft.jsonl"
    write_dataset("rft", 8, path, seed=11)
    return read_examples(path).examples


def test_exact_ignores_surrounding_whitespace_only():
    ex = example("billing\n")
    assert grade(GraderChoice("exact"), "  billing ", ex) == Grade(1.0, {}, None)
    assert grade(GraderChoice("exact"), "Billing", ex).score == 0.0
    assert grade(GraderChoice("exact"), "billing issue", ex).score == 0.0


def test_string_check_operations():
    ex = example("Refund")
    contains = GraderChoice("string_check", operation="like")
    assert grade(contains, "We will Refund you", ex).score == 1.0
    assert grade(contains, "we will refund you", ex).score == 0.0
    assert grade(GraderChoice("string_check", operation="ilike"), "we will refund you", ex).score == 1.0
    assert grade(GraderChoice("string_check", operation="ne"), "no", ex).score == 1.0


def test_a_custom_grader_scores_exactly_as_the_backend_does(rft_examples):
    grader = {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference_answer}}",
        "evaluation_metric": "fuzzy_match",
    }
    choice = GraderChoice("custom", grader=grader)
    for ex, answer in zip(
        rft_examples, ["billing", "shiping", "account stuff", "", "other", "technical", "x", "returns"]
    ):
        expected = run_grader(grader, answer, ex.item)["reward"]
        assert grade(choice, answer, ex) == Grade(expected, {}, None)
    assert len({grade(choice, "billing", ex).score for ex in rft_examples}) > 1


def test_built_in_similarity_is_the_backend_metric():
    ex = example("the parcel arrived late and damaged")
    for metric in ("bleu", "rouge_l", "fuzzy_match"):
        grader = {"type": "text_similarity", "name": "s", "input": "{{sample.output_text}}",
                  "reference": "{{item.r}}", "evaluation_metric": metric}  # fmt: skip
        expected = run_grader(grader, "the parcel came late", {"r": ex.reference})["reward"]
        assert 0 < expected < 1
        assert grade(GraderChoice("text_similarity", metric=metric), "the parcel came late", ex).score == expected


def test_a_missing_item_field_is_a_grader_error_on_that_example_only(rft_examples):
    grader = {"type": "string_check", "name": "label", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "{{item.label}}"}  # fmt: skip
    choice = GraderChoice("custom", grader=grader)
    ex = rft_examples[0]
    missing = grade(choice, ex.reference, ex)
    assert missing.score is None
    assert missing.error == "item.label missing from this example (invalid_variable_error)"
    with_label = EvalExample(1, 2, ex.prompt, ex.reference, {**ex.item, "label": ex.reference})
    assert grade(choice, ex.reference, with_label) == Grade(1.0, {}, None)


def test_a_grader_the_backend_refuses_is_a_grade_error_and_a_problem():
    bad = {"type": "string_check", "name": "p", "input": "{{sample.output_text}}", "reference": "x", "operation": "is"}
    choice = GraderChoice("custom", grader=bad)
    refused = grade(choice, "x", example("x"))
    assert refused.score is None and refused.error.startswith("the grader was refused: Invalid 'grader.operation'")
    assert "Invalid 'grader.operation'" in grader_problem(choice)
    # A model grader asks a model, which the evaluation's own judge grader does (its tokens counted).
    scorer = {"type": "score_model", "name": "p", "model": "gpt-4o", "input": [{"role": "user", "content": "x"}]}
    assert "use the judge grader" in grader_problem(GraderChoice("custom", grader=scorer))
    nested = {"type": "multi", "name": "m", "calculate_output": "p", "graders": {"p": scorer}}
    assert "use the judge grader" in grader_problem(GraderChoice("custom", grader=nested))
    assert grader_problem(GraderChoice("custom")) == "a custom grader needs a grader object"


def test_json_scores_each_field_through_a_multi_grader():
    ex = example(json.dumps({"category": "billing", "urgent": True, "count": 2}))
    choice = GraderChoice("json")
    right = grade(choice, '{"count": 2, "urgent": true, "category": "billing"}', ex)
    assert right == Grade(1.0, {"category": 1.0, "urgent": 1.0, "count": 1.0}, None)
    half = grade(GraderChoice("json", fields=("category", "urgent")), '{"category": "billing", "urgent": false}', ex)
    assert half == Grade(0.5, {"category": 1.0, "urgent": 0.0}, None)
    fenced = grade(choice, '```json\n{"category": "billing", "urgent": true, "count": 3}\n```', ex)
    assert fenced.score == pytest.approx(2 / 3) and fenced.sub_scores["count"] == 0.0


def test_json_answers_that_miss_fields_or_are_not_json_score_zero_there():
    ex = example(json.dumps({"a": "x", "b": "y"}))
    assert grade(GraderChoice("json"), '{"a": "x"}', ex) == Grade(0.5, {"a": 1.0, "b": 0.0}, None)
    assert grade(GraderChoice("json"), "I think a is x", ex) == Grade(0.0, {"a": 0.0, "b": 0.0}, None)
    assert grade(GraderChoice("json"), "[1, 2]", ex).score == 0.0


def test_json_compares_values_as_json_not_as_their_text():
    ex = example(json.dumps({"n": 1, "where": {"city": "Oslo", "zip": 150}, "tags": [1.0, "a"]}))
    same = '{"tags": [1, "a"], "where": {"zip": 150.0, "city": "Oslo"}, "n": 1.0}'
    assert grade(GraderChoice("json"), same, ex) == Grade(1.0, {"n": 1.0, "where": 1.0, "tags": 1.0}, None)
    text = grade(GraderChoice("json"), '{"n": "1", "where": {"city": "Oslo", "zip": "150"}, "tags": [1, "a"]}', ex)
    assert text == Grade(1 / 3, {"n": 0.0, "where": 0.0, "tags": 1.0}, None)


def test_json_needs_a_json_object_reference():
    assert "reference answer is not JSON" in grade(GraderChoice("json"), "{}", example("billing")).error
    assert "not an object" in grade(GraderChoice("json"), "{}", example("[1]")).error
    lacking = grade(GraderChoice("json", fields=("z",)), '{"z": 1}', example('{"a": 1}'))
    assert lacking.score is None and "no field z" in lacking.error


def test_no_reference_is_a_grade_error_for_built_in_kinds():
    ex = EvalExample(0, 1, [{"role": "user", "content": "q"}], None, {"messages": []})
    for kind in ("exact", "string_check", "text_similarity", "json"):
        got = grade(GraderChoice(kind), "a", ex)
        assert got.score is None and "no reference answer" in got.error


def test_model_kind_is_not_graded_here():
    with pytest.raises(ValueError):
        grade(GraderChoice("model", judge_model="gpt-4.1"), "a", example("a"))


def test_grader_problems():
    assert grader_problem(GraderChoice()) is None
    assert "operation 'contains'" in grader_problem(GraderChoice("string_check", operation="contains"))
    assert "metric 'wer'" in grader_problem(GraderChoice("text_similarity", metric="wer"))
    assert grader_problem(GraderChoice("model")) == "a model grader needs a judge model"
    assert grader_problem(GraderChoice("model", judge_model="gpt-4.1")) is None
    assert "unknown grader kind" in grader_problem(GraderChoice("regex"))
    assert "cannot be compared" in grader_problem(GraderChoice("json", fields=("a b",)))
    assert "pass threshold" in grader_problem(GraderChoice(pass_threshold="high"))


def test_every_similarity_metric_named_is_one_the_backend_takes():
    for metric in SIMILARITY_METRICS:
        assert grader_problem(GraderChoice("text_similarity", metric=metric)) is None
        grader = {"type": "text_similarity", "name": "s", "input": "a", "reference": "b", "evaluation_metric": metric}
        assert check_grader(grader) is None


def test_pass_thresholds():
    assert pass_threshold(GraderChoice("exact")) == 1.0
    assert pass_threshold(GraderChoice("text_similarity")) == DEFAULT_PASS["text_similarity"] == 0.5
    assert pass_threshold(GraderChoice("custom", pass_threshold=0.8)) == 0.8


def test_descriptions():
    assert describe_grader(GraderChoice()) == "exact match"
    assert describe_grader(GraderChoice("text_similarity", metric="bleu")) == "text similarity (bleu)"
    assert describe_grader(GraderChoice("string_check", operation="ilike")) == "string check (contains, ignoring case)"
    assert describe_grader(GraderChoice("json", fields=("a", "b"))) == "JSON fields (a, b)"
    assert describe_grader(GraderChoice("model", judge_model="o4-mini")) == "model judge (o4-mini)"
    custom = GraderChoice("custom", grader={"type": "multi", "name": "\x1b[2Jmine"})
    assert describe_grader(custom) == "custom multi '␛[2Jmine'"


def test_default_grader_for_a_job():
    grader = {"type": "string_check", "name": "g", "operation": "eq",
              "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}"}  # fmt: skip
    rft = {"id": "ftjob-1", "method": {"type": "reinforcement", "reinforcement": {"grader": grader}}}
    assert default_grader_for_job(rft) == GraderChoice("custom", grader=grader)
    assert default_grader_for_job({"method": {"type": "supervised", "supervised": {}}}) == GraderChoice()
    assert default_grader_for_job({"method": {"type": "reinforcement"}}) == GraderChoice()
    assert default_grader_for_job({}) == GraderChoice()


def test_judge_messages_carry_the_question_reference_and_answer():
    ex = example(
        "billing", prompt=[{"role": "system", "content": "Classify."}, {"role": "user", "content": "I was overcharged"}]
    )
    messages = judge_messages(ex, "shipping")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "I was overcharged" in user and "billing" in user and "shipping" in user
    assert "Classify." not in user
    long = judge_messages(example("r" * 50_000), "a" * 50_000)[1]["content"]
    assert len(long) < 20_000


@pytest.mark.parametrize(
    ("reply", "score"),
    [("score: 0.8", 0.8), ("Score = 1", 1.0), ("0", 0.0), (" 0.75\n", 0.75), ("1.", 1.0),
     ("The answer names 1 city but the reference names 3. Score 0.2", 0.2), ("Score: 0,5", 0.5),
     ("score: 1 at first sight; on reflection, score: 0.4", 0.4), ("0,5", 0.5)],
)  # fmt: skip
def test_parse_judge_reads_scores(reply, score):
    assert parse_judge(reply) == Grade(score, {}, None)


def test_parse_judge_names_what_came_back():
    bad = parse_judge("Excellent!\x1b]52;c;aGk=\x07 " + "x" * 500)
    assert bad.score is None
    assert bad.error.startswith("the judge gave no score from 0 to 1: 'Excellent!␛]52;c;aGk=␇")
    assert "\x1b" not in bad.error and len(bad.error) < 200
    assert parse_judge("").error == "the judge gave no score from 0 to 1: an empty reply"
    assert parse_judge("7 out of 10").score is None
    assert parse_judge("1/2").score is None  # a fraction is not read as its numerator
    # a number in prose is no score: only a labelled one, or a reply that is just a number
    assert parse_judge("The answer names 1 city but the reference names 3.").score is None
    assert parse_judge("The answer is right. .75").score is None
    assert parse_judge("I rate it 8/10 overall, 0.8").score is None
    assert parse_judge("score: 7 (out of 10)").score is None
