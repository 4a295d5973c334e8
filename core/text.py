"""Make untrusted text (dataset content, API messages, file names) safe for a terminal.

Rich and Textual drop a few control characters but pass ESC through, so an event message
holding an OSC 52 sequence could write the user's clipboard. Every control character
except newline and tab becomes a visible placeholder instead; so do bidi overrides, which
can make text read differently from what it is.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _placeholder(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures" block: ␛ for ESC
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def strip_controls(text: str) -> str:
    """`text` with every terminal control character replaced by a visible placeholder."""
    return _CONTROL.sub(_placeholder, text)
