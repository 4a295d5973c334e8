"""Exact token counts, offline: tiktoken's encodings through bpe-openai's Rust tokenizer.

`counter(encoding)` returns a function str -> int that equals `len(tiktoken.encode_ordinary(s))`
(special-token text such as "<|endoftext|>" counts as ordinary text; lone surrogates are
replaced the way tiktoken does). Counts of repeated strings (roles, system prompts, labels)
come from a bounded cache, which is most of the win over encoding every string.

Per-example counting follows the OpenAI cookbook's estimate: 3 tokens per message, plus
every string value of the message (role, content, name, tool_call_id, ...), plus 1 per `name`,
plus 3 priming tokens per example. Beyond the cookbook, which skips values that are not
strings, the text inside content parts and the name/arguments of tool and function calls are
counted too (they are trained on); image parts are not counted. For plain-string chat data,
which is what the cookbook handles, the two agree exactly. The local backend counts its own
tokens with the same per-message and per-example overheads (`TOKENS_PER_MESSAGE`,
`PRIMING_TOKENS`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Callable

from .detect import CHAT_ROLES

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
PRIMING_TOKENS = 3

#: Every chat role has its own line in the per-role totals; anything else counts under "other".
_ROLE_KEY = {role: role for role in CHAT_ROLES}

Count = Callable[[str], int]

_CACHE_MAX_CHARS = 8_000_000  # bounded memory: the cache is cleared when it holds more
_CACHE_MAX_STRING = 65_536


def _bindings() -> Any:
    """bpe-openai's Rust extension module.

    Importing the `bpe_openai` package first builds Python dicts of every encoding's ranks
    (about 0.45 s and 75 MB per process, for special-token tables we never use), so the
    extension is loaded straight from the package folder and registered under its own
    name, where a later `import bpe_openai` finds and reuses it.
    """
    name = "bpe_openai._bindings"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec("bpe_openai")  # locates the package without running it
        folder = (spec.submodule_search_locations or [None])[0] if spec else None
        if folder is None or "bpe_openai" in sys.modules:
            raise ImportError("no package folder")
        for filename in sorted(os.listdir(folder)):
            if filename.startswith("_bindings.") and filename.endswith((".so", ".pyd")):
                location = os.path.join(folder, filename)
                loader = importlib.machinery.ExtensionFileLoader(name, location)
                module_spec = importlib.util.spec_from_file_location(name, location, loader=loader)
                assert module_spec is not None
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                sys.modules[name] = module
                return module
        raise ImportError("no extension module")
    except Exception:  # pragma: no cover - any other layout: the ordinary import
        return importlib.import_module(name)


def _raw_counter(encoding: str) -> Count:
    """The fastest exact counter bpe-openai offers for `encoding`."""
    try:
        count = _bindings().tokenizer_for_encoding(encoding).count  # no list of ids is built
        count("hello world")
        return count
    except Exception:  # pragma: no cover - an older bpe-openai without the binding's count()
        import bpe_openai

        enc = bpe_openai.get_encoding(encoding)
        return lambda text: len(enc.encode_ordinary(text))


def _sanitize(text: str) -> str:
    """tiktoken's treatment of text that is not valid UTF-8 (lone surrogates)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def counter(encoding: str) -> Count:
    """A function counting `encoding` tokens of a string, with a bounded cache."""
    raw = _raw_counter(encoding)
    cache: dict[str, int] = {}
    get = cache.get
    held = 0

    def count(text: str) -> int:
        nonlocal held
        n = get(text)
        if n is None:
            try:
                n = raw(text)
            except UnicodeEncodeError:
                n = raw(_sanitize(text))
            size = len(text)
            if size <= _CACHE_MAX_STRING:
                if held > _CACHE_MAX_CHARS:
                    cache.clear()
                    held = 0
                cache[text] = n
                held += size + 64
        return n

    count.cached = get  # type: ignore[attr-defined]  # the cache's own get(), for hot loops
    return count


def encode(text: str, encoding: str) -> list[int]:
    """Token ids of `text` (tests and debugging; counting never builds the list)."""
    import bpe_openai

    return bpe_openai.get_encoding(encoding).encode_ordinary(text)


# -- per example ---------------------------------------------------------------------------


def message_tokens(m: dict[str, Any], count: Count) -> int:
    """Tokens of one message: 3 + its string values (+1 for `name`) + content parts and calls."""
    n = TOKENS_PER_MESSAGE
    for key, value in m.items():
        kind = type(value)
        if kind is str:
            n += count(value)
        elif kind is list:
            if key == "content":
                for part in value:
                    if type(part) is dict:
                        text = part.get("text")
                        if type(text) is str:
                            n += count(text)
            elif key == "tool_calls":
                for call in value:
                    if type(call) is dict:
                        n += _call_tokens(call.get("function"), count)
        elif kind is dict and key == "function_call":
            n += _call_tokens(value, count)
        if key == "name":
            n += TOKENS_PER_NAME
    return n


def _call_tokens(function: Any, count: Count) -> int:
    if type(function) is not dict:
        return 0
    n = 0
    for key in ("name", "arguments"):
        value = function.get(key)
        if type(value) is str:
            n += count(value)
    return n


def messages_tokens(messages: Any, count: Count, by_role: dict[str, int] | None = None) -> int:
    """Tokens of a list of messages, including the 3 priming tokens; per-role totals
    (message overhead included) are added to `by_role` when given."""
    total = PRIMING_TOKENS
    if type(messages) is not list:
        return total
    roles = _ROLE_KEY
    for m in messages:
        if type(m) is not dict:
            continue
        role = m.get("role")
        if len(m) == 2 and type(role) is str and type(content := m.get("content")) is str:
            n = TOKENS_PER_MESSAGE + count(role) + count(content)  # the common case, same sum
        else:
            n = message_tokens(m, count)
        total += n
        if by_role is not None:
            key = roles.get(role, "other") if type(role) is str else "other"
            by_role[key] = by_role.get(key, 0) + n
    return total


def example_tokens(obj: dict[str, Any], fmt: str, count: Count, by_role: dict[str, int] | None = None) -> int:
    """Tokens of one example of format `fmt` (sft, dpo, rft, legacy)."""
    if fmt == "dpo":
        source = obj.get("input")
        messages = list(source.get("messages") or []) if type(source) is dict and type(source.get("messages")) is list else []
        for key in ("preferred_output", "non_preferred_output"):
            output = obj.get(key)
            if type(output) is list:
                messages.extend(output)
        return messages_tokens(messages, count, by_role)
    if fmt == "legacy":
        total = 0
        for key in ("prompt", "completion"):
            value = obj.get(key)
            if type(value) is str:
                n = count(value)
                total += n
                if by_role is not None:
                    by_role[key] = by_role.get(key, 0) + n
        return total
    return messages_tokens(obj.get("messages"), count, by_role)
