"""Volume renderer: stratified coarse samples, importance-sampled fine samples, compositing.

The plain exact path of EpiGRAF (3.2-3.4):
1. `num_steps` depths evenly spaced on [ray_start, ray_end], each jittered uniformly between the
   midpoints to its neighbours (clipped to the ray bounds);
2. a coarse pass that only yields compositing weights; 1e-5 is added and the weights of the inner
   samples define a piecewise-constant pdf over the midpoints, from which `num_fine_steps` depths
   are drawn by inverse-CDF sampling;
3. coarse and fine samples together, sorted, composited once: alpha = 1 - exp(-delta * act(sigma +
   shift [+ noise])), the last interval 1e10 long (1e-3 with a background model or an open far
   end), rgb = sum w c, depth = sum w z (not normalised by the opacity sum w), optional white
   background + (1 - sum w).

3DGP's marcher (EG3D's importance renderer) differs in two settings: the coarse weights that place
the fine samples measure spacing on the ray interval rescaled to [0, 1] (`importance_spacing`
"unit"), and with `last_back` the weight a ray leaves over goes to its last sample (its alpha is 1).

Randomness (core.ray_random): with `deterministic=True` (inference) every jitter value is a hash of
(seed, ray, sample), so the same request gives the same image whatever the chunking or device.
Otherwise values come from torch's RNG (or `generator`), drawn in upstream's order when the image is
one chunk.

Rays are processed in chunks of bounded size, so any resolution renders in bounded memory. The
compositing rules (density, weights, far end, normals, backdrop) are core.compositing's, shared with
the other render paths; this module also defines what all paths take and give (`RenderOptions`,
`RenderOutput`, `RenderCancelled`). Callers pick a path by name through core.rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from trigan.core.cameras import Camera, PatchParams
from trigan.core.compositing import (
    add_backdrop,
    background_along_rays,
    composite_weights,
    field_normals,
    foreground_density,
    has_background,
    last_interval,
)
from trigan.core.config import IMPORTANCE_SPACINGS, ModelConfig
from trigan.core.ray_random import ray_normal, ray_uniform


class RenderCancelled(Exception):
    """Raised between chunks when the caller's `should_cancel` returns True."""


@dataclass(frozen=True)
class RenderOptions:
    num_steps: int = 48
    num_fine_steps: Optional[int] = None       # None: as many as num_steps
    ray_start: float = 0.88
    ray_end: float = 1.12
    density_shift: float = 0.0
    density_activation: str = "softplus"
    white_background: bool = False
    opaque_far_end: bool = True                # RenderConfig.opaque_far_end
    last_back: bool = False                    # RenderConfig.last_back: the last sample's alpha is 1
    importance_spacing: str = "world"          # RenderConfig.importance_spacing: "world" or "unit"
    density_noise_std: float = 0.0             # training only
    stratified: bool = True                    # jitter coarse depths inside their intervals
    deterministic: bool = True
    seed: int = 0
    # Index of the batch's first image in a larger batch: ray ids (and so the hashed random numbers)
    # continue from there, so a batch split over processes draws what the whole batch would.
    sample_offset: int = 0
    generator: Optional[torch.Generator] = field(default=None, compare=False)
    max_points_per_chunk: int = 1 << 19
    normals: bool = False
    background_steps: int = 8
    # 3DGP's low-density cut (its NFS renders depth with cut_quantile=0.5): after the activation,
    # foreground densities below this quantile of the chunk's density tensor are set to 0.
    # None (the default) renders as without it.
    density_cut_quantile: Optional[float] = None

    @property
    def fine_steps(self) -> int:
        return self.num_steps if self.num_fine_steps is None else self.num_fine_steps

    @classmethod
    def for_model(cls, cfg: ModelConfig, **overrides) -> "RenderOptions":
        opts = cls(num_steps=cfg.render.num_steps, num_fine_steps=cfg.render.num_fine_steps,
                   ray_start=cfg.camera.ray_start, ray_end=cfg.camera.ray_end,
                   density_shift=cfg.render.density_shift, density_activation=cfg.render.density_activation,
                   white_background=cfg.render.white_background, opaque_far_end=cfg.render.opaque_far_end,
                   last_back=cfg.render.last_back, importance_spacing=cfg.render.importance_spacing,
                   background_steps=cfg.background.num_steps)
        return replace(opts, **overrides)


@dataclass
class RenderOutput:
    """Images [B, C, H, W]: rgb in the model's [-1, 1] space (not clamped), depth (expected ray
    distance in world units, sum w z), opacity (sum w), and world-space unit normals if asked."""

    rgb: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    normals: Optional[torch.Tensor] = None


# --------------------------------------------------------------------------------------------------
# Sampling

def stratified_depths(num_rays: int, num_steps: int, near: float, far: float, jitter: Optional[torch.Tensor],
                      device=None, dtype=torch.float32) -> torch.Tensor:
    """[R, S] depths: linspace(near, far, S); when jittered, sample i is drawn uniformly between the
    midpoints to its neighbours (the first from `near`, the last up to `far`), so all stay in range."""
    z = torch.linspace(near, far, num_steps, device=device, dtype=dtype).expand(num_rays, num_steps)
    if jitter is None or num_steps < 2:
        return z
    mids = 0.5 * (z[:, 1:] + z[:, :-1])
    lower = torch.cat([z[:, :1], mids], dim=1)
    upper = torch.cat([mids, z[:, -1:]], dim=1)
    return lower + (upper - lower) * jitter


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, u: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf.

    bins [R, K+1] edges, weights [R, K] (unnormalised), u [R, M] in [0, 1). Returns depths [R, M].
    """
    weights = weights + eps
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1)], dim=-1)  # [R, K+1]
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, below), cdf.gather(1, above)
    bin_lo, bin_hi = bins.gather(1, below), bins.gather(1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)




# --------------------------------------------------------------------------------------------------
# The renderer

FieldFn = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def _query(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, z: torch.Tensor, batch: int):
    """Evaluate the field at origins + z dirs. origins/dirs [R, 3], z [R, S], R = batch * n."""
    pts = origins[:, None] + dirs[:, None] * z[..., None]  # [R, S, 3]
    rgb, sigma = field(pts.reshape(batch, -1, 3))
    return rgb.reshape(*z.shape, 3), sigma.reshape(z.shape), pts


def render_rays(field, origins: torch.Tensor, dirs: torch.Tensor, ray_ids: torch.Tensor,
                opts: RenderOptions) -> dict:
    """Render rays [B, n, 3] of a field of batch B. Returns per-ray tensors [B, n, C]."""
    batch, n = origins.shape[:2]
    o, d, ids = origins.reshape(-1, 3), dirs.reshape(-1, 3), ray_ids.reshape(-1)
    rays, dt, dev = o.shape[0], o.dtype, o.device
    has_bg = has_background(field)
    last_delta = last_interval(has_bg, opts)

    if opts.importance_spacing not in IMPORTANCE_SPACINGS:
        raise ValueError(f"unknown importance_spacing {opts.importance_spacing!r} "
                         f"(expected {' or '.join(IMPORTANCE_SPACINGS)})")
    # "unit" (3DGP, EG3D): samples are placed on the ray interval rescaled to [0, 1], s, and mapped to
    # depth t = s * end + (1 - s) * start, in upstream's order of operations.
    unit = opts.importance_spacing == "unit"
    to_depth = (lambda s: s * opts.ray_end + (1 - s) * opts.ray_start) if unit else (lambda s: s)
    jitter = ray_uniform(opts, (rays, opts.num_steps), ids, 0, dt, dev) if opts.stratified else None
    s_coarse = stratified_depths(rays, opts.num_steps, 0.0 if unit else opts.ray_start,
                                 1.0 if unit else opts.ray_end, jitter, dev, dt)
    z = to_depth(s_coarse)
    noisy = opts.density_noise_std > 0
    rgb, sigma, _ = _query(field, o, d, z, batch)
    if opts.fine_steps > 0 and opts.num_steps > 2:
        noise = ray_normal(opts, sigma.shape, ids, 3, dt, dev) if noisy else None
        weights, _ = composite_weights(foreground_density(sigma, opts, noise), s_coarse, last_delta)
        weights = weights.detach() + 1e-5
        u = ray_uniform(opts, (rays, opts.fine_steps), ids, 1, dt, dev)
        s_fine = sample_pdf(0.5 * (s_coarse[:, 1:] + s_coarse[:, :-1]).detach(), weights[:, 1:-1], u).detach()
        z_fine = to_depth(s_fine)
        rgb_fine, sigma_fine, _ = _query(field, o, d, z_fine, batch)
        z, order = torch.sort(torch.cat([z, z_fine], dim=1), dim=1)
        rgb = torch.cat([rgb, rgb_fine], dim=1).gather(1, order[..., None].expand(-1, -1, 3))
        sigma = torch.cat([sigma, sigma_fine], dim=1).gather(1, order)

    noise = ray_normal(opts, sigma.shape, ids, 5, dt, dev) if noisy else None
    weights, transmittance = composite_weights(foreground_density(sigma, opts, noise), z, last_delta,
                                               last_opaque=opts.last_back)
    out_rgb = (weights[..., None] * rgb).sum(dim=1)
    opacity = weights.sum(dim=1)
    out = {"depth": (weights * z).sum(dim=1, keepdim=True), "opacity": opacity[:, None]}
    background = background_along_rays(field.background, o, d, ids, opts, batch) if has_bg else None
    out["rgb"] = add_backdrop(out_rgb, transmittance[:, None], opacity[:, None], background, opts.white_background)
    if opts.normals:
        pts = o[:, None] + d[:, None] * z[..., None]
        normals = (weights[..., None] * field_normals(field, pts, batch)).sum(dim=1)
        out["normals"] = F.normalize(normals, dim=-1)
    return {k: v.reshape(batch, n, -1) for k, v in out.items()}


def render(field, camera: Camera, resolution: Union[int, Tuple[int, int]], opts: RenderOptions,
           patch: Optional[PatchParams] = None, should_cancel: Optional[Callable[[], bool]] = None,
           progress: Optional[Callable[[int, int], None]] = None) -> RenderOutput:
    """Render a field (batch B) from cameras (batch B) at `resolution` (int or (H, W))."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    batch = len(camera)
    if field.batch_size != batch:
        raise ValueError(f"{batch} cameras for a field of {field.batch_size} latents")
    origins, dirs = camera.rays((h, w), patch)
    first = opts.sample_offset * h * w
    ray_ids = torch.arange(first, first + batch * h * w, device=origins.device).reshape(batch, h * w)
    samples = opts.num_steps + opts.fine_steps
    chunk = max(1, opts.max_points_per_chunk // (samples * batch))
    parts = []
    for start in range(0, h * w, chunk):
        if should_cancel is not None and should_cancel():
            raise RenderCancelled()
        sl = slice(start, start + chunk)
        parts.append(render_rays(field, origins[:, sl], dirs[:, sl], ray_ids[:, sl], opts))
        if progress is not None:
            progress(min(start + chunk, h * w), h * w)
    merged = {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}
    image = lambda t: t.transpose(1, 2).reshape(batch, -1, h, w)
    return RenderOutput(rgb=image(merged["rgb"]), depth=image(merged["depth"]), opacity=image(merged["opacity"]),
                        normals=image(merged["normals"]) if "normals" in merged else None)

