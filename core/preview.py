"""The preview path: a per-latent coloured surface mesh, rasterised with OpenGL in milliseconds.

A volume render costs millions of field queries per frame; orbiting needs a frame in ~30 ms on two CPU
cores. In EpiGRAF-style models colour does not depend on the view direction and trained densities are
nearly solid, so what a camera sees is close to a coloured surface:

- set-up, once per latent: the activated density on a grid over the scene box (reused from the exact
  path's occupancy grid, which probes the same box), marching cubes at a surface level, vertex
  colour and alpha composited along the inward normal as the volume renderer would, vertex normals
  from the mesh; uploaded once to an offscreen GL context
  (`core.gl_offscreen`; Mesa llvmpipe on machines without a GPU);
- per frame: one rasterisation with the camera's exact projection (one sample at each pixel centre,
  as the volume renderer shoots one ray there), then the backdrop: what a ray that misses the surface
  gets in the plain path, i.e. its last sample at ray_end (opaque unless the model has a background
  network or an open far end) and the background network or white background behind. The backdrop
  is smooth, so it is evaluated on a coarse grid of rays (`backdrop_resolution`^2 field queries)
  and upsampled.

The result is a `RenderOutput` like `G.render` gives (rgb in [-1, 1], depth = ray distance weighted
by opacity, opacity, normals), so every render mode works. Where it differs from the exact path:
semi-transparent regions (fog, hair) are only as transparent as they are along the surface normal,
or vanish below the level; silhouettes are hard; the surface is placed at a density level, not where
the opacity integral reaches one half. docs/rendering_speed.md has the
measured PSNR against the exact path.

    preview = build_preview(G, field)                 # per latent, < 1 s on the demo model (CPU)
    out = preview.render(camera, 256, normals=True)   # ~10 ms at 256^2 on two CPU cores
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .accel import OccupancyGrid, _support_box
from .cameras import Camera
from .gl_offscreen import MeshRasterizer, gl_unavailable
from .mesh import DensityVolume, NoSurfaceError, marching_cubes
from .renderer import RenderOptions, RenderOutput, _query, _render_background, activate_density, last_interval


@dataclass(frozen=True)
class PreviewOptions:
    """Knobs of the preview (defaults chosen by measurement, see docs/rendering_speed.md)."""

    # Density level of the surface, per world unit. "auto": calibrated per latent (`calibrate`) so
    # that the mesh's silhouette matches where the volume renderer's opacity passes one half.
    level: Union[str, float] = "auto"
    # How far behind the surface (world units) the depth map is placed; "auto": calibrated per latent
    # to where the volume renderer's weights lie on average (its depth is their mean).
    depth_inset: Union[str, float] = "auto"
    # Samples per vertex (+1) along its inward normal, composited as the volume renderer does, give the
    # vertex's colour and alpha: a soft or semi-transparent surface shows the mix the renderer shows
    # (and lets the backdrop through), where one point's colour would be the darker core's.
    color_samples: int = 16
    backdrop_resolution: int = 32     # backdrop rays per axis (field queries per frame: this squared)
    probe_chunk: int = 1 << 18


def preview_unavailable() -> Optional[str]:
    """None when the preview path can run here, else the reason (no OpenGL via EGL, ...)."""
    reason = gl_unavailable()
    return None if reason is None else f"preview needs headless OpenGL (EGL): {reason}"


class MeshPreview:
    """One latent's preview mesh on the GPU (or llvmpipe), rendered from any camera."""

    def __init__(self, field, options: RenderOptions, mesh: Optional[Tuple[np.ndarray, ...]],
                 preview: PreviewOptions, stats: dict):
        self.field, self.options, self.preview = field, options, preview
        self.stats = stats
        self.raster = MeshRasterizer(*mesh) if mesh is not None else None

    # ----------------------------------------------------------------------------------------------
    def render(self, camera: Camera, resolution: Union[int, Tuple[int, int]],
               options: Optional[RenderOptions] = None, normals: bool = False,
               white_background: Optional[bool] = None) -> RenderOutput:
        """RenderOutput of the cameras' views ([B, C, H, W], B = len(camera)); one latent for all.

        `options`: the render options of this view when they differ from the build's, e.g. the ray
        interval moved with the camera's distance (zoom); the mesh itself stays the build's (its
        density shift and activation)."""
        h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
        opts = options if options is not None else self.options
        if white_background is not None:
            opts = replace(opts, white_background=white_background)
        outs = [self._render_one(camera[i], h, w, opts, normals) for i in range(len(camera))]
        cat = lambda key: torch.cat([getattr(o, key) for o in outs])  # noqa: E731
        return RenderOutput(rgb=cat("rgb"), depth=cat("depth"), opacity=cat("opacity"),
                            normals=cat("normals") if normals else None)

    def _render_one(self, camera: Camera, h: int, w: int, opts: RenderOptions, normals: bool) -> RenderOutput:
        camera = camera.to("cpu", torch.float32)
        if self.raster is not None:
            color, geometry = self.raster.draw(world_to_clip(camera, h, w, opts), camera.origins()[0].numpy(),
                                               (opts.ray_start, opts.ray_end), (h, w))
        else:  # nothing above the level anywhere: only the backdrop
            color, geometry = np.zeros((h, w, 4), np.float32), np.zeros((h, w, 4), np.float32)
        color = torch.from_numpy(color.copy()).permute(2, 0, 1)[None]        # [1, 4, H, W]
        geometry = torch.from_numpy(geometry.copy()).permute(2, 0, 1)[None]  # [1, 4, H, W]
        cover = color[:, 3:4]
        back_rgb, back_depth, back_opacity = self._backdrop(camera, h, w, opts)
        rgb = color[:, :3] * cover + (1 - cover) * back_rgb
        # the renderer's depth is the mean of its weights, which lie about `inset` behind the surface
        depth = (geometry[:, 3:4] + self.stats.get("inset", 0.0)) * cover + (1 - cover) * back_depth
        opacity = cover + (1 - cover) * back_opacity
        out = RenderOutput(rgb=rgb, depth=depth, opacity=opacity)
        if normals:
            # Where the ray misses, the plain path's normal is that of its last sample; the backdrop
            # pixels are shown through their (low) opacity only, so the view direction stands in.
            _, dirs = camera.rays((h, w))
            view = -dirs[0].T.reshape(1, 3, h, w)
            out.normals = F.normalize(geometry[:, :3] * cover + (1 - cover) * view, dim=1)
        return out

    def _backdrop(self, camera: Camera, h: int, w: int, opts: RenderOptions):
        """rgb, depth, opacity [1, C, H, W] of rays that miss the surface, from a coarse grid of rays."""
        n = max(2, int(self.preview.backdrop_resolution))
        origins, dirs = camera.rays((n, n))
        o, d = origins[0], dirs[0]
        dev = getattr(self.field, "device", None) or torch.device("cpu")
        has_bg = getattr(self.field, "background", None) is not None
        with torch.inference_mode():
            tail = (o + d * opts.ray_end).to(dev)
            rgb, sigma = self.field(tail[None])
            rgb, sigma = rgb.reshape(-1, 3).float().cpu(), sigma.reshape(-1).float().cpu()
            delta = last_interval(has_bg, opts)
            alpha = 1 - torch.exp(-activate_density(sigma, opts) * delta)
            out_rgb = alpha[:, None] * rgb
            if has_bg:
                ids = torch.arange(n * n)
                bg_rgb, bg_opacity = _render_background(self.field.background, o.to(dev), d.to(dev), ids.to(dev),
                                                        opts, 1)
                bg_rgb, bg_opacity = bg_rgb.reshape(-1, 3).float().cpu(), bg_opacity.reshape(-1).float().cpu()
                out_rgb = out_rgb + (1 - alpha)[:, None] * bg_rgb
                if opts.white_background:
                    out_rgb = out_rgb + (1 - alpha)[:, None] * (1 - bg_opacity)[:, None]
            elif opts.white_background:
                out_rgb = out_rgb + (1 - alpha)[:, None]
        maps = torch.cat([out_rgb, (alpha * opts.ray_end)[:, None], alpha[:, None]], dim=1)  # [n*n, 5]
        maps = maps.T.reshape(1, 5, n, n)
        # The coarse rays sit at pixel centres -1..1 like the fine ones: align_corners matches them up.
        maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=True)
        return maps[:, :3], maps[:, 3:4], maps[:, 4:5]

    def release(self) -> None:
        if self.raster is not None:
            self.raster.release()
            self.raster = None


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


def calibrate(density: torch.Tensor, spacing: float) -> Tuple[float, float, float]:
    """(level, inset, agreement) for a density volume [n, n, n] with `spacing` between samples.

    The rays are the grid's own lines along the three axes, both ways (3 n^2 of them, no
    interpolation needed). For each: the largest density on it (a mesh at level L is hit iff it
    exceeds L), its opacity by the volume renderer's quadrature, and where its colour weights lie.
    - level: the L that makes "hit" agree with "opacity > 1/2" on the most rays; grazing rays through
      a soft edge turn opaque at lower densities than a frontal surface's, which is why neither a fixed
      level nor Otsu's split of the densities fits every model;
    - inset: the median distance, over rays that hit, from where the density first reaches the level
      to the mean depth of the renderer's weights;
    - agreement: the share of rays that are opaque or hit on which the two agree (1 for crisp
      surfaces; low for a fog, where no surface can look like the volume render).
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
        return float("inf"), 0.0, 1.0
    k = int(torch.argmin(errors))
    upper = float(sorted_peak[k])
    lower = float(sorted_peak[k + 1]) if k + 1 < len(sorted_peak) else 0.0
    level = 0.5 * (upper + lower) if upper > lower else upper * 0.999
    agreement = 1.0 - float(errors[k]) / float(((peak > level) | opaque).sum())
    # inset: first crossing of the level (linear between samples) versus the weights' mean depth
    hit = (peak > level) & (opacity > 0.9)
    if not bool(hit.any()):
        return level, 0.0, agreement
    r, w = rays[hit], weights[hit]
    idx = torch.arange(r.shape[1], dtype=torch.float64)
    first = torch.argmax((r > level).double(), dim=1)
    before = r.gather(1, (first - 1).clamp(min=0)[:, None])[:, 0]
    at = r.gather(1, first[:, None])[:, 0]
    frac = torch.where(first > 0, (level - before) / (at - before).clamp(min=1e-12), torch.zeros_like(at))
    surface = (first.double() - 1 + frac.clamp(0, 1)) * spacing
    mean_depth = (w * idx).sum(1) / w.sum(1) * spacing
    inset = float(torch.median(mean_depth - surface).clamp(min=0.0))
    return level, min(inset, 4 * spacing), agreement


def build_preview(G, field, grid: Optional[OccupancyGrid] = None, options: Optional[RenderOptions] = None,
                  preview: PreviewOptions = PreviewOptions()) -> MeshPreview:
    """The per-latent set-up. `grid`: the exact path's occupancy grid of this field (its probed
    densities are reused); built here when not given. `G` gives the render options (or pass them)."""
    import time
    reason = preview_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if getattr(field, "batch_size", 1) != 1:
        raise ValueError("a preview is built for one latent; pass field.select(i)")
    opts = options if options is not None else G.render_options()
    stats = {}
    t0 = time.perf_counter()
    if grid is None or grid.density_key != (opts.density_shift, opts.density_activation):
        grid = OccupancyGrid(field, opts)
        stats["grid_ms"] = (time.perf_counter() - t0) * 1e3
    lo, hi = _support_box(field)
    volume = DensityVolume(grid.density[0].numpy(), (tuple(lo.tolist()), tuple(hi.tolist())))
    spacing = float(volume.spacing.min())
    level, inset, agreement = calibrate(grid.density[0], spacing)
    if preview.level != "auto":
        level = float(preview.level)
    if preview.depth_inset != "auto":
        inset = float(preview.depth_inset)
    mesh = None
    try:
        verts, faces = marching_cubes(volume, level, close=True)
        mesh = _coloured(field, verts, faces, opts, spacing, (lo, hi), preview)
        stats.update(vertices=len(verts), faces=len(faces))
    except (NoSurfaceError, ValueError):  # nothing reaches the level (or an empty field): backdrop only
        stats.update(vertices=0, faces=0)
    stats.update(level=level, inset=inset, agreement=agreement, setup_ms=(time.perf_counter() - t0) * 1e3)
    return MeshPreview(field, opts, mesh, preview, stats)


def _coloured(field, verts: np.ndarray, faces: np.ndarray, opts: RenderOptions, spacing: float,
              box: Tuple[torch.Tensor, torch.Tensor], preview: PreviewOptions):
    """Vertex rgba: the volume renderer's quadrature along the inward normal, from two grid spacings
    outside the surface (the soft rim in front of the level) to where the line leaves the scene box.
    Half the samples lie within 8 spacings of the surface, where opaque models put all their weight;
    the rest cover the way through, for objects the eye sees into. Colour = weighted mean, alpha =
    total weight."""
    normals = _vertex_normals(verts, faces)
    dev = getattr(field, "device", None) or torch.device("cpu")
    v, d = torch.from_numpy(verts).float(), -torch.from_numpy(normals).float()
    start = v - d * 2 * spacing
    lo, hi = (b.float().cpu() for b in box)
    safe = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    exit_t = torch.maximum((lo - start) / safe, (hi - start) / safe).min(dim=1).values
    near_t = 8 * spacing
    exit_t = exit_t.clamp(min=2 * near_t)
    k = max(2, int(preview.color_samples)) // 2
    u = torch.linspace(0, 1, k + 1)
    # k samples in [0, near_t), k + 1 from near_t to the exit (both ends)
    t = torch.cat([(u[:-1] * near_t).expand(len(v), k), near_t + u[None] * (exit_t[:, None] - near_t)], dim=1)
    # each sample stands for the half-intervals on either side of it (the two ends for one half)
    gaps = t[:, 1:] - t[:, :-1]
    delta = 0.5 * (torch.cat([gaps, torch.zeros_like(gaps[:, :1])], dim=1)
                   + torch.cat([torch.zeros_like(gaps[:, :1]), gaps], dim=1))
    # Front to back in rounds of 8 samples; a vertex stops once its transmittance is below 1e-3, so an
    # opaque model pays for the first round or two, not for the way through.
    n = len(v)
    trans = torch.ones(n)
    color_sum = torch.zeros(n, 3)
    alive = torch.arange(n)
    with torch.inference_mode():
        for first in range(0, t.shape[1], 8):
            rgb, sigma = [], []
            for ids in alive.split(max(1, preview.probe_chunk // 8)):
                c, s_, _ = _query(field, start[ids].to(dev), d[ids].to(dev), t[ids, first:first + 8].to(dev), 1)
                rgb.append(c.float().cpu())
                sigma.append(s_.float().cpu())
            rgb, sigma = torch.cat(rgb), torch.cat(sigma)
            alpha = 1 - torch.exp(-activate_density(sigma, opts) * delta[alive, first:first + 8])
            before = trans[alive, None] * torch.cumprod(
                torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
            color_sum[alive] += ((alpha * before)[..., None] * rgb).sum(dim=1)
            trans[alive] = before[:, -1] * (1 - alpha[:, -1])
            alive = alive[trans[alive] > 1e-3]
            if len(alive) == 0:
                break
    total = 1 - trans
    color = color_sum / total.clamp(min=1e-6)[:, None]
    return verts, faces, torch.cat([color, total[:, None]], dim=1).numpy(), normals


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of an outward-wound mesh."""
    v = verts.astype(np.float64)
    face_n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # length = 2 area
    acc = np.zeros_like(v)
    for k in range(3):
        np.add.at(acc, faces[:, k], face_n)
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    return (acc / np.maximum(length, 1e-20)).astype(np.float32)
