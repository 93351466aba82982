"""Colormaps: values in [0, 1] -> RGB in [0, 1], for depth and opacity pictures (no matplotlib).

* gray: the value itself in all three channels.
* viridis: the degree-6 polynomial fit of matplotlib's viridis by Matt Zucker ("mattz",
  shadertoy.com/view/WlfXRN, released as CC0 / public domain); it stays within about 0.013 of the
  256-entry table everywhere.
* turbo: 17 entries (every 16th, and the last) of Google's 256-entry Turbo table (Anton Mikhailov,
  2019, Apache License 2.0), interpolated linearly; within about 0.021 of the full table.

Values outside [0, 1] clamp to the ends; NaN counts as 0.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from trigan.core.errors import TriganError

COLORMAPS: Tuple[str, ...] = ("gray", "viridis", "turbo")

# Powers 0..6 of t, each row (r, g, b); CC0 (see the module docstring).
_VIRIDIS_POLY = np.array([
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
])

# Google's Turbo at table indices 0, 16, ..., 240 and 255 of 255 (Apache 2.0, see the docstring).
_TURBO_INDEX = np.array(list(range(0, 256, 16)) + [255], dtype=np.float64) / 255.0
_TURBO_TABLE = np.array([
    [0.18995, 0.07176, 0.23217], [0.25107, 0.25237, 0.63374], [0.27628, 0.42118, 0.89123],
    [0.25862, 0.57958, 0.99876], [0.15844, 0.73551, 0.92305], [0.09267, 0.86554, 0.76230],
    [0.19659, 0.94901, 0.59466], [0.42778, 0.99419, 0.38575], [0.64362, 0.98999, 0.23356],
    [0.80473, 0.92452, 0.20459], [0.93301, 0.81236, 0.22667], [0.99314, 0.67408, 0.20348],
    [0.98360, 0.49291, 0.12849], [0.92105, 0.31489, 0.05475], [0.81608, 0.18462, 0.01809],
    [0.66449, 0.08436, 0.00424], [0.47960, 0.01583, 0.01055],
])


def check_colormap(name) -> str:
    """The name of a known colormap, else a one-line TriganError naming it and the choices."""
    if name not in COLORMAPS:
        raise TriganError(f"colormap {name!r}: expected one of {', '.join(COLORMAPS)}")
    return str(name)


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """float32 [..., 3] RGB in [0, 1] of `values` ([...], meant to lie in [0, 1]) through the colormap."""
    check_colormap(name)
    t = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    if name == "gray":
        rgb = np.repeat(t[..., None], 3, axis=-1)
    elif name == "viridis":
        rgb = np.zeros(t.shape + (3,))
        for coefficients in _VIRIDIS_POLY[::-1]:          # Horner's rule, highest power first
            rgb = rgb * t[..., None] + coefficients
    else:
        rgb = np.stack([np.interp(t, _TURBO_INDEX, _TURBO_TABLE[:, c]) for c in range(3)], axis=-1)
    return rgb.clip(0.0, 1.0).astype(np.float32)
