"""Optional background model: NeRF++'s inverted-sphere parametrisation (EpiGRAF 3.4).

Everything outside the unit sphere is described by points (x', y', z', 1/r): the direction where the
ray crosses a sphere of radius r, mapped back onto the unit sphere, plus the inverse distance. A
small modulated MLP (INR-GAN style: Fourier features, then blocks of modulated linear layers whose
outputs are summed, 'skip' style) predicts raw rgb and density there. It uses its own ws rows after
the tri-plane decoder's.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from trigan.core.encoders import ScalarEncoder1d
from trigan.core.layers import FullyConnectedLayer, bias_act


class ModulatedLinear(nn.Module):
    """Linear layer whose input features are scaled by styles from w (optionally demodulated)."""

    def __init__(self, in_features: int, out_features: int, w_dim: int, activation: str = "lrelu",
                 demodulate: bool = True):
        super().__init__()
        self.activation, self.demodulate = activation, demodulate
        self.affine = FullyConnectedLayer(w_dim, in_features, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [B, in]
        weight = self.weight.unsqueeze(0) * styles.unsqueeze(1)  # [B, out, in]
        if self.demodulate:
            weight = weight * (weight.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
        else:
            weight = weight * self.weight_gain
        return bias_act(torch.bmm(x, weight.transpose(1, 2)), self.bias, self.activation, dim=2)


class BackgroundBlock(nn.Module):
    def __init__(self, in_features: int, hidden: int, w_dim: int, first: bool, multiplier: float, num_freqs: int):
        super().__init__()
        if first:
            self.scalar_enc = ScalarEncoder1d(multiplier, num_freqs)
            self.conv0 = None
        else:
            self.conv0 = ModulatedLinear(hidden, hidden, w_dim)
        self.conv1 = ModulatedLinear(in_features if first else hidden, hidden, w_dim)
        self.to_out = ModulatedLinear(hidden, 4, w_dim, activation="linear", demodulate=False)
        self.num_ws = 1 if first else 2


class SphereBackground(nn.Module):
    """The background network. `num_ws` rows of ws drive it (one per linear layer, the output layer
    sharing its row with the next block's first layer)."""

    def __init__(self, w_dim: int, num_blocks: int = 2, hidden_dim: int = 128, multiplier: float = 64.0,
                 num_freqs: int = 6, coord_dim: int = 4):
        super().__init__()
        in_features = coord_dim * num_freqs * 2
        self.blocks = nn.ModuleList([BackgroundBlock(in_features, hidden_dim, w_dim, i == 0, multiplier, num_freqs)
                                     for i in range(num_blocks)])
        self.num_ws = sum(b.num_ws for b in self.blocks) + 1

    def forward(self, coords: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """coords [B, N, 4] -> raw [B, N, 4] (rgb + density)."""
        x = self.blocks[0].scalar_enc(coords)
        out = None
        w_idx = 0
        for block in self.blocks:
            if block.conv0 is not None:
                x = block.conv0(x, ws[:, w_idx]); w_idx += 1
            x = block.conv1(x, ws[:, w_idx]); w_idx += 1
            y = block.to_out(x, ws[:, w_idx])
            out = y if out is None else out + y
        return out


class BoundBackground:
    """The background network bound to one batch of ws: callable like a field on (x', y', z', 1/r)."""

    def __init__(self, net: SphereBackground, ws: torch.Tensor):
        self.net, self.ws = net, ws

    def __call__(self, coords: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out = self.net(coords, self.ws)
        return out[..., :3], out[..., 3]

    def select(self, index) -> "BoundBackground":
        return BoundBackground(self.net, self.ws[index])


def inverted_sphere_points(origins: torch.Tensor, dirs: torch.Tensor, inv_depth: torch.Tensor) -> torch.Tensor:
    """NeRF++ outside points for rays starting inside the unit sphere.

    origins, dirs: [..., 3] (dirs unit length); inv_depth: [..., K] in (0, 1], 1/r of the sphere each
    sample lies on. Returns [..., K, 4]: the unit-sphere direction of the point where the ray meets
    the sphere of radius r, and 1/r.
    """
    # Closest point of the ray to the centre, and where the ray leaves the unit sphere.
    t_mid = -(dirs * origins).sum(-1, keepdim=True)
    p_mid = origins + t_mid * dirs
    p_mid_norm = p_mid.norm(dim=-1, keepdim=True).clamp(max=1.0 - 1e-6)
    t_exit = t_mid + torch.sqrt(1.0 - p_mid_norm ** 2)
    p_sphere = origins + t_exit * dirs
    # A point on the sphere of radius r lies in the plane (ray, centre); rotating p_sphere within it by
    # asin(|p_mid|) - asin(|p_mid| / r) brings it to that point's direction.
    axis = torch.nn.functional.normalize(torch.cross(origins, p_sphere, dim=-1), dim=-1)
    phi = torch.asin(p_mid_norm)
    theta = torch.asin(p_mid_norm * inv_depth)  # [..., K]
    angle = (phi - theta).unsqueeze(-1)
    p, k = p_sphere.unsqueeze(-2), axis.unsqueeze(-2)
    rotated = (p * angle.cos() + torch.cross(k.expand_as(p * angle), p.expand_as(p * angle), dim=-1) * angle.sin()
               + k * (k * p).sum(-1, keepdim=True) * (1 - angle.cos()))
    rotated = torch.nn.functional.normalize(rotated, dim=-1)
    return torch.cat([rotated, inv_depth.unsqueeze(-1)], dim=-1)
