"""The grader editor's core: starting graders, the check as you type, the dataset's rows,
saved graders, and test runs on the real local backend (its `graders/run`) or, when the
provider has none, on the backend's grader code."""

from __future__ import annotations

import json
import stat

import pytest

from tunedeck.core.api import ApiError
from tunedeck.core.bootstrap import open_service
from tunedeck.core.launch import graders
from tunedeck.core.paths import AppPaths

ROWS = [{"messages": [{"role": "user", "content": "2+2?"}], "answer": "4", "meta": {"level": n}} for n in range(5)]


def text(grader: dict) -> str:
    return json.dumps(grader, indent=2)


def check(grader: dict, rows=ROWS, **options) -> graders.GraderCheck:
    return graders.check_grader_text(text(grader), rows, **options)


@pytest.fixture
def paths(tmp_path) -> AppPaths:
    return AppPaths(config_dir=tmp_path / "config", cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")


@pytest.fixture
async def service(manual_backend):
    service = await open_service(local_backend=manual_backend)
    await service.connect()
    yield service
    await service.close()


# -- starting graders and the check ---------------------------------------------------------


@pytest.mark.parametrize("kind", graders.GRADER_TYPES)
def test_each_starting_grader_passes_and_reads_the_datasets_field(kind):
    grader = graders.template_for(kind, graders.dataset_fields(ROWS))
    result = check(grader, method_allows_label_model=True)
    assert result.ok, result.errors
    assert result.warnings == []
    assert grader["type"] == kind
    if kind == "python":
        assert "'answer'" in grader["source"] and result.references == []  # read in code, not a template
    else:
        assert result.references == [graders.Reference("item.answer", 5, 5)]


def test_a_dataset_without_extra_fields_gets_the_conventional_reference_field():
    grader = graders.template_for("string_check", ["messages", "tools"])
    assert grader["reference"] == "{{item.reference_answer}}"
    assert "did you mean" not in " ".join(check(grader, [{"messages": []}]).errors)


def test_multi_starts_with_two_graders_and_a_formula_over_them():
    grader = graders.template_for("multi", ["messages", "answer"])
    assert set(grader["graders"]) == {"exact", "close"}
    assert "exact" in grader["calculate_output"] and "close" in grader["calculate_output"]


def test_label_model_is_refused_at_the_top_unless_the_method_takes_it():
    grader = graders.template_for("label_model", ["answer"])
    assert check(grader).errors == ["grader.type: an RFT job takes label_model only inside a multi grader"]
    assert check(grader, method_allows_label_model=True).ok


def test_json_errors_say_line_and_column():
    result = graders.check_grader_text('{\n  "type": "string_check",\n  "name": }', ROWS)
    assert result.grader is None and not result.ok
    assert result.errors == ["not JSON: Expecting value at line 3, column 11"]
    assert graders.check_grader_text("[1, 2]", ROWS).errors == ['a grader is a JSON object with a "type" ({...})']


def test_a_field_missing_in_some_rows_is_counted_and_its_rows_named(tmp_path):
    data = tmp_path / "train.jsonl"
    lines = [json.dumps(ROWS[0]), "", "{not json", json.dumps({"messages": []}), json.dumps(ROWS[1]),
             json.dumps({"messages": [], "meta": {}})]  # fmt: skip
    data.write_text("\n".join(lines) + "\n")
    rows = graders.sample_rows(data)
    assert rows.lines == [1, 4, 5, 6] and rows.skipped == 1 and rows.complete

    grader = {**graders.template_for("string_check", ["answer"]), "input": "{{sample.output_text}} {{item.meta.level}}"}
    result = check(grader, rows)
    assert result.ok  # missing in some rows: a warning (the launch's validator names each row)
    assert result.warnings == [
        "item.meta.level: missing in rows 4, 6 (2 of 4)",
        "item.answer: missing in rows 4, 6 (2 of 4)",
    ]
    assert result.references == [graders.Reference("item.meta.level", 2, 4), graders.Reference("item.answer", 2, 4)]


def test_a_field_in_no_row_is_an_error_with_a_guess():
    grader = {**graders.template_for("string_check", ["answer"]), "reference": "{{item.answr}}"}
    result = check(grader)
    assert result.errors == ["item.answr: in none of the 5 rows read; did you mean item.answer?"]
    assert result.references == [graders.Reference("item.answr", 0, 5)]


def test_without_rows_references_are_listed_unchecked():
    result = check(graders.template_for("text_similarity", ["answer"]), [])
    assert result.ok and result.references == [graders.Reference("item.answer", 0, 0)]


def test_bad_sample_fields_and_broken_templates_name_where_they_are():
    grader = graders.template_for("string_check", ["answer"])
    grader.update(input="{{sample.output}}", reference="{{ item. }}")
    errors = check(grader).errors
    assert errors[0] == (
        "grader.input: the sample namespace has output_text, output_json, output_tools; got {{sample.output}}."
    )
    assert errors[1].startswith("grader.reference: {{ item. }} is not a template variable")
    assert len(errors) == 2  # the backend's check of the same field is not repeated


def test_a_grader_that_never_reads_the_answer_is_warned_about():
    grader = {**graders.template_for("string_check", ["answer"]), "input": "{{item.answer}}"}
    assert check(grader).warnings == ["grader never reads the answer ({{sample.*}}): every answer scores the same"]


def test_structure_is_checked_by_the_backends_own_rules():
    grader = {**graders.template_for("string_check", ["answer"]), "operation": "equals"}
    assert check(grader).errors == ["Invalid 'grader.operation': expected one of eq, ne, like, ilike; got 'equals'."]
    metric = {**graders.template_for("text_similarity", ["answer"]), "evaluation_metric": "nope"}
    assert "grader.evaluation_metric" in check(metric).errors[0]
    nameless = {k: v for k, v in graders.template_for("string_check", ["answer"]).items() if k != "name"}
    assert check(nameless).errors == ["grader.name: required: a name for this grader"]
    assert check({"type": "regex", "name": "x"}).errors[0].startswith("grader.type: expected one of string_check")


def test_multi_formula_must_name_its_graders():
    grader = {**graders.template_for("multi", ["answer"]), "calculate_output": "exact + nearly"}
    assert check(grader).errors == [
        "Invalid 'grader.calculate_output': unknown name(s) nearly; the graders are exact, close."
    ]


def test_a_multi_with_graders_the_backend_cannot_run_still_gets_its_formula_checked():
    grader = graders.template_for("multi", ["answer"])
    grader["graders"]["judge"] = {**graders.template_for("score_model", ["answer"]), "name": "judge"}
    grader["graders"]["code"] = {**graders.template_for("python", ["answer"]), "name": "code"}
    grader["calculate_output"] = "exact + judge + code"
    assert check(grader).ok
    grader["calculate_output"] = "exact + judge + cod"
    assert check(grader).errors == [
        "Invalid 'grader.calculate_output': unknown name(s) cod; the graders are exact, close, judge, code."
    ]


def test_model_graders_are_checked_here():
    label = graders.template_for("label_model", ["answer"])
    label["passing_labels"] = ["correct", "right"]
    assert check(label, method_allows_label_model=True).errors == ['grader.passing_labels: not among labels: "right"']
    score = {**graders.template_for("score_model", ["answer"]), "range": [1, 0]}
    assert check(score).errors == ["grader.range: the lowest score must be below the highest"]
    del score["model"], score["range"]
    score["input"] = [{"role": "judge", "content": "x"}]
    assert check(score).errors == [
        "grader.model: required: the model that grades",
        "grader.input[0].role: expected one of system, developer, user, assistant",
    ]
    assert check({"type": "python", "name": "p", "source": " "}).errors == [
        "grader.source: required: the Python source, defining grade(sample, item)"
    ]


def test_the_editor_text_shows_hostile_characters_escaped_and_parses_back():
    grader = {"type": "string_check", "name": "a\u202eb\x1b]52;c;x\x07\U000e0041 é", "input": "", "reference": "",
              "operation": "eq"}  # fmt: skip
    shown = graders.editor_text(grader)
    assert not {"\x1b", "\x07", "\u202e", "\U000e0041"} & set(shown) and "é" in shown
    assert json.loads(shown) == grader


# -- the dataset's rows -----------------------------------------------------------------------


def test_sample_rows_stops_at_the_limit(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\ufeff" + "".join(json.dumps({"n": n}) + "\n" for n in range(50)), encoding="utf-8")
    rows = graders.sample_rows(data, limit=10)
    assert [row["n"] for row in rows] == list(range(10)) and rows.lines == list(range(1, 11))
    assert not rows.complete and rows.row_at(3) == {"n": 2} and rows.row_at(11) is None
    assert graders.row_at(data, 40) == {"n": 39}
    with pytest.raises(ValueError, match="the file has 50 lines"):
        graders.row_at(data, 51)


def test_row_at_says_why_a_line_has_no_row(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"a": 1}\n\n[1]\n')
    assert graders.row_at(data, 1) == {"a": 1}
    with pytest.raises(ValueError, match="line 2 is blank"):
        graders.row_at(data, 2)
    with pytest.raises(ValueError, match="line 3 is not a JSON object"):
        graders.row_at(data, 3)


# -- saved graders -----------------------------------------------------------------------------


def test_saved_graders_round_trip_owner_only(paths):
    grader = graders.template_for("multi", ["answer"])
    path = graders.save_grader(paths, "city v2", grader)
    assert path == paths.config_dir / "graders" / "city v2.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    graders.save_grader(paths, "a", {"type": "python", "name": "p", "source": "x"})
    saved = graders.saved_graders(paths)
    assert saved.graders == {"a": {"type": "python", "name": "p", "source": "x"}, "city v2": grader}
    assert saved.errors == []
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_damaged_saved_grader_is_reported_not_dropped(paths):
    graders.save_grader(paths, "good", graders.template_for("string_check", ["answer"]))
    (paths.config_dir / "graders" / "broken.json").write_text('{"type": "string_check",')
    (paths.config_dir / "graders" / "list.json").write_text("[1]")
    saved = graders.saved_graders(paths)
    assert list(saved.graders) == ["good"]
    assert saved.errors == [
        "broken.json: damaged, not JSON (Expecting property name enclosed in double quotes at line 1, column 25)",
        "list.json: damaged, not a grader object",
    ]


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "a\\b", "x" * 65, "tab\tname", "new\nline"])
def test_grader_names_cannot_be_paths(paths, name):
    assert graders.name_problem(name) is not None
    with pytest.raises(ValueError):
        graders.save_grader(paths, name, {})
    assert not (paths.config_dir / "graders").exists() or not list((paths.config_dir / "graders").iterdir())


def test_no_saved_graders_yet(paths):
    assert graders.saved_graders(paths) == graders.SavedGraders({}, [])


# -- test runs ---------------------------------------------------------------------------------------


async def test_a_run_on_the_local_backends_api_shows_reward_and_sub_scores(service):
    api = service._api
    before = api.requests
    grader = graders.template_for("multi", ["answer"])
    run = await graders.test_run(api.run_grader, grader, "4", {"answer": "4"})
    assert run == graders.GraderRun(1.0, {"exact": 1.0, "close": 1.0}, [], graders.PROVIDER, "", run.seconds)
    assert api.requests == before + 1

    missing = await graders.test_run(api.run_grader, grader, "4", {"other": "4"})
    assert missing.reward == 0.0 and missing.errors == ["invalid_variable_error"]


async def test_a_model_grader_on_the_local_backend_asks_the_model_it_names(service):
    grader = graders.template_for("score_model", ["answer"])
    run = await graders.test_run(service._api.run_grader, grader, "4", {"answer": "4"})
    assert run.source == graders.PROVIDER and run.reward == 0.0
    (error,) = run.errors  # the template's model is OpenAI's, which the local backend does not serve
    assert error.startswith(f"model_grader_server_error: {grader['model']}: HTTP 404")


async def test_a_provider_without_graders_run_falls_back_to_the_local_code():
    asked = []

    async def no_such_endpoint(grader, sample, item):
        asked.append((grader, sample, item))
        raise ApiError("not_found", "HTTP 404: Not found", 404)

    grader = graders.template_for("text_similarity", ["answer"])
    run = await graders.test_run(no_such_endpoint, grader, "Lima", {"answer": "Lima"})
    assert asked == [(grader, "Lima", {"answer": "Lima"})]
    assert run.reward == 1.0 and run.source == graders.LOCAL_CODE
    assert run.message == "the provider has no graders/run: ran the local grader code"


async def test_an_unconnected_service_runs_the_local_code(manual_backend):
    service = await open_service(local_backend=manual_backend)  # not connected: no API yet
    try:
        run = await graders.test_run(service.run_grader, graders.template_for("string_check", ["answer"]), "4",
                                     {"answer": "4"})  # fmt: skip
    finally:
        await service.close()
    assert run.reward == 1.0 and run.source == graders.LOCAL_CODE
    assert run.message.startswith("not connected to ") and run.message.endswith(": ran the local grader code")


async def test_other_api_errors_are_reported_not_retried_locally():
    async def offline(grader, sample, item):
        raise ApiError("connection", "cannot reach the API: refused")

    run = await graders.test_run(offline, graders.template_for("string_check", ["answer"]), "4", {"answer": "4"})
    said = "The provider did not run it: cannot reach the API: refused"
    assert run == graders.GraderRun(None, {}, [], graders.PROVIDER, said)


async def test_without_an_api_the_local_code_grades_and_refuses_what_it_cannot_run():
    grader = graders.template_for("multi", ["answer"])
    grader["calculate_output"] = "0.25 * exact + 0.75 * close"
    run = await graders.test_run(None, grader, "5", {"answer": "4"})
    assert run.source == graders.LOCAL_CODE and run.scores["exact"] == 0.0
    assert run.reward == pytest.approx(0.75 * run.scores["close"])

    # A model grader needs a model to ask: the local code has none, and says so on the run.
    unasked = await graders.test_run(None, graders.template_for("score_model", ["answer"]), "4", {"answer": "4"})
    assert unasked.reward == 0.0 and unasked.errors == ["model_grader_server_error: no model can be asked from here"]
