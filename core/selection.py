"""Parsing the number lists users type: `--seeds 0-3,7`, `--classes 1-16` (inclusive ranges)."""

from __future__ import annotations

import re
from typing import List, Optional

from trigan.core.errors import TriganError

_ITEM = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")


def parse_int_list(text: str, what: str = "value", minimum: int = 0, maximum: Optional[int] = None) -> List[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]: comma-separated integers and inclusive a-b ranges, in the order
    given, duplicates dropped. Bad input raises TriganError naming the option and the item."""
    if text is None or not str(text).strip():
        raise TriganError(f"--{what}: expected numbers like 0-3,7")
    out: List[int] = []
    seen = set()   # membership in a set: a list would make 0-1000000 quadratic
    for item in str(text).split(","):
        m = _ITEM.match(item)
        if not m:
            raise TriganError(f"--{what} {text}: {item.strip()!r} is not a number or an a-b range (e.g. 0-3,7)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise TriganError(f"--{what} {text}: range {item.strip()} runs backwards")
        for v in (lo, hi):
            if v < minimum or (maximum is not None and v > maximum):
                bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
                raise TriganError(f"--{what} {text}: {v} is out of range (expected {bound})")
        if hi - lo > 1_000_000:
            raise TriganError(f"--{what} {text}: range {item.strip()} is too long")
        for v in range(lo, hi + 1):
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out
