"""Value checks for request fields, shared by the job body and tunedeck's options."""

from __future__ import annotations

import math
from typing import Any, Callable


def integer_between(low: int, high: int) -> Callable[[Any], bool]:
    """An int (never a bool) in [low, high]."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def number_between(low: float, high: float, *, low_open: bool = True) -> Callable[[Any], bool]:
    """A finite int or float (never a bool) in (low, high], or [low, high] with `low_open=False`."""

    def check(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return (low < v if low_open else low <= v) and v <= high

    return check
