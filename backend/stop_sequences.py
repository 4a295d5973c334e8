"""Stop sequences in streamed answers, for every model the backend serves.

An answer is a list of pieces (what a stream sends, token by token); a stop sequence may span
several pieces, so cutting works on the joined text and gives back the pieces before the cut.
Pure Python: the transformer worker and the n-gram policy both use it.
"""

from __future__ import annotations

from typing import Sequence


def cut_pieces(pieces: Sequence[str], length: int) -> list[str]:
    """The pieces whose text is the first `length` characters of their concatenation."""
    kept: list[str] = []
    room = length
    for piece in pieces:
        if room <= 0:
            break
        kept.append(piece[:room])
        room -= len(kept[-1])
    return kept


def cut_at_stop(pieces: list[str], stop: Sequence[str]) -> bool:
    """Trim `pieces` in place before the first stop sequence in their text; True if cut."""
    text = "".join(pieces)
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not found:
        return False
    pieces[:] = [p for p in cut_pieces(pieces, min(found)) if p]
    return True
