"""`strip_controls`: every terminal control and invisible formatting character shows as a
placeholder, whichever of its paths (Latin-1 bytes, the BMP pattern, the astral one) runs."""

from __future__ import annotations

import random

import pytest

from tunedeck.core.text import strip_controls

SHOWN = [
    ("\x1b", "␛"),
    ("\x07", "␇"),
    ("\x7f", "\\x7f"),
    ("\x9b", "\\x9b"),
    ("\u061c", "\\u061c"),
    ("\u180e", "\\u180e"),
    *((chr(c), f"\\u{c:04x}") for c in range(0x200B, 0x2010)),
    ("\u2028", "\\u2028"),
    *((chr(c), f"\\u{c:04x}") for c in range(0x202A, 0x202F)),
    *((chr(c), f"\\u{c:04x}") for c in range(0x2060, 0x2065)),
    *((chr(c), f"\\u{c:04x}") for c in range(0x2066, 0x206A)),
    ("\udcff", "\\udcff"),
    ("\ufeff", "\\ufeff"),
    ("\ufffa", "\\ufffa"),
    ("\U000e0041", "\\U000e0041"),
]


@pytest.mark.parametrize("char, placeholder", SHOWN, ids=[f"U+{ord(c):04X}" for c, _ in SHOWN])
@pytest.mark.parametrize("around", ["ascii {} text", "é {} Latin-1", "日本 {} BMP", "😀 {} astral"])
def test_each_hidden_character_shows_as_a_placeholder(char, placeholder, around):
    assert strip_controls(around.format(char)) == around.format(placeholder)


def test_text_without_them_comes_back_unchanged():
    for text in ("plain\ttext\nlines", "é ñ ß \xa0", "日本語 — “quotes”", "😀 \U0001f9ea emoji", ""):
        assert strip_controls(text) == text


def test_random_text_keeps_no_hidden_character():
    import re

    hidden = "".join(c for c, _ in SHOWN) + "\x00\x1f\x85\u2029\ufff9\ufffb\U000e0001\U000e007f"
    every = re.compile(f"[{re.escape(hidden)}]")
    alphabet = [*"abc \t\n\xe9\xa0日😀", *hidden]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
        shown = strip_controls(text)
        assert not every.search(shown), repr(text)
        assert strip_controls(shown) == shown  # a placeholder is never shown again
