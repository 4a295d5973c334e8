"""Graders: `/v1/fine_tuning/alpha/graders/run|validate` through the real SDK, the text
metrics and the formula evaluator on their own, and the RFT job's grader check."""

from __future__ import annotations

import json

import openai
import pytest

from tunedeck.backend import BUILTIN_BASE_MODEL
from tunedeck.backend.graders.formula import FormulaError, parse_formula
from tunedeck.backend.graders.grader import ERROR_FLAGS
from tunedeck.backend.graders.similarity import METRICS


def check(operation: str, input: str = "{{sample.output_text}}", reference: str = "{{item.answer}}") -> dict:
    return {"type": "string_check", "name": "check", "input": input, "reference": reference, "operation": operation}


def similar(metric: str) -> dict:
    return {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "evaluation_metric": metric}  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "sample", "reward"),
    [("eq", "Lima", 1.0), ("eq", "lima", 0.0), ("ne", "Quito", 1.0), ("ne", "Lima", 0.0),
     ("like", "It is Lima.", 1.0), ("like", "It is lima.", 0.0), ("ilike", "IT IS LIMA", 1.0), ("ilike", "Quito", 0.0)],
)  # fmt: skip
async def test_string_check_operations(client, operation, sample, reward):
    result = await client.fine_tuning.alpha.graders.run(
        grader=check(operation), model_sample=sample, item={"answer": "Lima"}
    )
    assert result.reward == reward
    assert result.metadata.type == "string_check" and result.metadata.name == "check"
    assert result.metadata.execution_time >= 0 and result.sub_rewards == {}
    errors = result.metadata.errors.model_dump(by_alias=True)
    assert all(errors[flag] is False for flag in ERROR_FLAGS)  # every flag present, all false


async def test_the_response_has_every_field_of_the_api(client):
    raw = await client.fine_tuning.alpha.graders.with_raw_response.run(
        grader=check("eq"), model_sample="Lima", item={"answer": "Lima"}
    )
    body = json.loads(raw.text)
    assert set(body) == {"reward", "metadata", "sub_rewards", "model_grader_token_usage_per_model"}
    assert set(body["metadata"]) >= {"name", "type", "errors", "execution_time", "scores", "token_usage"}
    assert set(body["metadata"]["errors"]) >= set(ERROR_FLAGS) | {"python_grader_runtime_error_details"}


async def test_multi_combines_sub_graders_with_its_formula(client):
    grader = {"type": "multi", "name": "city", "calculate_output": "0.7 * exact + 0.3 * close",
              "graders": {"exact": check("eq", "{{sample.output_json.city}}"),
                          "close": {**similar("fuzzy_match"), "input": "{{sample.output_json.city}}"}}}  # fmt: skip
    result = await client.fine_tuning.alpha.graders.run(
        grader=grader, model_sample='{"city": "Lima"}', item={"answer": "Lima"}
    )
    assert result.reward == pytest.approx(1.0) and result.sub_rewards == {"exact": 1.0, "close": 1.0}
    near = await client.fine_tuning.alpha.graders.run(grader=grader, model_sample='{"city": "Limo"}', item={"answer": "Lima"})
    assert near.sub_rewards["exact"] == 0.0 and near.reward == pytest.approx(0.3 * 0.75)
    assert near.metadata.type == "multi" and near.metadata.scores == near.sub_rewards


async def test_templates_reach_nested_fields_lists_and_json_samples(client):
    item = {"meta": {"level": 2}, "tags": ["alpha", "beta"]}
    for reference, sample in (("{{item.meta.level}}", "2"), ("{{item.tags[1]}}", "beta")):
        result = await client.fine_tuning.alpha.graders.run(grader=check("eq", reference=reference),
                                                            model_sample=sample, item=item)  # fmt: skip
        assert result.reward == 1.0
    result = await client.fine_tuning.alpha.graders.run(
        grader=check("eq", "{{sample.output_json.answer[0]}}", "x"), model_sample='{"answer": ["x"]}'
    )
    assert result.reward == 1.0


async def test_missing_variables_and_unparsable_samples_score_zero_with_a_flag(client):
    missing = await client.fine_tuning.alpha.graders.run(grader=check("ne"), model_sample="Lima", item={})
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error
    not_json = await client.fine_tuning.alpha.graders.run(
        grader=check("ne", "{{sample.output_json.city}}"), model_sample="not json", item={"answer": "x"}
    )
    assert not_json.reward == 0.0 and not_json.metadata.errors.sample_parse_error
    no_tools = await client.fine_tuning.alpha.graders.run(
        grader=check("ne", "{{sample.output_tools[0].function.name}}"), model_sample="hi", item={"answer": "x"}
    )
    assert no_tools.reward == 0.0 and no_tools.metadata.errors.invalid_variable_error


@pytest.mark.parametrize("formula", ["__import__('os')", "a + b", "a +"])
async def test_a_bad_formula_is_graded_as_a_parse_error_and_refused_by_validate(client, formula):
    grader = {"type": "multi", "name": "m", "graders": {"a": check("eq")}, "calculate_output": formula}
    result = await client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x", item={"answer": "x"})
    assert result.reward == 0.0 and result.metadata.errors.formula_parse_error and result.sub_rewards == {"a": 1.0}
    with pytest.raises(openai.BadRequestError) as info:
        await client.fine_tuning.alpha.graders.validate(grader=grader)
    assert info.value.param == "grader.calculate_output" and info.value.code == "formula_parse_error"


async def test_validate_echoes_a_good_grader(client):
    grader = {"type": "multi", "name": "m", "graders": {"a": check("eq"), "b": similar("rouge_l")},
              "calculate_output": "max(a, b)"}  # fmt: skip
    raw = await client.fine_tuning.alpha.graders.with_raw_response.validate(grader=grader)
    assert json.loads(raw.text) == {"grader": grader}


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({"type": "multi", "name": "m", "calculate_output": "exact",
          "graders": {"exact": {**check("eq"), "operation": "equals"}}}, "grader.graders.exact.operation"),
        ({"type": "multi", "name": "m", "calculate_output": "a", "graders": {"a": {"type": "multi", "name": "n"}}},
         "grader.graders.a.type"),
        ({**similar("levenshtein")}, "grader.evaluation_metric"),
        ({**check("eq"), "input": "{{answer}}"}, "grader.input"),
        ({**check("eq"), "reference": "{{sample.text}}"}, "grader.reference"),
        ({"type": "string_check", "name": "c", "input": "x", "operation": "eq"}, "grader.reference"),
        ({"type": "regex"}, "grader.type"),
        ("not a grader", "grader"),
    ],
)  # fmt: skip
async def test_invalid_graders_are_400s_naming_the_field(client, grader, param):
    for call in (client.fine_tuning.alpha.graders.validate(grader=grader),
                 client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as info:
            await call
        assert info.value.param == param


async def test_bad_run_bodies_name_the_param(client):
    with pytest.raises(openai.BadRequestError) as info:
        await client.post("/fine_tuning/alpha/graders/run", body={"grader": check("eq")}, cast_to=object)
    assert info.value.param == "model_sample"
    with pytest.raises(openai.BadRequestError) as info:
        await client.post("/fine_tuning/alpha/graders/run", body={"grader": check("eq"), "model_sample": 3},
                          cast_to=object)  # fmt: skip
    assert info.value.param == "model_sample"
    with pytest.raises(openai.BadRequestError) as info:
        await client.post("/fine_tuning/alpha/graders/validate", body={}, cast_to=object)
    assert info.value.param == "grader"


async def test_an_rft_job_needs_a_grader_the_local_backend_can_run(client):
    rows = [{"messages": [{"role": "user", "content": "Capital of Peru?"}], "answer": "Lima"}] * 10
    training = (await client.files.create(file=("rft.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()),
                                          purpose="fine-tune")).id  # fmt: skip
    cases = [(None, "method.reinforcement.grader"), ({**check("eq"), "operation": "is"},
             "method.reinforcement.grader.operation"), ({"type": "python", "name": "p", "source": ""},
             "method.reinforcement.grader.source")]  # fmt: skip
    for grader, param in cases:
        method = {"type": "reinforcement", "reinforcement": {"grader": grader} if grader else {}}
        with pytest.raises(openai.BadRequestError) as info:
            await client.fine_tuning.jobs.create(model=BUILTIN_BASE_MODEL, training_file=training, method=method)
        assert info.value.param == param
    assert (await client.fine_tuning.jobs.list()).data == []


# -- the pieces on their own --------------------------------------------------------------------


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_metric_scores_identical_texts_high_and_unrelated_texts_low(metric):
    text = "the quick brown fox jumps over the lazy dog"
    same = METRICS[metric](text, text)
    assert same == pytest.approx(1.0, abs=0.02)  # meteor's fragmentation penalty leaves 1 - 0.5 / 9 ** 3
    assert METRICS[metric]("purple monkeys dance tonight", text) <= 0.35
    assert 0.0 <= METRICS[metric]("", text) <= 1.0


def test_metrics_rank_a_near_miss_between_a_match_and_a_miss():
    reference = "the cat sat on the mat"
    for metric in ("bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_l", "cosine", "fuzzy_match"):
        near = METRICS[metric]("the cat sat on a mat", reference)
        assert METRICS[metric](reference, reference) > near > METRICS[metric]("dogs bark loudly", reference), metric


def test_formulas_are_arithmetic_only():
    assert parse_formula("0.5 * a + 0.5 * max(b, 0.2) ** 2").evaluate({"a": 1, "b": 0.0}) == pytest.approx(0.52)
    assert parse_formula("round(sqrt(a) + log(exp(b)), 2)").evaluate({"a": 4, "b": 1}) == 3.0
    for bad in ("__import__('os')", "a.b", "a if b else c", "[a]", "a == b", "lambda: 1", "'text'", "1e999", "f(a)"):
        with pytest.raises(FormulaError):
            parse_formula(bad)
    for failing in ("a / 0", "9.0 ** 9 ** 9", "log(0)", "(-1) ** 0.5", "missing"):
        with pytest.raises(FormulaError):
            parse_formula(failing).evaluate({"a": 1})
