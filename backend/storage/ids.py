"""Object ids shaped like the API's: a prefix and random base62 characters."""

from __future__ import annotations

import hashlib
import secrets
import string

BASE62 = string.ascii_letters + string.digits


def random_text(length: int) -> str:
    """`length` random base62 characters (one draw of random bits: an event id per step is cheap)."""
    value = secrets.randbits(8 * length)
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(chars)


def new_job_id() -> str:
    return "ftjob-" + random_text(24)


def new_file_id() -> str:
    return "file-" + random_text(22)


def new_event_id() -> str:
    return "ftevent-" + random_text(24)


def new_checkpoint_id() -> str:
    return "ftckpt_" + random_text(24)


def new_model_tag() -> str:
    """The 8 characters that end a fine-tuned model name."""
    return random_text(8)


def model_tag_for(job_id: str) -> str:
    """The 8 characters that end a job's fine-tuned model name, fixed by its id, so a
    checkpoint published mid-run (on pause) already carries the final model's name."""
    value = int.from_bytes(hashlib.sha256(job_id.encode("utf-8")).digest()[:8], "big")
    chars = []
    for _ in range(8):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(chars)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def new_seed() -> int:
    return secrets.randbelow(2**31)
