"""What flows through one training step (training/loop.py), as typed records instead of dicts and
tuples: the fakes' random inputs (`FakeBatch`), a real batch as D consumes it (`RealBatch`), and the
rendered fakes (`RenderedFakes`).

Shapes: B is the global batch (training.batch_size), b this process's share of it, P D's patch
resolution, H x W the dataset's images, R the outline D's resolution. Every tensor is on the
training device unless its comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from trigan.core.cameras import Camera, PatchParams


@dataclass
class FakeBatch:
    """The random inputs of this process's fakes for one phase, drawn by `Trainer.fake_inputs` in a
    fixed order from the phase's generator (the order is part of the run's reproducibility)."""

    latents: torch.Tensor            # [b, z_dim] z
    labels: torch.Tensor             # [b, c_dim] one-hot classes (c_dim 0: a [b, 0] tensor)
    cameras: Camera                  # b cameras G renders from (3DGP: the camera generator's posterior)
    gpc_angles: torch.Tensor         # [b, 3] the poses G's mapping is conditioned on (GPC: some swapped)
    patches: PatchParams             # scale [b], offset [b, 2]: where each fake's patch lies
    sample_indices: List[int]        # b global sample indices: the fakes' noise and ray-jitter streams
    global_patch_scale: torch.Tensor  # [B] on the CPU: every process's patch scales (distillation's mean)
    prior_cameras: Optional[Camera] = None   # 3DGP: the b prior cameras the posterior was computed from
    depth_choices: Optional[torch.Tensor] = None  # [b] long: the depth adaptor candidate D sees ('random')


@dataclass
class RealBatch:
    """This process's share of a real batch, as D consumes it."""

    images: torch.Tensor             # [b, 3 or 4, H, W] in [-1, 1]; with depth, its 4th channel (real_depth_to_unit)
    labels: torch.Tensor             # [b, c_dim] one-hot classes (c_dim 0: a [b, 0] tensor)
    angles: torch.Tensor             # [b, 3] the images' poses: yaw, pitch, roll
    features: Optional[torch.Tensor] = None  # [b, feat_dim] distillation targets (training.distill)
    outline_masks: Optional[torch.Tensor] = None  # [b, 1, R, R] object masks for the outline D


@dataclass
class RenderedFakes:
    """What `Trainer.render_fakes` makes of a FakeBatch."""

    images: torch.Tensor             # [b, 3 or 4, P, P] what D sees: RGB, and the depth channel with depth
    opacity: torch.Tensor            # [b, 1, P, P] the patches' per-pixel opacity
    whole_opacity: Optional[torch.Tensor] = None  # [b, 1, R, R] the same fakes seen whole, for the outline D
