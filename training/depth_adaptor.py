"""3DGP's depth adaptor (3dgp.md 2.2-2.3): what D sees of a fake's rendered depth.

Rendered depth is a ray distance in world units; real depth maps come from a monocular estimator
and are only relative. The adaptor lets G bridge the two:

1. Normalise to about [-1, 1] between a learnable near plane and the far plane:
   near = ray_start + sigmoid(offset) * max_fraction * (ray_end - ray_start), offset starting at
   `near_plane_offset_bias` (-3: near is ~0.6% of the ray interval past ray_start);
   x = 2 (depth - (near + far) / 2) / (far - near).
2. A stack of convolutions (kernel 5, 64 channels, leaky ReLU), with one shared linear 1x1 head
   read out after every layer. The candidates are [x, head(h1), head(h2), head(h3)].
3. In training each fake shows D one candidate, index i drawn with probability start_p + i * slope
   (`selection_probabilities`); start_p moves from uniform to `selection_start_p`, so D sees the raw
   normalised depth less and less often. At evaluation the last candidate is used.

The adaptor is part of the generator side: G's optimiser trains it through the adversarial loss.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from torch import nn

from trigan.core.layers import Conv2dLayer
from trigan.training.config import DEPTH_OUT_STRATEGIES, DepthConfig


def normalize_depth(depth: torch.Tensor, near, far: float) -> torch.Tensor:
    """Map depth in [near, far] linearly onto [-1, 1] (near may be a tensor)."""
    return (depth - (near + far) / 2) / (far - near) * 2


def real_depth_to_unit(depth_16bit: torch.Tensor) -> torch.Tensor:
    """A depth map on the loader's 16-bit scale (0..65535) -> [-1, 1), as stored (no inversion)."""
    return depth_16bit / 65536 * 2 - 1


def selection_start_p(cfg: DepthConfig, num_candidates: int, kimg: float) -> float:
    """The first candidate's probability: 1/N at kimg 0, linearly to selection_start_p at anneal_kimg."""
    t = 1.0 if cfg.anneal_kimg <= 0 else min(max(kimg / cfg.anneal_kimg, 0.0), 1.0)
    uniform = 1.0 / num_candidates
    return uniform + (cfg.selection_start_p - uniform) * t


def selection_probabilities(cfg: DepthConfig, num_candidates: int, kimg: float) -> np.ndarray:
    """Probabilities of the candidates, rising linearly with the index and summing to 1:
    p_i = s + i * 2 (1 - N s) / (N (N - 1)) with s = selection_start_p(...)."""
    n = num_candidates
    s = selection_start_p(cfg, n, kimg)
    if n == 1:
        return np.ones(1)
    slope = 2 * (1 - n * s) / (n * (n - 1))
    return s + slope * np.arange(n, dtype=np.float64)


def sample_choices(probabilities: np.ndarray, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Candidate indices [batch] drawn by inverse CDF from `generator` (one uniform per sample)."""
    cdf = torch.as_tensor(np.cumsum(probabilities), dtype=torch.float64)
    u = torch.rand(batch, generator=generator, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp(max=len(probabilities) - 1)


class DepthAdaptor(nn.Module):
    """Rendered depth [B, 1, H, W] (world units) -> the depth channel D sees, about [-1, 1]."""

    def __init__(self, cfg: DepthConfig, ray_start: float, ray_end: float):
        super().__init__()
        if cfg.out_strategy not in DEPTH_OUT_STRATEGIES:
            raise ValueError(f"training.depth.out_strategy={cfg.out_strategy!r}: expected one of {', '.join(DEPTH_OUT_STRATEGIES)}")
        if not ray_end > ray_start:
            raise ValueError(f"the adaptor needs ray_end > ray_start, got [{ray_start}, {ray_end}]")
        self.cfg = cfg
        self.ray_start, self.ray_end = float(ray_start), float(ray_end)
        # One scalar for all samples (upstream accepts w but does not use it).
        self.near_plane_offset = nn.Parameter(torch.tensor(float(cfg.near_plane_offset_bias)))
        channels = [1] + [cfg.hidden_dim] * cfg.num_hidden_layers
        self.layers = nn.ModuleList(Conv2dLayer(channels[i], channels[i + 1], cfg.kernel_size, activation="lrelu")
                                    for i in range(cfg.num_hidden_layers))
        self.head = Conv2dLayer(cfg.hidden_dim, 1, 1)  # shared by every layer, linear
        self.num_candidates = cfg.num_hidden_layers + 1

    def near_plane(self) -> torch.Tensor:
        span = self.ray_end - self.ray_start
        return self.ray_start + torch.sigmoid(self.near_plane_offset) * self.cfg.near_plane_offset_max_fraction * span

    def candidates(self, depth: torch.Tensor) -> List[torch.Tensor]:
        """[normalised depth, head(h1), ..., head(hK)], each [B, 1, H, W]."""
        x = normalize_depth(depth, self.near_plane().to(depth.dtype), self.ray_end)
        out, h = [x], x
        for layer in self.layers:
            h = layer(h)
            out.append(self.head(h))
        return out

    def forward(self, depth: torch.Tensor, choices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`choices` [B] (candidate index per sample) applies to the 'random' strategy in training;
        without it (evaluation) 'random' uses the last candidate."""
        cands = self.candidates(depth)
        if self.cfg.out_strategy == "mean":
            return torch.stack(cands).mean(dim=0)
        if self.cfg.out_strategy == "last" or choices is None:
            return cands[-1]
        stacked = torch.stack(cands, dim=1)                      # [B, N, 1, H, W]
        index = choices.to(device=depth.device, dtype=torch.long)
        return stacked[torch.arange(depth.shape[0], device=depth.device), index]
