"""Chunk sizes chosen by measurement, once per process and device.

How many points a field query should take at once depends on the device (a CPU's caches want tens
of thousands, a GPU wants millions to fill it) and on the work per point, so no constant is right
everywhere: on a 2-core CPU, 2^19-point chunks of the mesh grid were slower than 2^15-point ones.
`best_chunk` times each candidate on the first real call of a kind of work on a device, keeps the
fastest and answers from that cache afterwards. Only speed depends on the choice: every caller's
results are the same for any chunk size (up to float rounding).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Sequence, Tuple

import torch

_CHOSEN: Dict[Tuple[str, str], int] = {}
_LOCK = threading.Lock()


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timing covers it (CPU work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def candidate_chunks(device) -> Tuple[int, ...]:
    """Chunk sizes (points) worth trying on a device: tens of thousands fit a CPU's caches, an
    accelerator needs about a million to be busy (bounded so that a chunk's activations stay a
    few hundred MB for the decoders trigan has)."""
    device = torch.device(device if device is not None else "cpu")
    return (1 << 13, 1 << 15, 1 << 17) if device.type == "cpu" else (1 << 16, 1 << 18, 1 << 20)


def best_chunk(kind: str, device, candidates: Sequence[int], trial: Callable[[int], object],
               repeats: int = 2) -> int:
    """The candidate chunk size for which `trial(chunk)` takes the least time per point, measured
    on the first call for (kind, device) and cached for the process.

    kind: names the work (e.g. "lattice", "points"); trial(chunk): does one representative chunk of
    that work with `chunk` points (its result is discarded). Each candidate runs once to warm up,
    then `repeats` times; the fastest run per point counts (the least disturbed by other load).
    """
    candidates = sorted({int(c) for c in candidates if int(c) > 0})
    if not candidates:
        raise ValueError("best_chunk needs at least one positive candidate")
    device = torch.device(device if device is not None else "cpu")
    key = (kind, str(device))
    with _LOCK:
        if key in _CHOSEN:
            return _CHOSEN[key]
    if len(candidates) == 1:
        chosen = candidates[0]
    else:
        per_point = {}
        for chunk in candidates:
            trial(chunk)   # warm-up: allocations, first-call overheads
            best = float("inf")
            for _ in range(max(1, repeats)):
                _synchronize(device)
                start = time.perf_counter()
                trial(chunk)
                _synchronize(device)
                best = min(best, time.perf_counter() - start)
            per_point[chunk] = best / chunk
        chosen = min(candidates, key=lambda c: per_point[c])
    with _LOCK:
        return _CHOSEN.setdefault(key, chosen)


def chosen_chunks() -> Dict[Tuple[str, str], int]:
    """What best_chunk has chosen so far in this process, {(kind, device): chunk} (for reports)."""
    with _LOCK:
        return dict(_CHOSEN)


def forget_chunks() -> None:
    """Drop the cached choices (tests; a benchmark that wants to measure the choice again)."""
    with _LOCK:
        _CHOSEN.clear()
