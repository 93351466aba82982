"""What every render path shares once it has samples along rays: density, weights, the far end,
normals and the backdrop.

The plain path (`core.renderer`), the accelerated one (`core.accel`) and the baked preview
(`core.preview`) place their samples differently but composite them by the same rules, all here:

* `activate_density` / `foreground_density`: raw sigma -> density per world unit, act(sigma + shift
  [+ noise]) and 3DGP's optional low-density cut;
* `composite_weights`: alpha = 1 - exp(-delta * density), weights = alpha x transmittance, and the
  transmittance a ray has left after its last sample;
* the far end (`last_interval`, `open_far_end`, `depth_to_far_end`): a ray's last sample at
  ray_end is opaque (interval 1e10) unless a background network or an open far end takes over;
* `field_normals`: unit normals -grad(sigma) / |grad(sigma)| of a field at points;
* `background_along_rays`: the colour and opacity of the background network (NeRF++'s inverted
  sphere) along rays;
* `add_backdrop`: what lies behind a ray's foreground (the background network and / or the white
  background) composited onto the foreground's colour.

Functions take the RenderOptions (`opts`) for the settings they read.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from trigan.core.background import inverted_sphere_points
from trigan.core.ray_random import ray_uniform

# The stream of ray_uniform that jitters the background samples (see core.ray_random).
BACKGROUND_JITTER_STREAM = 2


def activate_density(sigma: torch.Tensor, opts, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """act(sigma + shift [+ noise * density_noise_std]); `noise` standard normal, shaped like sigma."""
    x = sigma + opts.density_shift
    if noise is not None and opts.density_noise_std > 0:
        x = x + noise * opts.density_noise_std
    if opts.density_activation == "softplus":
        return F.softplus(x)
    if opts.density_activation == "relu":
        return F.relu(x)
    raise ValueError(f"unknown density activation {opts.density_activation!r}")


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of all values (linear interpolation, like torch.quantile, without its size limit)."""
    flat = torch.sort(values.detach().reshape(-1)).values
    pos = min(max(float(q), 0.0), 1.0) * (flat.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.numel() - 1)
    return flat[lo] + (flat[hi] - flat[lo]) * (pos - lo)


def foreground_density(sigma: torch.Tensor, opts, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The activated foreground density, with the low-density cut when opts.density_cut_quantile is set."""
    density = activate_density(sigma, opts, noise)
    if opts.density_cut_quantile is not None and density.numel() > 0:
        cut = _quantile(density, opts.density_cut_quantile)
        density = torch.where(density < cut, torch.zeros_like(density), density)
    return density


def composite_weights(density: torch.Tensor, z: torch.Tensor, last_delta: float, last_opaque: bool = False
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample weights [R, S] and the transmittance left after the last sample [R]. `last_opaque`
    (3DGP's last_back): the last sample takes all the weight the ray has left."""
    deltas = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], last_delta)], dim=1)
    alpha = 1 - torch.exp(-deltas * density)
    if last_opaque:
        alpha = torch.cat([alpha[:, :-1], torch.ones_like(alpha[:, -1:])], dim=1)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], dim=1), dim=1)
    return alpha * trans[:, :-1], trans[:, -1]


# --------------------------------------------------------------------------------------------------
# The far end of a ray

def has_background(field) -> bool:
    """Whether the field comes with a background network (NeRF++'s inverted sphere)."""
    return getattr(field, "background", None) is not None


def last_interval(has_bg: bool, opts) -> float:
    """Length given to the interval of a ray's last sample: 1e10 (opaque: the field's colour at
    ray_end is the backdrop) unless a background network or an open far end takes over there."""
    return 1e10 if opts.opaque_far_end and not has_bg else 1e-3


def open_far_end(field, opts) -> bool:
    """Whether rays of this field end in nothing (no background network, far end open)."""
    return not opts.opaque_far_end and not has_background(field)


def depth_to_far_end(depth: torch.Tensor, opacity: torch.Tensor, far: float) -> torch.Tensor:
    """Expected depth when what the rays do not hit counts as a hit at `far` (sum w z + (1 - sum w) far):
    the depth a dataset's maps give the background, for a model whose far end is open."""
    return depth + (1 - opacity).clamp_min(0) * far


# --------------------------------------------------------------------------------------------------
# Normals, background, backdrop

def field_normals(field, pts: torch.Tensor, batch: int) -> torch.Tensor:
    """Unit normals -grad(sigma)/|grad(sigma)| of a field (batch `batch`) at points [R, S, 3]
    (R = batch x rays); gradients are taken even inside inference_mode / no_grad."""
    with torch.inference_mode(False), torch.enable_grad():
        if hasattr(field, "differentiable"):
            field = field.differentiable()
        p = pts.detach().clone().requires_grad_(True)
        _, sigma = field(p.reshape(batch, -1, 3))
        grad, = torch.autograd.grad(sigma.sum(), p)
    return -F.normalize(grad, dim=-1)


def background_along_rays(background, origins: torch.Tensor, dirs: torch.Tensor, ray_ids: torch.Tensor,
                          opts, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """rgb [R, 3] and opacity [R, 1] of a background network along rays origins, dirs [R, 3] (of a
    field of batch `batch`): opts.background_steps samples evenly in inverse depth, jittered like the
    foreground when density noise is on (training)."""
    o = origins
    steps = opts.background_steps
    inv_depth = torch.linspace(1.0, 0.0, steps, device=o.device, dtype=o.dtype).expand(o.shape[0], steps)
    if opts.density_noise_std > 0:
        u = ray_uniform(opts, (o.shape[0], steps), ray_ids, BACKGROUND_JITTER_STREAM, o.dtype, o.device)
        inv_depth = (inv_depth + (u - 0.5) / max(steps - 1, 1)).clamp(0.0, 1.0)
    coords = inverted_sphere_points(o, dirs, inv_depth)  # [R, K, 4]
    rgb, sigma = background(coords.reshape(batch, -1, 4))
    rgb, sigma = rgb.reshape(*inv_depth.shape, 3), sigma.reshape(inv_depth.shape)
    weights, _ = composite_weights(activate_density(sigma, opts), -inv_depth, 1e10)
    return (weights[..., None] * rgb).sum(dim=1), weights.sum(dim=1, keepdim=True)


def add_backdrop(rgb: torch.Tensor, transmittance: torch.Tensor, opacity: torch.Tensor,
                 background: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 white_background: bool = False) -> torch.Tensor:
    """The colour [R, 3] of rays whose foreground gave `rgb` [R, 3], leaving `transmittance` [R, 1]
    of light through and gathering `opacity` [R, 1]:

    * with a background network (`background` = its (rgb [R, 3], opacity [R, 1]) along the rays):
      rgb + T bg_rgb, and with a white background also + T (1 - bg_opacity);
    * without one, a white background adds 1 - opacity (every path keeps its own opacity and
      transmittance, which differ by the 1e-10 guard of the cumulative product).
    """
    if background is not None:
        bg_rgb, bg_opacity = background
        rgb = rgb + transmittance * bg_rgb
        if white_background:
            rgb = rgb + transmittance * (1 - bg_opacity)
    elif white_background:
        rgb = rgb + (1 - opacity)
    return rgb
