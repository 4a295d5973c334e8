"""Property tests: no input makes the validator crash; every finding has a known code."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunedeck.core.datasets import ERRORS, WARNINGS, check_line, validate_file
from tunedeck.core.datasets.checker import check_object, rule_for
from tunedeck.core.datasets.detect import FAMILY, family
from tunedeck.core.datasets.tokens import counter, example_tokens

CODES = set(ERRORS) | set(WARNINGS)
FORMATS = ("sft", "dpo", "rft", "legacy")
COUNT = counter("o200k_base")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20
)
role = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot", ""]) | json_values
message = st.fixed_dictionaries(
    {},
    optional={
        "role": role,
        "content": st.text(max_size=20) | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"])}, optional={"text": json_values, "image_url": json_values}), max_size=3) | json_values,
        "weight": json_values,
        "name": json_values,
        "tool_calls": json_values | st.lists(st.fixed_dictionaries({"id": json_values, "function": st.fixed_dictionaries({}, optional={"name": json_values, "arguments": st.text(max_size=10)})}), max_size=2),
        "tool_call_id": json_values,
        "function_call": json_values,
    },
)
messages = st.lists(message | json_values, max_size=5) | json_values
example = st.fixed_dictionaries(
    {},
    optional={
        "messages": messages,
        "input": st.fixed_dictionaries({}, optional={"messages": messages, "tools": json_values}) | json_values,
        "preferred_output": st.lists(message, max_size=2) | json_values,
        "non_preferred_output": st.lists(message, max_size=2) | json_values,
        "prompt": json_values,
        "completion": json_values,
        "tools": json_values,
        "parallel_tool_calls": json_values,
        "answer": json_values,
    },
)


def known(found) -> bool:
    return all(code in CODES and isinstance(message, str) and message for code, _, message in found)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(FORMATS))
def test_random_bytes_never_crash_the_line_checker(raw, fmt):
    assert known(check_line(raw, fmt))


@settings(max_examples=300, deadline=None)
@given(example | json_values, st.sampled_from(FORMATS))
def test_random_json_never_crashes_checks_or_counting(obj, fmt):
    found, _ = check_object(obj, fmt)
    assert known(found)
    check_line(json.dumps(obj).encode(), fmt)
    if isinstance(obj, dict):
        assert example_tokens(obj, fmt, COUNT, {}) >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=80) | example.map(lambda e: json.dumps(e).encode()), max_size=15), st.sampled_from(("auto", "sft", "dpo", "rft")))
def test_random_files_never_crash_the_validator(tmp_path, lines, method):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    report = validate_file(path, method=method)
    data = report.to_json()
    json.dumps(data)
    assert set(data["counts"]) <= CODES
    assert report.error_count >= len(report.errors)
    assert all(i.line is None or 1 <= i.line <= max(1, report.lines) for i in report.errors + report.warnings)


# -- mutation sweep: every position of rich examples replaced by every kind of JSON value ---------

TEMPLATES = [
    {
        "messages": [
            {"role": "system", "content": "s", "name": "n"},
            {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"},
            {"role": "assistant", "content": "a", "weight": 1, "function_call": {"name": "f", "arguments": "{}"}},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "description": "d"}}],
        "functions": [{"name": "f"}],
        "parallel_tool_calls": True,
    },
    {
        "input": {"messages": [{"role": "user", "content": "q"}], "tools": [], "parallel_tool_calls": False},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}],
    },
    {"messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}], "answer": {"x": [1]}},
    {"prompt": "p", "completion": " c"},
]
NASTY = [None, True, False, 0, 1, 2, -1, 1.5, "", "x", "system", "assistant", "\ud800", [], [1], [[]], {}, {"a": 1}, {"role": "user"}]


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


def replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (replaced(v, rest, new) if k == head else v) for k, v in value.items()}
    return [replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]


def test_every_position_holding_any_json_value_never_crashes(tmp_path):
    checked = 0
    for number, template in enumerate(TEMPLATES):
        mutants = [replaced(template, path, new) for path in list(paths(template)) for new in NASTY]
        for obj in mutants:
            for fmt in FORMATS:
                found, _ = check_object(obj, fmt)
                assert known(found), (obj, fmt)
                if isinstance(obj, dict):
                    example_tokens(obj, fmt, COUNT, {})
                    if family(obj) == FAMILY[fmt]:
                        found = []
                        info = rule_for(fmt)(obj, found, COUNT, {})  # the scan's fused check-and-count
                        assert known(found)
                        assert info is None or info.tokens >= 0
                checked += 1
        path = tmp_path / f"mutants{number}.jsonl"
        path.write_text("".join(json.dumps(m) + "\n" for m in mutants), encoding="utf-8", errors="surrogatepass")
        for method in ("auto", "sft", "dpo", "rft"):
            report = validate_file(path, method=method)
            assert report.examples == len(mutants)
            json.dumps(report.to_json())
    assert checked > 5000
