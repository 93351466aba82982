"""Chunk sizes chosen by measurement (core.chunking): among the candidates, once per kind and device.

No test asserts on which candidate wins (timings are the machine's business); they check that the
choice is one of the candidates, is made once and then cached, and is redone after forget_chunks.
That results do not depend on the chunk is tested where chunks are used (tests/test_field.py,
tests/test_mesh.py, tests/test_accel.py).
"""

from __future__ import annotations

import pytest
import torch

from trigan.core.chunking import best_chunk, candidate_chunks, chosen_chunks, forget_chunks


@pytest.fixture(autouse=True)
def _fresh_cache():
    forget_chunks()
    yield
    forget_chunks()


def test_picks_one_of_the_candidates_and_caches_it():
    trials = []

    def trial(chunk):
        trials.append(chunk)
        return torch.ones(chunk).sum()

    chosen = best_chunk("test-work", "cpu", (64, 1024, 16), trial)
    assert chosen in (16, 64, 1024)
    assert sorted(set(trials)) == [16, 64, 1024]   # every candidate was timed
    count = len(trials)
    assert best_chunk("test-work", "cpu", (64, 1024, 16), trial) == chosen
    assert len(trials) == count                    # answered from the cache
    assert chosen_chunks()[("test-work", "cpu")] == chosen


def test_the_choice_is_per_kind_and_device():
    calls = []
    best_chunk("kind-a", "cpu", (8, 16), lambda c: calls.append(("a", c)))
    best_chunk("kind-b", "cpu", (8, 16), lambda c: calls.append(("b", c)))
    assert {k for k, _ in calls} == {"a", "b"}
    assert set(chosen_chunks()) == {("kind-a", "cpu"), ("kind-b", "cpu")}


def test_a_clear_winner_is_found():
    """A trial whose cost per point is far higher for one size (here: a fixed 30 ms per call, so
    per point the small chunk is 1000x worse) is not picked; robust to machine noise."""
    import time  # noqa: PLC0415

    def trial(chunk):
        if chunk == 8:
            time.sleep(0.03)

    assert best_chunk("slow-small", "cpu", (8, 8000), trial) == 8000


def test_single_candidate_needs_no_timing_and_bad_lists_are_refused():
    assert best_chunk("only", "cpu", (5,), lambda c: pytest.fail("timed a single candidate")) == 5
    with pytest.raises(ValueError):
        best_chunk("none", "cpu", (0, -3), lambda c: None)


def test_candidates_depend_on_the_device_kind():
    cpu = candidate_chunks("cpu")
    assert len(cpu) >= 2 and all(c > 0 for c in cpu)
    assert max(candidate_chunks("cuda")) > max(cpu)   # no CUDA needed: only the device's type is read
