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

Randomness: with `deterministic=True` (inference) every jitter value is a hash of (seed, ray,
sample), so the same request gives the same image whatever the chunking or device. Otherwise values
come from torch's RNG (or `generator`), drawn in upstream's order when the image is one chunk.

Rays are processed in chunks of bounded size, so any resolution renders in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from trigan.core.background import inverted_sphere_points
from trigan.core.cameras import Camera, PatchParams
from trigan.core.config import ModelConfig


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
# Random numbers

_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """An integer hash on values in [0, 2^32) (works on python ints and int64 tensors).

    Multipliers below 2^31 keep every product inside int64, so nothing relies on overflow."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _MASK32
    return x ^ (x >> 16)


def hash_uniform(ray_ids: torch.Tensor, num: int, stream: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """[R, num] values in [0, 1), a pure function of (seed, stream, ray id, sample index)."""
    key = _mix32((_mix32(seed & _MASK32) ^ (stream * 0x9E3779B1)) & _MASK32)
    counter = ray_ids.reshape(-1, 1).long() * num + torch.arange(num, device=ray_ids.device)
    x = _mix32((counter & _MASK32) ^ key)
    x = _mix32(x ^ (counter >> 32))
    return (x >> 8).to(dtype) * (1.0 / (1 << 24))


def _uniform(opts: RenderOptions, shape: Tuple[int, int], ray_ids: torch.Tensor, stream: int,
             dtype, device) -> torch.Tensor:
    if opts.deterministic:
        return hash_uniform(ray_ids, shape[1], stream, opts.seed, dtype)
    return torch.rand(shape, generator=opts.generator, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# Sampling and compositing

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


def _normal(opts: RenderOptions, shape: Tuple[int, int], ray_ids: torch.Tensor, stream: int,
            dtype, device) -> torch.Tensor:
    """Standard normal values; hashed (Box-Muller on two hashed uniforms) when deterministic."""
    if opts.deterministic:
        u1 = hash_uniform(ray_ids, shape[1], stream, opts.seed, torch.float64)
        u2 = hash_uniform(ray_ids, shape[1], stream + 1, opts.seed, torch.float64)
        r = torch.sqrt(-2.0 * torch.log1p(-u1))   # 1 - u1 lies in (0, 1]: no log(0)
        return (r * torch.cos(2 * torch.pi * u2)).to(dtype)
    return torch.randn(shape, generator=opts.generator, device=device, dtype=dtype)


def activate_density(sigma: torch.Tensor, opts: RenderOptions, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
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


def foreground_density(sigma: torch.Tensor, opts: RenderOptions, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The activated foreground density, with the low-density cut when opts.density_cut_quantile is set."""
    density = activate_density(sigma, opts, noise)
    if opts.density_cut_quantile is not None and density.numel() > 0:
        cut = _quantile(density, opts.density_cut_quantile)
        density = torch.where(density < cut, torch.zeros_like(density), density)
    return density


IMPORTANCE_SPACINGS = ("world", "unit")


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
# The renderer

FieldFn = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


def _query(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, z: torch.Tensor, batch: int):
    """Evaluate the field at origins + z dirs. origins/dirs [R, 3], z [R, S], R = batch * n."""
    pts = origins[:, None] + dirs[:, None] * z[..., None]  # [R, S, 3]
    rgb, sigma = field(pts.reshape(batch, -1, 3))
    return rgb.reshape(*z.shape, 3), sigma.reshape(z.shape), pts


def _normals(field: FieldFn, pts: torch.Tensor, batch: int) -> torch.Tensor:
    """Unit normals -grad(sigma)/|grad(sigma)| at points [R, S, 3]."""
    with torch.inference_mode(False), torch.enable_grad():
        if hasattr(field, "differentiable"):
            field = field.differentiable()
        p = pts.detach().clone().requires_grad_(True)
        _, sigma = field(p.reshape(batch, -1, 3))
        grad, = torch.autograd.grad(sigma.sum(), p)
    return -F.normalize(grad, dim=-1)


def last_interval(has_background: bool, opts: RenderOptions) -> float:
    """Length given to the interval of a ray's last sample: 1e10 (opaque: the field's colour at
    ray_end is the backdrop) unless a background network or an open far end takes over there."""
    return 1e10 if opts.opaque_far_end and not has_background else 1e-3


def open_far_end(field, opts: RenderOptions) -> bool:
    """Whether rays of this field end in nothing (no background network, far end open)."""
    return not opts.opaque_far_end and getattr(field, "background", None) is None


def depth_to_far_end(depth: torch.Tensor, opacity: torch.Tensor, far: float) -> torch.Tensor:
    """Expected depth when what the rays do not hit counts as a hit at `far` (sum w z + (1 - sum w) far):
    the depth a dataset's maps give the background, for a model whose far end is open."""
    return depth + (1 - opacity).clamp_min(0) * far


def render_rays(field, origins: torch.Tensor, dirs: torch.Tensor, ray_ids: torch.Tensor,
                opts: RenderOptions) -> dict:
    """Render rays [B, n, 3] of a field of batch B. Returns per-ray tensors [B, n, C]."""
    batch, n = origins.shape[:2]
    o, d, ids = origins.reshape(-1, 3), dirs.reshape(-1, 3), ray_ids.reshape(-1)
    rays, dt, dev = o.shape[0], o.dtype, o.device
    has_bg = getattr(field, "background", None) is not None
    last_delta = last_interval(has_bg, opts)

    if opts.importance_spacing not in IMPORTANCE_SPACINGS:
        raise ValueError(f"unknown importance_spacing {opts.importance_spacing!r} "
                         f"(expected {' or '.join(IMPORTANCE_SPACINGS)})")
    # "unit" (3DGP, EG3D): samples are placed on the ray interval rescaled to [0, 1], s, and mapped to
    # depth t = s * end + (1 - s) * start, in upstream's order of operations.
    unit = opts.importance_spacing == "unit"
    to_depth = (lambda s: s * opts.ray_end + (1 - s) * opts.ray_start) if unit else (lambda s: s)
    jitter = _uniform(opts, (rays, opts.num_steps), ids, 0, dt, dev) if opts.stratified else None
    s_coarse = stratified_depths(rays, opts.num_steps, 0.0 if unit else opts.ray_start,
                                 1.0 if unit else opts.ray_end, jitter, dev, dt)
    z = to_depth(s_coarse)
    noisy = opts.density_noise_std > 0
    rgb, sigma, _ = _query(field, o, d, z, batch)
    if opts.fine_steps > 0 and opts.num_steps > 2:
        noise = _normal(opts, sigma.shape, ids, 3, dt, dev) if noisy else None
        weights, _ = composite_weights(foreground_density(sigma, opts, noise), s_coarse, last_delta)
        weights = weights.detach() + 1e-5
        u = _uniform(opts, (rays, opts.fine_steps), ids, 1, dt, dev)
        s_fine = sample_pdf(0.5 * (s_coarse[:, 1:] + s_coarse[:, :-1]).detach(), weights[:, 1:-1], u).detach()
        z_fine = to_depth(s_fine)
        rgb_fine, sigma_fine, _ = _query(field, o, d, z_fine, batch)
        z, order = torch.sort(torch.cat([z, z_fine], dim=1), dim=1)
        rgb = torch.cat([rgb, rgb_fine], dim=1).gather(1, order[..., None].expand(-1, -1, 3))
        sigma = torch.cat([sigma, sigma_fine], dim=1).gather(1, order)

    noise = _normal(opts, sigma.shape, ids, 5, dt, dev) if noisy else None
    weights, transmittance = composite_weights(foreground_density(sigma, opts, noise), z, last_delta,
                                               last_opaque=opts.last_back)
    out_rgb = (weights[..., None] * rgb).sum(dim=1)
    opacity = weights.sum(dim=1)
    out = {"depth": (weights * z).sum(dim=1, keepdim=True), "opacity": opacity[:, None]}
    if has_bg:
        bg_rgb, bg_opacity = _render_background(field.background, o, d, ids, opts, batch)
        out_rgb = out_rgb + transmittance[:, None] * bg_rgb
        if opts.white_background:
            out_rgb = out_rgb + transmittance[:, None] * (1 - bg_opacity)
    elif opts.white_background:
        out_rgb = out_rgb + (1 - opacity)[:, None]
    out["rgb"] = out_rgb
    if opts.normals:
        pts = o[:, None] + d[:, None] * z[..., None]
        normals = (weights[..., None] * _normals(field, pts, batch)).sum(dim=1)
        out["normals"] = F.normalize(normals, dim=-1)
    return {k: v.reshape(batch, n, -1) for k, v in out.items()}


def _render_background(background, o, d, ids, opts: RenderOptions, batch: int):
    steps = opts.background_steps
    inv_depth = torch.linspace(1.0, 0.0, steps, device=o.device, dtype=o.dtype).expand(o.shape[0], steps)
    if opts.density_noise_std > 0:  # training (density noise on): jitter like the foreground
        u = _uniform(opts, (o.shape[0], steps), ids, 2, o.dtype, o.device)
        inv_depth = (inv_depth + (u - 0.5) / max(steps - 1, 1)).clamp(0.0, 1.0)
    coords = inverted_sphere_points(o, d, inv_depth)  # [R, K, 4]
    rgb, sigma = background(coords.reshape(batch, -1, 4))
    rgb, sigma = rgb.reshape(*inv_depth.shape, 3), sigma.reshape(inv_depth.shape)
    weights, _ = composite_weights(activate_density(sigma, opts), -inv_depth, 1e10)
    return (weights[..., None] * rgb).sum(dim=1), weights.sum(dim=1, keepdim=True)


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

