"""Resuming a run with more image channels into D than it was trained on: 3DGP's depth channel
(`discriminator.img_channels=4`) switched on in a run that so far trained D on RGB alone.

Only D's 1x1 from-image convolutions depend on the channel count. Their checkpointed weights are
widened with zeros for the new channels, so D starts out computing exactly what it computed before,
ignores depth, and learns to read it from the next step on. The convolutions use equalised learning
rates (the stored weight is multiplied by 1/sqrt(fan-in) when used), so the old weights are scaled up
by sqrt(new / old) to keep their effective value, and Adam's moments are rescaled to match."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

FROM_IMAGE = "fromrgb.weight"


def widen_image_inputs(D: nn.Module, d_state: dict, opt_state: Optional[dict]) -> Optional[Tuple[int, int]]:
    """Widen, in place, D's checkpointed state `d_state` and its Adam state `opt_state` (built over
    D.parameters() in one group) to D's own input channel count. Returns (old, new) channels, or None
    when the checkpoint already fits or differs in some other way (left to load_state_dict's error)."""
    params = list(D.named_parameters())
    targets = [(i, name, p) for i, (name, p) in enumerate(params) if name.endswith(FROM_IMAGE)]
    widths = set()
    for _, name, p in targets:
        old = d_state.get(name)
        if old is None or old.dim() != 4 or old.shape[0] != p.shape[0] or old.shape[2:] != p.shape[2:]:
            return None
        if old.shape[1] >= p.shape[1]:
            return None
        widths.add((old.shape[1], p.shape[1]))
    if len(widths) != 1:
        return None
    old_c, new_c = widths.pop()
    scale = math.sqrt(new_c / old_c)
    opt_params = opt_state["param_groups"][0]["params"] if opt_state else None
    for i, name, _ in targets:
        d_state[name] = _pad_channels(d_state[name] * scale, new_c)
        if opt_params is None or i >= len(opt_params):
            continue
        moments = opt_state["state"].get(opt_params[i])
        if not moments:
            continue
        # The gradient with respect to the stored weight shrinks by 1/scale with the larger fan-in.
        if "exp_avg" in moments:
            moments["exp_avg"] = _pad_channels(moments["exp_avg"] / scale, new_c)
        if "exp_avg_sq" in moments:
            moments["exp_avg_sq"] = _pad_channels(moments["exp_avg_sq"] / scale ** 2, new_c)
    return old_c, new_c


def _pad_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    out = weight.new_zeros(weight.shape[0], channels, *weight.shape[2:])
    out[:, :weight.shape[1]] = weight
    return out
