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

from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from trigan.core.chunking import best_chunk, candidate_chunks
from trigan.core.config import COLOR_ACTIVATIONS
from trigan.core.layers import LRELU_SLOPE, FullyConnectedLayer, bias_act, lrelu_gain

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
            out = torch.cat([self.colour(out[..., :3]), out[..., 3:]], dim=-1)
        return out

    def first_layer(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(weight [out, in], bias [out] or None) of the first layer's linear map, its gains applied
        and, for lrelu, the activation's gain folded in (lrelu(g x) = g lrelu(x) for g > 0): the
        decoder's output is decode_channels_first(weight @ features + bias[:, None])."""
        return _folded(self.model[0])

    def decode_channels_first(self, pre: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rgb [N, 3], raw sigma [N]) from first_layer's pre-activation laid out channels first,
        [hidden, N] (overwritten: it is a scratch buffer). Why channels first: the last layer has 4
        outputs, and [4, H] @ [H, N] is one wide matrix product where [N, H] @ [H, 4] is a narrow,
        slow one (about 2x on a CPU for the whole decoder)."""
        x = pre
        for k, layer in enumerate(self.model):
            if k > 0:
                weight, bias = _folded(layer)
                weight = weight.to(x.dtype)
                x = weight.matmul(x) if bias is None else torch.addmm(bias.to(x.dtype)[:, None], weight, x)
            if layer.activation == "lrelu":   # its gain is folded into the weights
                x = F.leaky_relu_(x, LRELU_SLOPE)
            elif layer.activation != "linear":
                x = bias_act(x, None, layer.activation, dim=0)
        return self.colour(x[:3]).t(), x[3]

    def colour(self, raw_rgb: torch.Tensor) -> torch.Tensor:
        """The colour activation (see the class) of the last layer's first three outputs."""
        if self.color_activation == "sigmoid":
            return (1 + 2 * COLOR_MARGIN) * (2 * torch.sigmoid(raw_rgb) - 1)
        return raw_rgb


def _folded(layer: FullyConnectedLayer) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A layer's (weight [out, in], bias) with its gains and, for lrelu, the activation's gain."""
    gain = lrelu_gain("lrelu") if layer.activation == "lrelu" else 1.0
    bias = None if layer.bias is None else layer.bias * (layer.bias_gain * gain)
    return layer.weight * (layer.weight_gain * gain), bias


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


def lattice_blocks(nx: int, ny: int, nz: int, chunk_points: int) -> Iterator[Tuple[int, int, int, int]]:
    """Blocks (x0, x1, y0, y1) of a lattice [nx, ny, nz] (z fastest) in flat order, each at most
    `chunk_points` points (at least one z-row): whole x-slabs when a slab fits, else y-ranges of one
    x. Each block is contiguous in the flat order, from (x0 * ny + y0) * nz."""
    rows = max(1, int(chunk_points) // max(1, nz))
    if rows >= ny:
        for x0 in range(0, nx, rows // ny):
            yield x0, min(x0 + rows // ny, nx), 0, ny
    else:
        for x0 in range(nx):
            for y0 in range(0, ny, rows):
                yield x0, x0 + 1, y0, min(y0 + rows, ny)


def lattice_points(xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, block: Tuple[int, int, int, int]
                   ) -> torch.Tensor:
    """World points [n, 3] of a block (x0, x1, y0, y1) of the lattice xs x ys x zs, in flat order."""
    x0, x1, y0, y1 = block
    return torch.stack(torch.meshgrid(xs[x0:x1], ys[y0:y1], zs, indexing="ij"), dim=-1).reshape(-1, 3)


def query_lattice(field, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, chunk_points: Optional[int] = None
                  ) -> Iterator[Tuple[int, int, torch.Tensor, torch.Tensor]]:
    """The field of one latent on the lattice xs x ys x zs (world coordinates, 1-D, on the field's
    device), in blocks of at most `chunk_points` points (at least one z-row): yields (start, stop,
    rgb [n, 3], raw sigma [n]) for the flat points start..stop-1 (flat index = (ix * ny + iy) * nz
    + iz, x slowest), equal to `field(points)` up to float rounding. A field with `lattice`
    (TriPlaneField) computes it from the lattice's 2-D projections; any other field is queried
    point by point. chunk_points None: chosen by measurement for this device (core.chunking)."""
    ny, nz = len(ys), len(zs)
    block_of = field.lattice(xs, ys, zs) if hasattr(field, "lattice") else None

    def evaluate(block):
        if block_of is not None:
            return block_of(block)
        rgb, sigma = field(lattice_points(xs, ys, zs, block)[None])
        return rgb[0], sigma[0]

    if chunk_points is None:
        def trial(chunk):  # one block of that size from this lattice, result discarded
            return evaluate(next(lattice_blocks(len(xs), ny, nz, chunk)))
        kind = "lattice" if block_of is not None else "lattice-points"
        chunk_points = best_chunk(kind, xs.device, candidate_chunks(xs.device), trial)
    for block in lattice_blocks(len(xs), ny, nz, chunk_points):
        rgb, sigma = evaluate(block)
        x0, x1, y0, y1 = block
        start = (x0 * ny + y0) * nz
        yield start, start + rgb.shape[0], rgb, sigma


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

    def lattice(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor
                ) -> Callable[[Tuple[int, int, int, int]], Tuple[torch.Tensor, torch.Tensor]]:
        """A function block -> (rgb [n, 3], raw sigma [n]) of a block (x0, x1, y0, y1) of the lattice
        xs x ys x zs (see query_lattice and lattice_blocks), for a field of one latent.

        Why it is cheap: on a lattice, plane 0 is read only at the nx * ny points (x, y), plane 1 at
        (x, z), plane 2 at (y, z), and the decoder's first layer is linear in the averaged feature,
        so each plane's lookups go through it once, here (3 n^2 lookups and small matmuls), and a
        point's pre-activation is the sum of three of those rows; only the rest of the decoder runs
        per point. The same sums as __call__ in another order: equal up to float rounding."""
        if self.batch_size != 1:
            raise ValueError(f"a lattice query needs a field of one latent, this one has {self.batch_size}")
        pre_xy, pre_xz, pre_yz = self._projected_planes(xs, ys, zs)
        limit = None if self.support_radius is None else self.support_radius ** 2

        def block_of(block: Tuple[int, int, int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
            x0, x1, y0, y1 = block
            # broadcast sums (no gathers), channels first: [hidden, sx, sy, nz]
            pre = pre_xy[:, x0:x1, y0:y1, None] + pre_xz[:, x0:x1, None, :]
            pre += pre_yz[:, None, y0:y1]
            rgb, sigma = self.mlp.decode_channels_first(pre.reshape(pre.shape[0], -1))
            if limit is not None:  # the same sum as __call__'s (x^2 + y^2) + z^2
                r2 = (xs[x0:x1, None, None] ** 2 + ys[None, y0:y1, None] ** 2) + zs[None, None] ** 2
                sigma = sigma.masked_fill(r2.reshape(-1) > limit, EMPTY_SIGMA)
            return rgb, sigma

        return block_of

    def _projected_planes(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor):
        """Each plane's share of the first layer's pre-activation on the lattice's projection,
        channels first: [H, nx, ny] (plane 0), [H, nx, nz] (plane 1), [H, ny, nz] (plane 2, bias added)."""
        weight, bias = self.mlp.first_layer()
        c = self.planes.shape[2]
        coords = [(t / self.cube_scale).to(self.planes.dtype) for t in (xs, ys, zs)]
        parts = []
        for k, (u, v) in enumerate(PLANE_AXES):
            # grid_sample's grid[..., 0] indexes the width: the plane's first coordinate
            grid = torch.stack(torch.meshgrid(coords[u], coords[v], indexing="ij"), dim=-1)  # [nu, nv, 2]
            feat = F.grid_sample(self.planes[0, k][None], grid[None], mode="bilinear", padding_mode="zeros",
                                 align_corners=True)[0]  # [C, nu, nv]
            part = weight.to(feat.dtype).matmul(feat.reshape(c, -1)) / 3
            parts.append(part.reshape(-1, len(coords[u]), len(coords[v])))
        if bias is not None:
            parts[2] = parts[2] + bias.to(parts[2].dtype)[:, None, None]
        return parts

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
