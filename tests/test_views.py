"""core.views: what a seed is shown with."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trigan.core.errors import TriganError
from trigan.core.views import view_class


def test_the_class_a_seed_is_shown_with():
    """view_class, shared by the viewer's scene, its export jobs and the interpolation."""
    conditional, unconditional = SimpleNamespace(c_dim=4), SimpleNamespace(c_dim=0)
    assert view_class(conditional, None) == 0 and view_class(conditional, 3) == 3
    assert view_class(unconditional, None) is None and view_class(unconditional, 7) is None
    for bad in (4, -1):
        with pytest.raises(TriganError, match=r"^class -?\d is out of range: this model has classes 0\.\.3$"):
            view_class(conditional, bad)
