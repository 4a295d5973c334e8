"""Make untrusted text (dataset content, API messages, file names) safe for a terminal.

Rich and Textual drop a few control characters but pass ESC through, so an event message
holding an OSC 52 sequence could write the user's clipboard. Every control character
except newline and tab becomes a visible placeholder instead. So do the characters that
make text read differently from what it is without showing themselves: bidi embeddings,
overrides, isolates and marks (a name can read backwards), zero-width characters and
invisible tag characters (text can hide inside other text).
"""

from __future__ import annotations

import re

_LATIN1_SHOWN = "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but tab and newline, DEL, C1
_BMP_SHOWN = (
    _LATIN1_SHOWN
    + "\u061c"  # Arabic letter mark
    + "\u180e"  # Mongolian vowel separator
    + "\u200b-\u200f"  # zero-width space, non-joiner, joiner; LRM, RLM
    + "\u2028\u2029"  # line and paragraph separators: invisible, and break a line only sometimes
    + "\u202a-\u202e"  # bidi embeddings and overrides
    + "\u2060-\u2064"  # word joiner, invisible operators
    + "\u2066-\u2069"  # bidi isolates
    + "\ud800-\udfff"  # lone surrogates: a file name's undecodable bytes (no terminal can print them)
    + "\ufeff"  # zero-width no-break space (BOM)
    + "\ufff9-\ufffb"  # interlinear annotation marks
)
_ASTRAL_SHOWN = "\U000e0000-\U000e007f"  # tag characters: invisible ASCII riding along with text

# One pattern per width of text: a character class with an astral range costs about half as
# much again per character scanned, and most text cannot need it.
_LATIN1_CONTROL = re.compile(f"[{_LATIN1_SHOWN}]")
_BMP_CONTROL = re.compile(f"[{_BMP_SHOWN}]")
_CONTROL = re.compile(f"[{_BMP_SHOWN}{_ASTRAL_SHOWN}]")
_LATIN1_PASSING = bytes([0x09, 0x0A, *range(0x20, 0x7F), *range(0xA0, 0x100)])


def _placeholder(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures" block: ␛ for ESC
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def strip_controls(text: str) -> str:
    """`text` with every terminal control and invisible formatting character replaced by a
    visible placeholder (`␛` for ESC, `\\x9b` for CSI, `\\u202e` for a right-to-left override)."""
    # Most text (ASCII JSON, Latin-1 prose) fits in Latin-1, where only C0, DEL and C1 can
    # need a placeholder: its bytes are checked in one C pass, several times faster than a
    # regex's scan. Wider text stops the encoder at its first wide character.
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        # Tag characters start with the byte F3 in UTF-8, as only planes 12 to 15 do: one
        # byte search rules them out (a false hit only costs the slower pattern).
        tags = b"\xf3" in text.encode("utf-8", "surrogatepass")
        return (_CONTROL if tags else _BMP_CONTROL).sub(_placeholder, text)
    if not raw.translate(None, _LATIN1_PASSING):
        return text
    return _LATIN1_CONTROL.sub(_placeholder, text)
