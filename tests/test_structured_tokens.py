"""The built-in model's structure tokens (tool calls and JSON answers) come back exactly as
they went in; decoding rules keep an answer to what the request allows; tool calls are read
back out of the text open models write in their templates' formats."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tunedeck.backend.tool_call_text import parse_tool_calls
from tunedeck.backend.trainers.base import ToolCall, Turn
from tunedeck.backend.trainers.ngram.features import END_TOKEN, UNKNOWN_TOKEN, turn_tokens
from tunedeck.backend.trainers.ngram.structured import AnswerRules, Constraint, call_token, read_answer

scalars = st.one_of(
    st.text(max_size=20), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@given(objects, st.text(max_size=30))
def test_call_arguments_come_back_as_the_same_json(arguments, text):
    calls = (ToolCall("f", json.dumps(arguments)), ToolCall("g_2", "{}"))
    answer = read_answer(turn_tokens(Turn("assistant", text, tool_calls=calls)))
    assert [c.name for c in answer.tool_calls] == ["f", "g_2"]
    assert json.loads(answer.tool_calls[0].arguments) == arguments and json.loads(answer.tool_calls[1].arguments) == {}
    assert " ".join(answer.text_tokens).split() == " ".join(t for t in turn_tokens(Turn("assistant", text))).split()


@given(objects)
def test_a_json_object_answer_comes_back_as_the_same_object(value):
    text = json.dumps(value, indent=2)
    answer = read_answer(turn_tokens(Turn("assistant", text)))
    assert answer.json_text is not None and json.loads(answer.json_text) == value and not answer.text_tokens


def test_arguments_that_are_not_an_object_are_kept_as_written():
    for arguments in ('"just a string"', "not json at all", "[1, 2]", ""):
        (call,) = read_answer(turn_tokens(Turn("assistant", "", tool_calls=(ToolCall("f", arguments),)))).tool_calls
        assert call.arguments == arguments


def test_text_that_only_looks_like_structure_stays_text():
    for text in ("<call:f> is how it is written", "{not json}", "[1, 2, 3]", '{"a": 1} and more'):
        tokens = turn_tokens(Turn("assistant", text))
        assert not any(t.startswith(("<call:", "<arg:")) or t == "<json>" for t in tokens)


# -- the rules ----------------------------------------------------------------------------------

VOCABULARY = [
    UNKNOWN_TOKEN, END_TOKEN, "hello", call_token("get_weather"), call_token("lock_door"), '<arg:s:["city"]>',
    '<arg:s:["room"]>', "<json>", '<arg:j:["quantity"]>', "Paris",
]  # fmt: skip
ID = {token: index for index, token in enumerate(VOCABULARY)}


def allowed(rules: AnswerRules, so_far: list[str]) -> set[str]:
    banned = Constraint(VOCABULARY, rules).banned([ID[t] for t in so_far])
    return {VOCABULARY[i] for i in np.flatnonzero(~banned)} - {UNKNOWN_TOKEN}


OFFERED = {"get_weather": frozenset({"city"}), "lock_door": frozenset({"room"})}


def test_without_tools_an_answer_is_words_or_a_json_object():
    assert allowed(AnswerRules(), []) == {END_TOKEN, "hello", "Paris", "<json>"}
    assert allowed(AnswerRules(), ["hello"]) == {END_TOKEN, "hello", "Paris"}


def test_offered_tools_may_be_called_with_their_own_arguments_only():
    rules = AnswerRules(tools=OFFERED)
    assert call_token("lock_door") in allowed(rules, ["hello"])  # words, then a call
    after_call = allowed(rules, [call_token("get_weather")])
    assert after_call == {'<arg:s:["city"]>', END_TOKEN, call_token("get_weather"), call_token("lock_door")}
    in_value = allowed(rules, [call_token("get_weather"), '<arg:s:["city"]>'])
    assert "Paris" in in_value and '<arg:s:["city"]>' not in in_value  # no argument twice
    assert call_token("get_weather") not in allowed(AnswerRules(tools={"lock_door": None}), [])  # not offered


def test_tool_choice_and_parallel_calls():
    assert allowed(AnswerRules(tools=OFFERED, tool_choice="required"), []) == {call_token("get_weather"), call_token("lock_door")}
    assert allowed(AnswerRules(tools=OFFERED, tool_choice="lock_door"), []) == {call_token("lock_door")}
    assert not allowed(AnswerRules(tools=OFFERED, tool_choice="none"), []) & {call_token("get_weather"), call_token("lock_door")}
    one_call = [call_token("lock_door"), '<arg:s:["room"]>', "hello"]
    assert call_token("get_weather") in allowed(AnswerRules(tools=OFFERED), one_call)
    assert call_token("get_weather") not in allowed(AnswerRules(tools=OFFERED, parallel=False), one_call)
    assert call_token("get_weather") not in allowed(AnswerRules(tools=OFFERED, tool_choice="lock_door"), one_call)


def test_a_json_format_starts_the_object_at_once_and_keeps_to_the_schema_keys():
    rules = AnswerRules(wants_json=True, json_keys=frozenset({"quantity"}))
    assert allowed(rules, []) == {"<json>"}
    assert allowed(rules, ["<json>"]) == {'<arg:j:["quantity"]>', END_TOKEN}


# -- reading open models' calls ----------------------------------------------------------------

OFFERED_NAMES = ["get_weather", "lock_door"]


def test_calls_in_each_template_format_are_read():
    hermes = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    llama = '{"name": "get_weather", "parameters": {"city": "Oslo"}}; {"name": "lock_door", "parameters": {"room": "hall"}}'
    mistral = '[{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "lock_door", "arguments": {"room": "hall"}}]'
    fenced = '```json\n{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}}\n```'
    oslo = ToolCall("get_weather", '{"city": "Oslo"}')
    hall = ToolCall("lock_door", '{"room": "hall"}')
    assert parse_tool_calls(hermes, OFFERED_NAMES) == ("Sure.", [oslo])
    assert parse_tool_calls(llama, OFFERED_NAMES) == ("", [oslo, hall])
    assert parse_tool_calls(mistral, OFFERED_NAMES) == ("", [oslo, hall])
    assert parse_tool_calls(fenced, OFFERED_NAMES) == ("", [oslo])


def test_json_that_is_not_a_call_of_an_offered_function_stays_text():
    for text in ('{"name": "delete_everything", "arguments": {}}', '{"name": "Ada", "age": 3}', "plain words [1, 2]",
                 '<tool_call>{"name": "get_weather", "argu'):  # fmt: skip
        assert parse_tool_calls(text, OFFERED_NAMES) == (text, [])
