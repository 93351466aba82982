"""tests/run_suite.py: the one exit status of its two pytest runs (GUI tests, and the rest)."""

from __future__ import annotations

import pytest

from run_suite import NO_TESTS_COLLECTED, combined_status


@pytest.mark.parametrize("rest, gui, expected", [
    (0, 0, 0),
    (1, 0, 1), (0, 1, 1), (2, 1, 2),                        # a failure wins; the rest's first
    (NO_TESTS_COLLECTED, 0, 0), (0, NO_TESTS_COLLECTED, 0),  # one side had nothing to run
    (NO_TESTS_COLLECTED, NO_TESTS_COLLECTED, NO_TESTS_COLLECTED),
    (NO_TESTS_COLLECTED, 1, 1),
])
def test_the_suite_passes_only_when_both_runs_pass(rest, gui, expected):
    assert combined_status(rest, gui) == expected
