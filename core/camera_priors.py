"""The intervals a camera prior draws from, read from its CameraConfig alone (no torch), so that a
model's description (`trigan info`, core/summary.py) needs no tensors.

core/cameras.py's samplers draw from these intervals.
"""

from __future__ import annotations

import math
from typing import Tuple

from trigan.core.config import CameraConfig

# Priors whose spread is itself a range (uniform: mean +/- std; spherical_uniform: that yaw and pitch
# over the whole sphere); others have ranges only where the config gives them explicitly.
RANGED_PRIORS = ("uniform", "spherical_uniform")


def _range(explicit, mean: float, half: float) -> Tuple[float, float]:
    return (float(explicit[0]), float(explicit[1])) if explicit is not None else (mean - half, mean + half)


def prior_yaw_range(cfg: CameraConfig) -> Tuple[float, float]:
    """The yaw interval the prior draws from: `yaw_range`, else mean +/- std (uniform's bounds,
    truncnorm's cut)."""
    return _range(cfg.yaw_range, cfg.yaw_mean, cfg.yaw_std)


def prior_pitch_range(cfg: CameraConfig) -> Tuple[float, float]:
    """The pitch interval the prior draws from: `pitch_range`, else [0, pi] for spherical_uniform,
    else mean +/- std."""
    if cfg.pitch_range is None and cfg.dist == "spherical_uniform":
        return 0.0, math.pi
    return _range(cfg.pitch_range, cfg.pitch_mean, cfg.pitch_std)


def prior_fov_range(cfg: CameraConfig) -> Tuple[float, float]:
    """The fov interval (degrees) the prior draws from: [fov_min, fov_max] when both are set, else
    the fixed fov."""
    if cfg.fov_min is not None and cfg.fov_max is not None:
        return float(cfg.fov_min), float(cfg.fov_max)
    return float(cfg.fov), float(cfg.fov)
