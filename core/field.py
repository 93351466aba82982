"""The tri-plane field: the central object of trigan.

A `TriPlaneField` is what one latent becomes once the synthesis network has run: its tri-planes plus
the decoder MLP (and, when the model has one, the background network bound to its ws). It is a
callable `points -> (rgb, sigma)` that the renderer, the mesh exporter, the video exporter and the
preview baker all query; nothing re-runs the synthesis network per frame or per chunk.

Lookup convention (EpiGRAF): world points are divided by `cube_scale`; plane 0 is read at (x, y),
plane 1 at (x, z), plane 2 at (y, z), the first coordinate indexing the width; bilinear,
`align_corners=True`, zero outside; the three features are averaged and decoded to rgb (raw, or
squashed into [-1, 1] when model.triplane.color_activation is 'sigmoid') and raw density (before
shift and activation).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from trigan.core.config import COLOR_ACTIVATIONS
from trigan.core.layers import FullyConnectedLayer

# For each plane, the two point coordinates that index its (width, height).
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


# Raw density outside a field's support: every density activation (softplus, relu, with any shift a
# model uses) makes it 0, and unlike -inf it keeps gradients finite.
EMPTY_SIGMA = -1e4
COLOR_MARGIN = 0.001   # EG3D's: a sigmoid colour reaches the ends of [-1, 1] at finite inputs


class TriPlaneMLP(nn.Module):
    """feat -> hidden (lrelu) -> ... -> 4 = rgb (3) + raw density (1). Names: model.0, model.1...
    The rgb is raw (color_activation 'none', EpiGRAF) or (1 + 2 m) (2 sigmoid(x) - 1) with
    m = COLOR_MARGIN ('sigmoid', EG3D's squashing, in trigan's [-1, 1] colour range)."""

    def __init__(self, feat_dim: int, hidden_dim: int = 64, num_layers: int = 2, out_dim: int = 4,
                 color_activation: str = "none"):
        super().__init__()
        if num_layers < 1:
            raise ValueError("the tri-plane MLP needs at least one layer")
        if color_activation not in COLOR_ACTIVATIONS:
            raise ValueError(f"unknown model.triplane.color_activation {color_activation!r} "
                             f"(expected one of {', '.join(COLOR_ACTIVATIONS)})")
        self.color_activation = color_activation
        dims = [feat_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.model = nn.Sequential(*[
            FullyConnectedLayer(dims[i], dims[i + 1], activation="lrelu" if i < num_layers - 1 else "linear")
            for i in range(num_layers)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.model(features)
        if self.color_activation == "sigmoid":
            rgb = (1 + 2 * COLOR_MARGIN) * (2 * torch.sigmoid(out[..., :3]) - 1)
            out = torch.cat([rgb, out[..., 3:]], dim=-1)
        return out


def sample_triplanes(planes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Average of the bilinear lookups of the three planes.

    planes: [B, 3, C, R, R]; coords: [B, N, 3] in [-1, 1] (already divided by cube_scale).
    Returns [B, N, C].
    """
    b, _, c, r, _ = planes.shape
    grids = torch.stack([coords[..., list(axes)] for axes in PLANE_AXES], dim=1)  # [B, 3, N, 2]
    sampled = F.grid_sample(planes.reshape(b * 3, c, r, r), grids.reshape(b * 3, 1, -1, 2).to(planes.dtype),
                            mode="bilinear", padding_mode="zeros", align_corners=True)  # [B*3, C, 1, N]
    return sampled.reshape(b, 3, c, -1).mean(dim=1).transpose(1, 2)


class TriPlaneField:
    """Field of one batch of latents. Call with points [B, N, 3] (or [N, 3] when B == 1).

    Returns rgb [B, N, 3] (see TriPlaneMLP) and raw density [B, N] (matching the input's leading shape).
    `background`, when present, maps (ray origins, ray directions) to background samples; the
    renderer owns how it is composited.
    """

    def __init__(self, planes: torch.Tensor, mlp: TriPlaneMLP, cube_scale: float,
                 background: Optional[Callable] = None, support_radius: Optional[float] = None):
        if planes.ndim == 4:  # [B, 3C, R, R] as the decoder writes it
            planes = planes.reshape(planes.shape[0], 3, planes.shape[1] // 3, planes.shape[2], planes.shape[3])
        self.planes = planes
        self.mlp = mlp
        self.cube_scale = float(cube_scale)
        self.background = background
        # beyond it the raw density is EMPTY_SIGMA (model.camera.support_radius)
        self.support_radius = None if support_radius is None else float(support_radius)

    @property
    def batch_size(self) -> int:
        return self.planes.shape[0]

    @property
    def device(self) -> torch.device:
        return self.planes.device

    @property
    def bounds(self) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
        """The axis-aligned scene box in world units; the field is zero (no features) outside."""
        s = self.cube_scale
        return (-s, -s, -s), (s, s, s)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return sample_triplanes(self.planes, points / self.cube_scale)

    def __call__(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        single = points.ndim == 2
        if single:
            if self.batch_size != 1:
                raise ValueError(f"points [N, 3] need a field of one latent, this one has {self.batch_size}")
            points = points.unsqueeze(0)
        out = self.mlp(self.features(points))
        rgb, sigma = out[..., :3], out[..., 3]
        if self.support_radius is not None:
            outside = (points * points).sum(dim=-1) > self.support_radius ** 2
            sigma = sigma.masked_fill(outside, EMPTY_SIGMA)
        return (rgb[0], sigma[0]) if single else (rgb, sigma)

    def differentiable(self) -> "TriPlaneField":
        """This field with planes autograd can use (normals need d sigma / d point). Planes made under
        `torch.inference_mode` (as viewers and exporters make them) cannot be saved for backward, so
        such planes are copied once (a few MB) and the copy is kept; others are used as they are."""
        if not self.planes.is_inference():
            return self
        cached = getattr(self, "_differentiable", None)
        if cached is None:
            with torch.inference_mode(False):
                cached = TriPlaneField(self.planes.clone(), self.mlp, self.cube_scale, self.background,
                                       self.support_radius)
            self._differentiable = cached
        return cached

    def select(self, index) -> "TriPlaneField":
        """The field of a subset of the batch (e.g. one sample of a grid); an int keeps the batch axis."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        bg = None if self.background is None else self.background.select(index)
        return TriPlaneField(self.planes[index], self.mlp, self.cube_scale, bg, self.support_radius)
