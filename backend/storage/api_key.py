"""The per-install API key: made on first start, kept in `<data_dir>/api-key` (owner-only).

Every request to the backend must carry it (`Authorization: Bearer <key>`), so another
user of the machine, or a web page the user visits, cannot drive it. Whoever can read the
file is its owner; `tunedeck serve --print-key` shows it to them. The server never logs it.
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

from .private import open_private, private_dir, tighten, write_private

KEY_FILE = "api-key"
KEY_PREFIX = "tdk-"  # recognisable as a tunedeck key, as `sk-` is for OpenAI's
KEY_RANDOM_BYTES = 32


class ApiKeyFileError(ValueError):
    """The key file holds no usable key; the message names it and says what to do."""


def api_key_file(data_dir: Path | str) -> Path:
    """Where the backend of `data_dir` keeps its API key."""
    return Path(data_dir) / KEY_FILE


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def load_or_create_api_key(data_dir: Path | str) -> str:
    """The API key of the backend of `data_dir`, made (and the folder with it) on first use.

    Safe when several processes ask at once: the key is written whole to a private
    temporary file and linked into place, so everyone reads the one key that won."""
    path = api_key_file(private_dir(Path(data_dir)))
    key = _read(path)
    if key:
        return key
    candidate = new_api_key()
    temporary = path.with_name(f".{KEY_FILE}.{uuid.uuid4().hex}.tmp")
    try:
        with open_private(temporary, exclusive=True) as out:
            out.write(f"{candidate}\n".encode("ascii"))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails when another process made it first
        except FileExistsError:
            if not _read(path):  # an empty file someone left: replace it
                write_private(path, f"{candidate}\n".encode("ascii"))
    finally:
        temporary.unlink(missing_ok=True)
    key = _read(path)
    if not key:  # pragma: no cover - only if the file vanished between the two steps
        raise OSError(f"could not create the API key file {path}")
    return key


def _read(path: Path) -> str | None:
    """The key in `path`; None when there is no file or it is empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ApiKeyFileError(
            f"{path} does not hold an API key (it is not text); delete it to make a new one"
        ) from None
    if not text:
        return None
    if not text.isascii() or not text.isprintable() or any(ch.isspace() for ch in text):
        raise ApiKeyFileError(
            f"{path} does not hold a usable API key (one line of visible ASCII); delete it to make a new one"
        )
    tighten(path)  # a copy restored from a backup may have come back readable by others
    return text
