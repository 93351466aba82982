"""core/colormaps.py against independent reference values: points of matplotlib's 256-entry viridis
table (CC0) and of Google's 256-entry Turbo table (Apache 2.0), copied here as the answer; the
implementation uses a polynomial fit (viridis) and a 17-entry subset (turbo), so the points checked
include ones that are not in that subset."""

from __future__ import annotations

import numpy as np
import pytest

from trigan.core.colormaps import COLORMAPS, apply_colormap, check_colormap
from trigan.core.errors import TriganError

# table index (of 0..255) -> RGB of the reference table
VIRIDIS = {0: (0.267004, 0.004874, 0.329415), 64: (0.229739, 0.322361, 0.545706),
           128: (0.127568, 0.566949, 0.550556), 192: (0.369214, 0.788888, 0.382914),
           255: (0.993248, 0.906157, 0.143936)}
TURBO = {0: (0.18995, 0.07176, 0.23217), 8: (0.22500, 0.16354, 0.45096), 40: (0.27543, 0.50115, 0.96594),
         100: (0.24797, 0.96423, 0.54303), 181: (0.99675, 0.62093, 0.18297), 200: (0.95801, 0.39958, 0.08831),
         255: (0.47960, 0.01583, 0.01055)}


# The tolerances are the approximations' own largest errors against the tables (viridis' polynomial
# fit: 0.013; turbo's linear interpolation between every 16th entry: 0.021), rounded up: 4 to 6 of
# 255 levels, invisible side by side.
@pytest.mark.parametrize("name, table, tolerance", [("viridis", VIRIDIS, 0.015), ("turbo", TURBO, 0.025)])
def test_colormaps_match_their_reference_tables(name, table, tolerance):
    index = np.array(sorted(table))
    got = apply_colormap(index / 255.0, name)
    want = np.array([table[i] for i in index])
    assert got.shape == (len(index), 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=tolerance)


def test_gray_is_the_value_and_out_of_range_values_clamp():
    values = np.array([[-0.5, 0.0, 0.25], [0.5, 1.0, 7.0]])
    got = apply_colormap(values, "gray")
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got[..., 0], [[0, 0, 0.25], [0.5, 1, 1]], atol=1e-7)
    assert np.all(got[..., 0] == got[..., 1]) and np.all(got[..., 1] == got[..., 2])
    for name in COLORMAPS:     # clamping: beyond the ends are the ends; NaN is the low end
        ends = apply_colormap(np.array([-3.0, 0.0, 1.0, 9.0, np.nan]), name)
        np.testing.assert_array_equal(ends[0], ends[1])
        np.testing.assert_array_equal(ends[3], ends[2])
        np.testing.assert_array_equal(ends[4], ends[1])


def test_viridis_gets_lighter_along_the_map():
    # viridis is perceptually ordered: its luminance rises monotonically from one end to the other
    rgb = apply_colormap(np.linspace(0, 1, 101), "viridis")
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)


def test_an_unknown_colormap_is_a_one_line_error():
    with pytest.raises(TriganError, match=r"colormap 'jet': expected one of gray, viridis, turbo"):
        check_colormap("jet")
    with pytest.raises(TriganError):
        apply_colormap(np.zeros(3), "magma")
