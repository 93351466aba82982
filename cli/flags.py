"""Bounded argparse types shared by the inference commands (render, mesh, metrics).

Each returns a converter for `add_argument(type=...)` that refuses, in one line naming the flag and
the allowed range, anything but a finite number inside the bounds: `--frames 1e9`, `--num-steps
1e8`, `--resolution 100000` and `--psi nan` stop at parsing instead of allocating gigabytes or
rendering NaN. The converters raise TriganError (argparse lets it through; cli/main.py prints it as
`trigan: error: ...`, exit 2), so a bad flag reads like every other user mistake.

The bounds are deliberately generous: what a workstation can render in reasonable time.
"""

from __future__ import annotations

import math
import re
from typing import Callable, List

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_CLASSES, MAX_SEED
from trigan.core.selection import parse_int_list

MAX_LIST_ITEMS = 10000       # seeds or classes in one command: each is at least one rendered latent
MAX_BATCH = 1024             # views or fakes rendered at once
MAX_PSI = 10.0               # truncation: 0.5..1 is usual; past a few the latent leaves the data

_RANGE_ITEM = re.compile(r"^\s*(-?\d{1,20})\s*(?:-\s*(-?\d{1,20})\s*)?$")


def int_flag(flag: str, lo: int, hi: int, unit: str = "") -> Callable[[str], int]:
    """An integer in [lo, hi]; `unit` ("pixels", ...) is named in the error."""
    what = f"an integer in {lo}..{hi}" + (f" {unit}" if unit else "")

    def convert(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise TriganError(f"{flag} {text}: expected {what}") from None
        if not lo <= value <= hi:
            raise TriganError(f"{flag} {text}: expected {what}")
        return value
    convert.__name__ = "integer"   # argparse names the type in its own messages
    return convert


def float_flag(flag: str, lo: float, hi: float, lo_open: bool = False, unit: str = "") -> Callable[[str], float]:
    """A finite number in [lo, hi] (or (lo, hi] with lo_open); NaN and infinities never pass."""
    what = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]" + (f" {unit}" if unit else "")

    def convert(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise TriganError(f"{flag} {text}: expected {what}") from None
        inside = (value > lo if lo_open else value >= lo) and value <= hi
        if not (math.isfinite(value) and inside):
            raise TriganError(f"{flag} {text}: expected {what}")
        return value
    convert.__name__ = "number"
    return convert


def int_list_flag(flag: str, lo: int, hi: int, max_items: int = MAX_LIST_ITEMS) -> Callable[[str], List[int]]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (core.selection.parse_int_list) with every value in [lo, hi] and at
    most `max_items` values in all, counted from the text before any list is built."""
    name = flag.lstrip("-")

    def convert(text: str) -> List[int]:
        count = 0
        for item in str(text).split(","):
            match = _RANGE_ITEM.match(item)
            if match:
                first = int(match.group(1))
                last = int(match.group(2)) if match.group(2) is not None else first
                count += max(0, last - first + 1)
            if count > max_items:
                raise TriganError(f"{flag} {text}: more than {max_items} values (expected at most {max_items})")
        return parse_int_list(text, name, lo, hi)   # syntax, order and range errors: one line each
    convert.__name__ = "list"
    return convert


# The flags as the commands use them.
seeds = int_list_flag("--seeds", 0, MAX_SEED)
classes = int_list_flag("--classes", 0, MAX_CLASSES - 1)
psi = float_flag("--psi", -MAX_PSI, MAX_PSI, unit="(0.7 is usual, 1 = no truncation)")
batch = int_flag("--batch", 1, MAX_BATCH)
