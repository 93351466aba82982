"""The preview path: a per-latent baked volume, ray-marched from a hull mesh with OpenGL in milliseconds.

A volume render through the tri-planes costs millions of field queries per frame; orbiting needs a
frame in ~30 ms on two CPU cores. Everything a camera sees comes from the field of one latent, which
is fixed while the camera moves, so it is baked once:

- set-up, once per latent: the colour and activated density on a 97^3 lattice over the scene box
  (the exact path's occupancy grid probes exactly these points and keeps both), uploaded as a 3-D
  texture; a closed hull mesh by marching cubes at a tenth of the calibrated surface level (where
  the volume renderer's opacity passes one half), so that it encloses the soft rims too; both go to
  an offscreen GL context (`core.gl_offscreen`; Mesa llvmpipe on machines without a GPU);
- also once per latent: coarser copies of the volume (levels of 2, 4 and 8 lattice spacings: mean
  density, density-weighted colour) and, per lattice point, the density's spread around it;
- per frame: the hull is rasterised with the camera's exact projection (one ray through each pixel
  centre, as the volume renderer shoots) into each pixel's nearest and farthest hull distance, and
  each covered pixel integrates the texture along its ray from two lattice spacings before the hull,
  one spacing per step, or 2^k spacings on level k where the density around the step is smooth
  enough (a haze; longer steps also 16 steps into the density), front to back until it is opaque or
  past the hull's farthest surface. What the ray does not gather goes to the backdrop: what a ray that misses everything
  gets in the plain path, i.e. its last sample at ray_end (opaque unless the model has a background
  network or an open far end) and the background network or white background behind. The backdrop
  is smooth, so it is evaluated on a coarse grid of rays (`backdrop_resolution`^2 field queries)
  and upsampled.

The result is a `RenderOutput` like the other paths give (rgb in [-1, 1], depth = sum of weight x
distance, opacity, normals), so every render mode works; the backdrop is composited by the same rules
(core.compositing). Where it differs from the exact path: the
field is trilinear between lattice points (detail finer than 1/96 of the box is smoothed), density
outside the hull (below a tenth of the surface level) is left out, a smooth haze is integrated with
longer steps on the coarse levels (and a haze deeper than 16 spacings with longer steps), and the
normal is the gradient of the trilinear density where the ray gathers the most. docs/rendering_speed.md has the
measured PSNR against the exact path.

    preview = field_renderer("preview", field, options)   # per latent, < 1 s on the demo model (CPU)
    out = preview.render(camera, 256, normals=True)       # ~20 ms at 256^2 on two CPU cores

(`core.rendering.field_renderer`; `preview_unavailable()` says why it cannot run here.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from trigan.core.accel import OccupancyGrid
from trigan.core.cameras import Camera, PatchParams
from trigan.core.compositing import (
    activate_density,
    add_backdrop,
    background_along_rays,
    field_normals,
    has_background,
    last_interval,
)
from trigan.core.gl_offscreen import HullMarcher, gl_unavailable
from trigan.core.mesh import DensityVolume, NoSurfaceError, marching_cubes
from trigan.core.renderer import RenderCancelled, RenderOptions, RenderOutput


@dataclass(frozen=True)
class PreviewOptions:
    """Knobs of the preview (defaults chosen by measurement, see docs/rendering_speed.md)."""

    # Density level of the surface, per world unit. "auto": calibrated per latent (`calibrate`): where
    # a mesh's silhouette matches where the volume renderer's opacity passes one half.
    level: Union[str, float] = "auto"
    # The hull is the mesh at this fraction of the level: low enough to enclose the soft rims a
    # grazing ray sees (at 1 the 114-kimg demo scored 17-27 dB, at 0.1 29-39 dB), high enough to
    # leave the empty space out.
    hull_fraction: float = 0.1
    # Steps per ray, from `start_back` lattice spacings before the hull: of one spacing until the ray
    # has met some density and for `double_every` steps after, then each run of `double_every` twice
    # as long as the one before. Opaque models stop within the first few; 64 steps reach 240 spacings
    # (2 world units for the demo) into a haze, which 64 even steps would cut short.
    march_steps: int = 64
    double_every: int = 16
    start_back: float = 2.0
    # The hull is only a bound on where to march: it is made from the densities max-pooled onto every
    # `hull_stride`-th lattice point (so it still encloses everything above its level), which keeps
    # hazy models' hulls from running to 100k+ faces that every pass of every frame rasterises.
    hull_stride: int = 2
    backdrop_resolution: int = 32     # backdrop rays per axis (field queries per frame: this squared)
    # A smooth haze is crossed in long steps on coarser copies of the volume (levels of 2^k texels:
    # mean density, density-weighted colour): a step takes level k where the spread of the density
    # around it (largest - smallest within its reach) times its length is at most `coarse_tolerance`,
    # the optical depth that the blur may move. 0.1 let a semi-transparent ball's edge blur by 0.06
    # in rgb; 0.05 keeps it at the full-resolution march's 0.013 (tests/test_preview.py), and crosses
    # the random-weights fog 20% faster than 0.03 (50.1 dB against 51.4 dB).
    coarse_levels: int = 3
    coarse_tolerance: float = 0.05


def preview_unavailable() -> Optional[str]:
    """None when the preview path can run here, else the reason (no OpenGL via EGL, ...)."""
    reason = gl_unavailable()
    return None if reason is None else f"preview needs headless OpenGL (EGL): {reason}"


class BakedPreview:
    """One latent's baked volume and hull on the GPU (or llvmpipe), rendered from any camera: the
    "preview" path of core.rendering (`stats`: what the set-up built and how long it took)."""

    path = "preview"

    def __init__(self, field, options: RenderOptions, marcher: Optional[HullMarcher], spacing: float,
                 preview: PreviewOptions, stats: dict):
        self.field, self.options, self.preview = field, options, preview
        self.spacing, self.stats = spacing, stats
        self.marcher = marcher
        self.last_stats: dict = {}

    # ----------------------------------------------------------------------------------------------
    def render(self, cameras: Camera, resolution: Union[int, Tuple[int, int]],
               options: Optional[RenderOptions] = None, *, patch: Optional[PatchParams] = None,
               should_cancel: Optional[Callable[[], bool]] = None,
               progress: Optional[Callable[[int, int], None]] = None, **option_overrides) -> RenderOutput:
        """RenderOutput of the cameras' views ([B, C, H, W], B = len(cameras)); one latent for all
        (the core.rendering.FieldRenderer contract; `should_cancel` and `progress` act between views).

        `options` (and overrides): the render options of this view when they differ from the build's,
        e.g. the ray interval moved with the camera's distance (zoom), normals or the white
        background; the baked volume stays the build's (its density shift and activation)."""
        if patch is not None:
            raise ValueError("the preview path renders whole images only (no patch)")
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        opts = options if options is not None else self.options
        if option_overrides:
            opts = replace(opts, **option_overrides)
        outs = []
        for i in range(len(cameras)):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled()
            outs.append(self._render_one(cameras[i], h, w, opts, opts.normals))
            if progress is not None:
                progress(i + 1, len(cameras))
        self.last_stats = {"views": len(outs)}
        cat = lambda key: torch.cat([getattr(o, key) for o in outs])
        return RenderOutput(rgb=cat("rgb"), depth=cat("depth"), opacity=cat("opacity"),
                            normals=cat("normals") if opts.normals else None)

    def _render_one(self, camera: Camera, h: int, w: int, opts: RenderOptions, normals: bool) -> RenderOutput:
        camera = camera.to("cpu", torch.float32)
        if self.marcher is not None:
            color, geometry = self.marcher.draw(world_to_clip(camera, h, w, opts), camera.origins()[0].numpy(),
                                                (opts.ray_start, opts.ray_end), (h, w), self.spacing,
                                                self.preview.start_back * self.spacing, self.preview.march_steps,
                                                normals=normals, double_every=self.preview.double_every)
        else:  # nothing reaches the hull's level anywhere: only the backdrop
            color, geometry = np.zeros((h, w, 4), np.float32), np.zeros((h, w, 4), np.float32)
        color = torch.from_numpy(color.copy()).permute(2, 0, 1)[None]        # [1, 4, H, W]
        geometry = torch.from_numpy(geometry.copy()).permute(2, 0, 1)[None]  # [1, 4, H, W]
        marched = color[:, 3:4]                      # opacity gathered by the march
        through = 1 - marched                        # what the backdrop contributes
        back_rgb, back_depth, back_opacity, back_normal = self._backdrop(camera, h, w, opts, normals)
        # the march's colour and depth are sums of weight x value, as in the volume renderer
        rgb = color[:, :3] + through * back_rgb
        depth = geometry[:, 3:4] + through * back_depth
        opacity = marched + through * back_opacity
        out = RenderOutput(rgb=rgb, depth=depth, opacity=opacity)
        if normals:
            # the march's normal comes scaled by its opacity and the last sample's by its own, so they
            # add up as the volume renderer's weighted normals do
            out.normals = F.normalize(geometry[:, :3] + through * back_normal, dim=1)
        return out

    def _backdrop(self, camera: Camera, h: int, w: int, opts: RenderOptions, normals: bool = False):
        """rgb, depth, opacity [1, C, H, W] of what lies behind the march (the ray's last sample at
        ray_end, then the background), from a coarse grid of rays; with `normals`, also the last
        sample's normal x its opacity [1, 3, H, W], as the volume renderer weights it."""
        n = max(2, int(self.preview.backdrop_resolution))
        origins, dirs = camera.rays((n, n))
        o, d = origins[0], dirs[0]
        dev = getattr(self.field, "device", None) or torch.device("cpu")
        has_bg = has_background(self.field)
        with torch.inference_mode():
            tail = (o + d * opts.ray_end).to(dev)
            rgb, sigma = self.field(tail[None])
            rgb, sigma = rgb.reshape(-1, 3).float().cpu(), sigma.reshape(-1).float().cpu()
            delta = last_interval(has_bg, opts)
            alpha = 1 - torch.exp(-activate_density(sigma, opts) * delta)
            if opts.last_back:   # the last sample takes what the ray has left
                alpha = torch.ones_like(alpha)
            background = None
            if has_bg:
                ids = torch.arange(n * n)
                bg_rgb, bg_opacity = background_along_rays(self.field.background, o.to(dev), d.to(dev), ids.to(dev),
                                                           opts, 1)
                background = (bg_rgb.reshape(-1, 3).float().cpu(), bg_opacity.reshape(-1, 1).float().cpu())
            # the tail sample is the only foreground here: what it lets through is 1 - its alpha
            out_rgb = add_backdrop(alpha[:, None] * rgb, (1 - alpha)[:, None], alpha[:, None], background,
                                   opts.white_background)
        columns = [out_rgb, (alpha * opts.ray_end)[:, None], alpha[:, None]]
        if normals:
            columns.append(alpha[:, None] * field_normals(self.field, tail[:, None], 1)[:, 0].float().cpu())
        maps = torch.cat(columns, dim=1)                       # [n*n, 5 or 8]
        maps = maps.T.reshape(1, -1, n, n)
        # The coarse rays sit at pixel centres -1..1 like the fine ones: align_corners matches them up.
        maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=True)
        return maps[:, :3], maps[:, 3:4], maps[:, 4:5], (maps[:, 5:8] if normals else None)

    def release(self) -> None:
        if self.marcher is not None:
            self.marcher.release()
            self.marcher = None


# --------------------------------------------------------------------------------------------------
# Set-up

def world_to_clip(camera: Camera, h: int, w: int, opts: RenderOptions) -> np.ndarray:
    """[4, 4] OpenGL matrix whose pixel centres coincide with `Camera.rays`: rays put the first and
    last pixel centres at image-plane x = -1 and +1 (focal 1 / tan(fov / 2)), so x maps to NDC by
    (w - 1) / w (the NDC of pixel i's centre is -1 + (2i + 1) / w); likewise y with h."""
    c2w = camera.cam2world()[0].double()
    view = torch.linalg.inv(c2w)
    focal = 1.0 / float(torch.tan(torch.deg2rad(camera.fov[0].double()) / 2))
    near, far = 0.05 * opts.ray_start, 2.0 * opts.ray_end + 1.0
    proj = torch.zeros(4, 4, dtype=torch.float64)
    proj[0, 0] = focal * (w - 1) / w
    proj[1, 1] = focal * (h - 1) / h
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -2 * far * near / (far - near)
    proj[3, 2] = -1.0
    return (proj @ view).numpy()


def calibrate(density: torch.Tensor, spacing: float) -> Tuple[float, float]:
    """(level, agreement) for a density volume [n, n, n] with `spacing` between samples.

    The rays are the grid's own lines along the three axes, both ways (3 n^2 of them, no
    interpolation needed). For each: the largest density on it (a mesh at level L is hit iff it
    exceeds L) and its opacity by the volume renderer's quadrature.
    - level: the L that makes "hit" agree with "opacity > 1/2" on the most rays; grazing rays through
      a soft edge turn opaque at lower densities than a frontal surface's, which is why neither a fixed
      level nor Otsu's split of the densities fits every model;
    - agreement: the share of rays that are opaque or hit on which the two agree (1 for crisp
      surfaces; low for a fog or a semi-transparent model, which no surface alone could draw; the
      preview marches the volume behind its hull, so it is reported, not acted on).
    """
    d = density.double()
    rays = torch.cat([d.permute(1, 2, 0).reshape(-1, d.shape[0]), d.permute(0, 2, 1).reshape(-1, d.shape[1]),
                      d.reshape(-1, d.shape[2])])
    rays = torch.cat([rays, rays.flip(1)])                     # [R, n], front to back
    peak = rays.max(dim=1).values
    alpha = 1 - torch.exp(-rays * spacing)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
    weights = alpha * trans
    opacity = weights.sum(1)
    opaque = opacity > 0.5
    # Sweep the level over the sorted peaks: with L just below peak k, rays 0..k-1 (in descending
    # order) count as hit. Mismatches = opaque rays not hit + hit rays not opaque.
    order = torch.argsort(peak, descending=True)
    op = opaque[order].double()
    hit_not_opaque = torch.cumsum(1 - op, 0)
    opaque_not_hit = op.sum() - torch.cumsum(op, 0)
    errors = hit_not_opaque + opaque_not_hit
    sorted_peak = peak[order]
    # a level can only fall between distinct peaks: inside a run of equal peaks, no cut exists
    tied = torch.cat([sorted_peak[1:] == sorted_peak[:-1], torch.tensor([False])])
    errors = errors.masked_fill(tied, float("inf"))
    if not bool(opaque.any()):
        return float("inf"), 1.0
    k = int(torch.argmin(errors))
    upper = float(sorted_peak[k])
    lower = float(sorted_peak[k + 1]) if k + 1 < len(sorted_peak) else 0.0
    level = 0.5 * (upper + lower) if upper > lower else upper * 0.999
    agreement = 1.0 - float(errors[k]) / float(((peak > level) | opaque).sum())
    return level, agreement


def build_preview(field, options: RenderOptions, grid: Optional[OccupancyGrid] = None,
                  preview: PreviewOptions = PreviewOptions()) -> BakedPreview:
    """The per-latent set-up (core.rendering.field_renderer("preview", ...) calls it). `grid`: the
    exact path's occupancy grid of this field (its probed densities and colours are the baked
    volume); built here when not given or built for another density shift or activation."""
    reason = preview_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if getattr(field, "batch_size", 1) != 1:
        raise ValueError("a preview is built for one latent; pass field.select(i)")
    opts = options
    stats = {}
    t0 = time.perf_counter()
    if grid is None or grid.density_key != (opts.density_shift, opts.density_activation):
        grid = OccupancyGrid(field, opts)
        stats["grid_ms"] = (time.perf_counter() - t0) * 1e3
    lo, hi = grid.lo, grid.hi        # the box its probes span
    density = grid.density[0]
    volume = DensityVolume(density.numpy(), (tuple(lo.tolist()), tuple(hi.tolist())))
    spacing = float(volume.spacing.min())
    level, agreement = calibrate(density, spacing)
    if preview.level != "auto":
        level = float(preview.level)
    # nothing opaque along any lattice line (a thin haze): the hull still encloses its densest parts
    peak = float(density.max())
    hull_level = preview.hull_fraction * (level if np.isfinite(level) else peak)
    # below the occupancy threshold the exact path skips space too, so no hull is needed there
    hull_level = max(hull_level, grid.accel.threshold)
    marcher = None
    try:
        verts, faces = marching_cubes(_coarse_hull_volume(volume, preview.hull_stride), hull_level, close=True)
        baked = torch.cat([grid.color[0].float(), density[..., None]], dim=-1).numpy()
        coarse, peaks = coarse_levels(baked, preview.coarse_levels)
        marcher = HullMarcher(verts, faces, baked, (lo.numpy(), hi.numpy()),
                              coarse=coarse, peaks=peaks, coarse_tolerance=preview.coarse_tolerance)
        stats.update(vertices=len(verts), faces=len(faces))
    except (NoSurfaceError, ValueError):  # nothing reaches the hull's level (or an empty field): backdrop only
        stats.update(vertices=0, faces=0)
    stats.update(level=level, hull_level=hull_level, agreement=agreement,
                 setup_ms=(time.perf_counter() - t0) * 1e3)
    return BakedPreview(field, opts, marcher, spacing, preview, stats)


def coarse_levels(baked: np.ndarray, levels: int) -> Tuple[list, Optional[np.ndarray]]:
    """The coarser copies of a baked volume [n, n, n, 4] (rgb, density) that the march crosses a thin
    haze on, and the peaks that say where it may: ([volume_k [m, m, m, 4] with m = n >> k, for k = 1..
    `levels` (at most 3, while m >= 2)], peaks [n, n, n, 4] or None without levels).

    Texel j of level k covers the level-0 texels that OpenGL's texture coordinates put under it
    (adaptive pooling: bins [floor(j n / m), ceil((j + 1) n / m))), and holds their mean density and
    density-weighted mean colour (mean(density x colour) / mean(density); the plain mean where it is
    empty): in a thin haze the integral of density x colour over a step is what the image gathers.
    Channel k - 1 of the peaks is, per level-0 texel, the spread of the density (largest -
    smallest) over the level-k cells within three cells of the texel's own (along each axis): a
    level-k step (2^k texels) from there, and the level-k texels its trilinear reads draw on, stay
    inside them; where the spread is small the coarse level differs little from the full one along
    the step."""
    vol = torch.from_numpy(np.ascontiguousarray(baked, np.float32)).permute(3, 0, 1, 2)[None]   # [1, 4, n, n, n]
    n = vol.shape[-1]
    density = vol[:, 3:4].clamp(min=0)
    weighted = torch.cat([vol[:, :3] * density, density, vol[:, :3]], dim=1)
    chain, peaks = [], []
    for k in range(1, min(levels, 3) + 1):
        m = n >> k
        if m < 2:
            break
        mean = F.adaptive_avg_pool3d(weighted, m)
        mean_density = mean[:, 3:4]
        color = torch.where(mean_density > 1e-12, mean[:, :3] / mean_density.clamp(min=1e-12), mean[:, 4:7])
        chain.append(torch.cat([color, mean_density], dim=1)[0].permute(1, 2, 3, 0).contiguous().numpy())
        peaks.append(_spread_near_cells(density, m))
    if not chain:
        return [], None
    peaks += [torch.zeros_like(peaks[0])] * (4 - len(peaks))
    return chain, torch.stack(peaks, dim=-1).numpy()


def _spread_near_cells(density: torch.Tensor, m: int, reach: int = 3) -> torch.Tensor:
    """[n, n, n]: per texel of `density` [1, 1, n, n, n], the largest minus the smallest density over
    the m^3 cells (adaptive pooling) within `reach` cells of its own, along each axis. Pooled to cells
    first, so that the window costs (2 reach + 1) per cell, not per texel (a texel-wide window of
    17 texels took seconds on the 97^3 lattice)."""
    n = density.shape[-1]
    window = 2 * reach + 1
    spread = _box_max(F.adaptive_max_pool3d(density, m), window) + _box_max(F.adaptive_max_pool3d(-density, m), window)
    cell = (torch.arange(n) * m) // n          # the cell whose bin starts at or before each texel
    return spread[0, 0][cell][:, cell][:, :, cell]


def _box_max(volume: torch.Tensor, size: int) -> torch.Tensor:
    """The largest value within a cube of `size` (odd) cells around each cell of [1, 1, d, h, w]
    (one axis at a time: three 1-D windows instead of one cube), the edges padded."""
    for axis in range(3):
        kernel, pad = [1, 1, 1], [0, 0, 0]
        kernel[axis], pad[axis] = size, size // 2
        volume = F.max_pool3d(volume, tuple(kernel), stride=1, padding=tuple(pad))
    return volume


def _coarse_hull_volume(volume: DensityVolume, stride: int) -> DensityVolume:
    """The density max-pooled over each (2 stride - 1)^3 neighbourhood of every stride-th lattice
    point (both faces of the box kept when the lattice divides evenly): a level set of it encloses
    the full-resolution one."""
    if stride <= 1 or (volume.resolution - 1) % stride:  # the far faces would fall between pooled points
        return volume
    d = torch.from_numpy(np.ascontiguousarray(volume.density, np.float32))[None, None]
    pooled = F.max_pool3d(d, kernel_size=2 * stride - 1, stride=stride, padding=stride - 1)[0, 0]
    return DensityVolume(pooled.numpy(), volume.bounds)
