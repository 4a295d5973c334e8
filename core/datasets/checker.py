"""The per-line checker: pure functions from the bytes of one line to its findings.

`check_object(obj, fmt)` decides what a valid example is, for the app and the local backend
alike: the streaming validator (`scan`) runs it, or the rule it dispatches to, on every line,
and the first-error reader (`reader`) that a job's start uses runs it too. `check_line(raw,
fmt)` is the same from the bytes of a line. No I/O, no state, no exceptions for bad data.
Findings are `(code, field, message)` triples; codes are in `codes.py`.

JSON is parsed with orjson when it is installed (3-4x faster), else the standard library;
a line orjson refuses is parsed again by the standard library, so both accept exactly the
same lines: valid JSON (big integers and unpaired surrogate escapes included; the latter are
counted as tiktoken does, as U+FFFD), never NaN/Infinity or a byte order mark mid-file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Sequence

from .detect import FAMILY, FORMAT_NAMES, MISSING_KEY_CODE, MISSING_KEY_FIELD, family
from .grader import ItemPath
from .messages import Found, MessagesInfo, json_type
from .rules_dpo import check_dpo
from .rules_legacy import check_legacy
from .rules_rft import check_rft
from .rules_sft import check_sft

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised where orjson is not installed
    _orjson = None

BOM = b"\xef\xbb\xbf"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _std_loads(raw: bytes | str) -> Any:
    """The standard library's parser, strict about NaN/Infinity and a BOM on any line."""
    text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    return _decoder.decode(text.strip(" \t\r\n"))


def _std_canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


if _orjson is not None:
    _orjson_loads, _orjson_dumps, _SORTED = _orjson.loads, _orjson.dumps, _orjson.OPT_SORT_KEYS

    def loads(raw: bytes | str) -> Any:
        """orjson's parse; what it refuses that is valid JSON all the same (integers beyond
        64 bits, unpaired surrogate escapes) is parsed again by the standard library."""
        try:
            return _orjson_loads(raw)
        except ValueError:
            return _std_loads(raw)

    def canonical(obj: Any) -> bytes:
        try:
            return _orjson_dumps(obj, option=_SORTED)
        except TypeError:  # big integers, lone surrogates: only the fallback parser makes them
            return _std_canonical(obj)

else:  # pragma: no cover - exercised where orjson is not installed
    loads = _std_loads
    canonical = _std_canonical


def digest(obj: Any) -> bytes:
    """8 bytes identifying an example up to key order and whitespace (duplicate detection)."""
    return hashlib.blake2b(canonical(obj), digest_size=8).digest()


def parse_line(raw: bytes) -> tuple[Any, tuple[str, str] | None]:
    """(parsed JSON, None) or (None, (code, message)) for invalid UTF-8 / JSON."""
    try:
        return loads(raw), None
    except (ValueError, RecursionError) as exc:
        return None, _classify(raw, exc)


def _classify(raw: bytes, exc: BaseException) -> tuple[str, str]:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        sample = raw[bad.start : bad.start + 4]
        return "invalid_utf8", f"byte {bad.start + 1} of the line is not valid UTF-8 ({sample!r})"
    if isinstance(exc, RecursionError):
        return "invalid_json", "the JSON is nested too deeply"
    message = getattr(exc, "msg", None) or str(exc)
    column = getattr(exc, "colno", None)
    message = message.split(": line ")[0]
    return "invalid_json", f"not valid JSON: {message}" + (f" (column {column})" if column else "")


def is_blank(raw: bytes) -> bool:
    return not raw or raw.isspace()


def check_object(obj: Any, fmt: str, grader_paths: Sequence[ItemPath] = ()) -> tuple[Found, MessagesInfo | None]:
    """Findings for one parsed line checked as format `fmt`, and what its messages hold
    (SFT and RFT). Lines of another format get a single `format_mismatch`."""
    found: Found = []
    if type(obj) is not dict:
        found.append(("not_an_object", None, f"each line must be a JSON object, not {json_type(obj)}"))
        return found, None
    fam = family(obj)
    if fam != FAMILY[fmt]:
        if fam is None:
            key = MISSING_KEY_FIELD[fmt]
            found.append((MISSING_KEY_CODE[fmt], key, f"no '{key}' key: not an example in the {FORMAT_NAMES[fmt]} format"))
        else:
            shown = "SFT/RFT chat" if fam == "chat" else FORMAT_NAMES[fam]
            found.append(("format_mismatch", None, f"this line is in the {shown} format, but the file is checked as {FORMAT_NAMES[fmt]}"))
        return found, None
    if fmt == "sft":
        return found, check_sft(obj, found)
    if fmt == "rft":
        return found, check_rft(obj, found, grader_paths)
    if fmt == "dpo":
        check_dpo(obj, found)
    else:
        check_legacy(obj, found)
    return found, None


Rule = Callable[[dict[str, Any], Found, Any, Any], "MessagesInfo | None"]


def rule_for(fmt: str, grader_paths: Sequence[ItemPath] = ()) -> Rule:
    """`rule(obj, found, count, by_role)` for one format, for an object already known to be
    in its family. For SFT and RFT the messages' tokens are counted in the same pass (when
    `count` is not None) and returned in `info.tokens`; DPO and legacy return None."""
    if fmt == "sft":
        return check_sft
    if fmt == "rft":
        paths = tuple(grader_paths)
        return lambda obj, found, count=None, by_role=None: check_rft(obj, found, paths, count, by_role)
    if fmt == "dpo":
        return lambda obj, found, count=None, by_role=None: check_dpo(obj, found)
    return lambda obj, found, count=None, by_role=None: check_legacy(obj, found)


def check_line(raw: bytes, fmt: str, grader_paths: Sequence[ItemPath] = ()) -> Found:
    """Every finding for one line (without its trailing newline or with it) as format `fmt`."""
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if is_blank(raw):
        return [("blank_line", None, "the line is empty; remove it")]
    obj, bad = parse_line(raw)
    if bad is not None:
        return [(bad[0], None, bad[1])]
    return check_object(obj, fmt, grader_paths)[0]
