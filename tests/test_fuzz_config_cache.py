"""Property tests for the two files tunedeck reads before anything else: the config and the
cache. Whatever they hold, the app either starts or says what is wrong with which file:
`load_config` returns an `AppConfig` or raises `ConfigError` naming the file; `Cache.open`
opens (moving a damaged file aside) or raises `CacheError` naming the file."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunedeck.core.cache import Cache, CacheError
from tunedeck.core.config import AppConfig, ConfigError, load_config

FUZZ = settings(max_examples=80, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
FUZZ_CACHE = settings(FUZZ, max_examples=50)  # each example opens a real SQLite file (~40 ms)

# -- the config ----------------------------------------------------------------------------------

PROFILE_KEYS = ["backend", "base_url", "endpoint", "api_version", "api_key_env", "port", "time_scale", "api_key"]
BACKENDS = ["openai", "azure", "compatible", "local", "LOCAL", ""]

scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(BACKENDS),
    st.integers(),
    st.floats(),  # nan and inf included: TOML has them
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
profile_table = st.dictionaries(st.sampled_from(PROFILE_KEYS) | st.text(max_size=8), values, max_size=6)
documents = st.fixed_dictionaries(
    {},
    optional={
        "default_profile": values | st.sampled_from(["local", "openai", "work"]),
        "profiles": st.dictionaries(
            st.sampled_from(["local", "openai", "work"]) | st.text(max_size=8), profile_table | values, max_size=4
        )
        | values,
        "extra": values,
    },
)


def toml_string(text: str) -> str:
    escaped = json.dumps(text, ensure_ascii=False)  # JSON's escapes are TOML basic-string escapes...
    return escaped.replace("\x7f", "\\u007f")  # ...but TOML also forbids a literal DEL


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(document: dict) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in document.items())


def check_config(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(raw)
        try:
            config = load_config(path, environ={})
        except ConfigError as exc:
            assert str(path) in str(exc), str(exc)
            return
        assert isinstance(config, AppConfig)
        assert config.profile().name == config.default_profile  # the default names a real profile


@FUZZ
@given(documents)
def test_any_toml_document_loads_or_names_the_file(document):
    check_config(toml_document(document).encode())


@FUZZ
@given(st.text(max_size=200))
def test_any_text_loads_or_names_the_file(text):
    check_config(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_load_or_name_the_file(raw):
    check_config(raw)


# -- the cache -------------------------------------------------------------------------------------


def _valid_cache_bytes() -> bytes:
    """A real cache with a few jobs and events, as bytes (a seed the mutations below damage)."""

    async def write(path: Path) -> None:
        cache = await Cache.open(path)
        for i in range(3):
            job = {"id": f"ftjob-{i}", "created_at": i, "status": "running", "model": "m"}
            await cache.upsert_jobs("local", [job])
            events = [{"id": f"ev-{i}-{n}", "type": "metrics", "data": {"step": n}} for n in range(30)]
            await cache.add_events("local", f"ftjob-{i}", events)
        await cache.close()

    folder = Path(tempfile.mkdtemp())
    try:
        asyncio.run(write(folder / "seed.sqlite3"))
        return (folder / "seed.sqlite3").read_bytes()
    finally:
        shutil.rmtree(folder)


VALID = _valid_cache_bytes()


@st.composite
def mutated_cache(draw) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=64))
        data[at : at + len(chunk)] = chunk
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


cache_bytes = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=1024).map(lambda tail: b"SQLite format 3\x00" + tail),  # a header, then nonsense
    mutated_cache(),
)


async def _use_cache(path: Path) -> None:
    try:
        cache = await Cache.open(path, busy_timeout=0.5)
    except CacheError as exc:
        assert str(path) in str(exc), str(exc)
        return
    try:
        if cache.recovery_note:
            moved = [p for p in path.parent.iterdir() if ".damaged-" in p.name]
            assert len(moved) == 1 and str(moved[0]) in cache.recovery_note
        # every read and write the front ends make: each works or raises the cache's own error
        for step in (
            lambda: cache.jobs("local"),
            lambda: cache.job("local", "ftjob-1"),
            lambda: cache.events("local", "ftjob-1"),
            lambda: cache.newest_event_id("local", "ftjob-1"),
            lambda: cache.latest_metrics("local"),
            lambda: cache.upsert_jobs("local", [{"id": "ftjob-new", "created_at": 9, "status": "queued"}]),
            lambda: cache.add_events("local", "ftjob-new", [{"id": "ev-new", "type": "message"}]),
            lambda: cache.set_meta("k", "v"),
        ):
            try:
                await asyncio.wait_for(step(), timeout=10)
            except CacheError as exc:
                assert str(path) in str(exc), str(exc)
        # Whatever happened, the cache works now (a write above may have gone to a file since moved aside).
        await cache.upsert_jobs("local", [{"id": "ftjob-last", "created_at": 10, "status": "queued"}])
        assert await cache.job("local", "ftjob-last") is not None
    finally:
        await cache.close()


@FUZZ_CACHE
@given(cache_bytes)
def test_any_cache_file_opens_or_names_the_file(raw):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cache.sqlite3"
        path.write_bytes(raw)
        os.chmod(path, 0o600)
        asyncio.run(_use_cache(path))
