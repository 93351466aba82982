"""The accelerated exact renderer: a per-latent occupancy grid, empty-space skipping, early termination.

The tri-planes of a latent are fixed, so the set of points where the activated density is not
negligible is fixed too. `OccupancyGrid` bakes it once per field (one dense probe of the scene box,
max-pooled onto cells and dilated by one cell so that thin surfaces between probes are kept), and
`FastRenderer` (the "accelerated" path of core.rendering) then marches each ray only through
occupied cells:

1. the ray segment [ray_start, ray_end] is cut into candidate intervals of one cell; each is marked
   occupied or empty from the grid;
2. a ray gets n = min(max_samples, ceil(occupied length / min_step)) samples over its occupied
   length only. Where they go comes from the grid's cached cell densities (each cell's largest
   probed density): a coarse estimate of the ray's weights T(1 - exp(-sigma dz)), each candidate's
   opacity capped at 0.5 (a cell maximum can miss or overstate a peak between probes, so the
   estimate never hides what is behind one cell) and widened by a candidate along the ray. A
   share `importance` (0.75) of the probability mass follows those weights and the rest is spread
   evenly over the occupied length; sample i sits at the middle (by mass) of the i-th of n pieces of
   equal mass, and its density acts over that piece's occupied length (midpoint quadrature with
   pieces short at surfaces and long in haze). Empty gaps contribute nothing;
3. samples are evaluated front to back in rounds, and a ray stops once its transmittance falls
   below `min_transmittance`;
4. the last sample of the plain path (at ray_end, its interval 1e10 long, 1e-3 with a background
   network or an open far end) is kept as a "tail" sample evaluated at exactly ray_end for every
   ray still alive, so rays that miss everything get the same colour and depth as in
   `core.renderer.render`.

What it computes is the same integral as the plain path (`core.renderer.render`), composited by the
same rules (core.compositing): rgb in [-1, 1] with the optional white background, depth = sum w z,
opacity = sum w, normals = normalised sum w n.
The error from skipping is at most `threshold * (ray_end - ray_start)` in opacity per ray.

Outside its box a tri-plane field equals the field at the point clamped to the box grown by one
texel (the bilinear lookups with zero padding fade to zero within one texel, and a point with one
coordinate out of range only sees the plane of the two others), so the grid answers for every point
of space by clamping. Other fields (e.g. analytic test fields) are probed over their `bounds` and
the same clamping is assumed.

Falls back to the plain path where acceleration would change the result: density noise (training),
the per-chunk density quantile cut, or a batch of several latents for a field without `select`.
A background network (the NeRF++ sphere) is integrated as in the plain path (8 samples per ray, not
accelerated); only the foreground is accelerated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from trigan.core.cameras import Camera, PatchParams
from trigan.core.compositing import (
    activate_density,
    add_backdrop,
    background_along_rays,
    field_normals,
    has_background,
    last_interval,
)
from trigan.core.field import query_lattice
from trigan.core.ray_random import hash_uniform
from trigan.core.renderer import RenderCancelled, RenderOptions, RenderOutput, render


@dataclass(frozen=True)
class AccelOptions:
    """Knobs of the accelerated path (defaults chosen by measurement, see docs/rendering_speed.md)."""

    grid_resolution: int = 48          # cells per axis
    probes_per_cell: int = 2           # probe spacing = cell / probes_per_cell
    threshold: float = 0.01            # activated density (per world unit) below which a cell is empty
    dilation: int = 1                  # cells added around every occupied cell
    min_step: Optional[float] = None   # smallest sample spacing; None: (ray_end - ray_start) / 256
    max_samples: int = 32              # samples per ray at most (fog-like fields use this many); 16 gave
                                       # 31-33 dB on demo models with thin shells, 32 gives 41-55 dB
    importance: float = 0.5            # share of a ray's samples placed where the cached density puts
                                       # its weight (the rest spread evenly); 0: all spread evenly
    candidates_per_cell: int = 1       # along a ray, the occupancy and the weights are read this often per cell
    weight_spread: int = 1             # candidates the cached weights are widened by, along the ray
    coarse_alpha_max: float = 0.5      # the coarse estimate never lets one candidate hide what is behind
                                       # it (cell maxima miss peaks between probes, both ways)
    jitter: bool = False               # stratified (hashed) jitter instead of midpoints
    min_transmittance: float = 1e-4    # early ray termination
    max_points_per_chunk: int = 1 << 18
    probe_chunk: Optional[int] = None  # probes per decoder call; None: chosen by measurement per device


def _support_box(field) -> Tuple[torch.Tensor, torch.Tensor]:
    """The box outside which the field equals its value at the clamped point."""
    lo, hi = field.bounds
    lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    planes = getattr(field, "planes", None)
    if planes is not None:  # bilinear lookups (align_corners=True, zeros) fade out over one texel
        texel = (hi - lo) / (planes.shape[-1] - 1)
        lo, hi = lo - texel, hi + texel
    return lo, hi


def _single_fields(field):
    batch = field.batch_size
    if batch == 1:
        return [field]
    if not hasattr(field, "select"):
        return None
    return [field.select(i) for i in range(batch)]


def _probe_lattice(field, axes, opts: RenderOptions, chunk: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Activated density (float32 [n^3]) and colour (float16 [n^3, 3]) of a field of one latent on
    the lattice axes[0] x axes[1] x axes[2] (x slowest), on the CPU. A tri-plane field reads its
    planes only on the lattice's three projections (TriPlaneField.lattice): the probes cost about
    one decoder layer per point."""
    dev = _device(field)
    xs, ys, zs = (a.to(dev) for a in axes)
    total = len(xs) * len(ys) * len(zs)
    dens = torch.empty(total, dtype=torch.float32)
    rgb = torch.empty(total, 3, dtype=torch.float16)
    for start, stop, c, s in query_lattice(field, xs, ys, zs, chunk):
        dens[start:stop] = activate_density(s, opts).float().cpu()
        rgb[start:stop] = c.reshape(-1, 3).half().cpu()
    return dens, rgb


class OccupancyGrid:
    """Per-latent occupancy of the scene box: a bool tensor [B, G, G, G] indexed [x, y, z].

    A cell is occupied when the activated density (with the options' shift and activation) exceeds
    `threshold` at any probe on or inside it, or in a neighbouring cell (`dilation`).
    """

    def __init__(self, field, opts: RenderOptions, accel: AccelOptions = AccelOptions()):
        self.accel = accel
        self.density_key = (opts.density_shift, opts.density_activation)
        self.lo, self.hi = _support_box(field)
        g, sub = accel.grid_resolution, max(1, accel.probes_per_cell)
        self.resolution = g
        self.cell = (self.hi - self.lo) / g
        n = g * sub + 1
        axes = [torch.linspace(float(self.lo[i]), float(self.hi[i]), n) for i in range(3)]
        grids, volumes, colors, cell_max = [], [], [], []
        with torch.inference_mode():
            for sub_field in (_single_fields(field) or [field.select(i) for i in range(field.batch_size)]):
                dens, rgb = _probe_lattice(sub_field, axes, opts, accel.probe_chunk)
                dens = dens.reshape(1, 1, n, n, n)
                volumes.append(dens[0, 0])
                colors.append(rgb.reshape(n, n, n, 3))
                cells = F.max_pool3d(dens, kernel_size=sub + 1, stride=sub)  # [1, 1, g, g, g]
                cell_max.append(cells[0, 0])
                if accel.dilation > 0:
                    k = 2 * accel.dilation + 1
                    cells = F.max_pool3d(cells, kernel_size=k, stride=1, padding=accel.dilation)
                grids.append(cells[0, 0] > accel.threshold)
        self.occupied = torch.stack(grids)  # [B, g, g, g] on the CPU; moved to the rays' device on use
        # The probed densities and colours themselves, [B, n, n, n] and [B, n, n, n, 3] over [lo, hi]
        # (both faces included): the preview path bakes its volume from them instead of probing the
        # field a second time. The colours come with the densities from the same decoder call; half
        # precision keeps them at 5.5 MB per latent.
        self.density = torch.stack(volumes)
        self.color = torch.stack(colors)
        # Each cell's largest probed density (not dilated): where along a ray the weight lies.
        self.cell_density = torch.stack(cell_max)
        self.probe_count = n ** 3 * len(grids)
        flat = self.occupied.reshape(len(grids), -1)
        self.all_occupied = flat.all(dim=1).tolist()
        self.any_occupied = flat.any(dim=1).tolist()

    @property
    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())

    def cell_index(self, points: torch.Tensor) -> torch.Tensor:
        """Flat index (int64) of the cell holding each world point, points clamped to the box."""
        dev, g = points.device, self.resolution
        lo = self.lo.to(dev, points.dtype)
        # clamping to [0, g - 1] before the integer conversion makes truncation equal floor
        idx = ((points - lo) * (g / (self.hi - self.lo)).to(dev, points.dtype)).clamp_(0, g - 1).long()
        return (idx[..., 0] * g + idx[..., 1]) * g + idx[..., 2]

    def lookup(self, b: int, points: torch.Tensor, cells: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Occupancy (bool, shaped like points[..., 0]) of latent b at world points (clamped to the box);
        `cells`: their cell_index, when already known."""
        dev = points.device
        if self.all_occupied[b] or not self.any_occupied[b]:  # fog or nothing: no look-ups needed
            return torch.full(points.shape[:-1], bool(self.all_occupied[b]), device=dev)
        cells = self.cell_index(points) if cells is None else cells
        return self.occupied[b].to(dev).reshape(-1)[cells]

    def density_bound(self, b: int, points: torch.Tensor, cells: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The largest probed density of the cell holding each point (points clamped to the box)."""
        cells = self.cell_index(points) if cells is None else cells
        return self.cell_density[b].to(points.device, points.dtype).reshape(-1)[cells]


def _device(field) -> torch.device:
    dev = getattr(field, "device", None)
    return dev if dev is not None else torch.device("cpu")


def _eval(field, pts: torch.Tensor):
    rgb, sigma = field(pts[None])
    return rgb[0], sigma[0]


def _march(field, grid: OccupancyGrid, b: int, o: torch.Tensor, d: torch.Tensor, ids: torch.Tensor,
           opts: RenderOptions, accel: AccelOptions, last_delta: float) -> dict:
    """Accelerated foreground integration of rays o, d [R, 3] of latent b."""
    rays, dt, dev = o.shape[0], o.dtype, o.device
    t0, t1 = opts.ray_start, opts.ray_end
    length = t1 - t0
    # 1. candidate intervals of 1/candidates_per_cell cell (the one-cell dilation keeps cells a ray only grazes),
    #    occupied or not; u = occupied length before each candidate
    cand = max(1, int(math.ceil(accel.candidates_per_cell * length / float(grid.cell.min()))))
    dz = length / cand
    mids = t0 + (torch.arange(cand, device=dev, dtype=dt) + 0.5) * dz
    mid_pts = o[:, None] + d[:, None] * mids[None, :, None]
    cells = grid.cell_index(mid_pts)
    occ = grid.lookup(b, mid_pts, cells).to(dt)  # [R, cand]
    ell = occ * dz
    cum = torch.cat([torch.zeros(rays, 1, device=dev, dtype=dt), ell.cumsum(1)], dim=1)
    occ_len = cum[:, -1]
    # 2. samples per ray, and where they go: the cached cell densities give a coarse estimate of the
    #    ray's weights; `importance` of the probability mass follows those weights (widened along the
    #    ray, since a cell's largest density puts the surface up to a cell early), the rest is spread
    #    evenly over the occupied length. Sample i sits in the middle (by mass) of the i-th of n
    #    pieces of equal mass and its density acts over that piece's occupied length.
    min_step = accel.min_step if accel.min_step is not None else length / 256
    n = torch.ceil(occ_len / min_step - 1e-6).clamp(0, accel.max_samples).long()
    even = ell / occ_len.clamp(min=1e-12)[:, None]
    mass = even
    if accel.importance > 0 and grid.any_occupied[b]:
        sigma_hat = grid.density_bound(b, mid_pts, cells) * occ
        alpha = (1 - torch.exp(-sigma_hat * dz)).clamp(max=accel.coarse_alpha_max)
        trans_hat = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
        w = trans_hat * alpha
        if accel.weight_spread > 0:
            k = 2 * accel.weight_spread + 1
            w = F.max_pool1d(w[:, None], kernel_size=k, stride=1, padding=accel.weight_spread)[:, 0]
        w = w * occ
        w_sum = w.sum(1, keepdim=True)
        mass = torch.where(w_sum > 1e-12, accel.importance * w / w_sum.clamp(min=1e-12)
                           + (1 - accel.importance) * even, even)
    del mid_pts, cells
    cdf = torch.cat([torch.zeros(rays, 1, device=dev, dtype=dt), mass.cumsum(1)], dim=1).contiguous()

    def locate(q):
        """(depth z, occupied length u) of mass quantiles q [R, K] of every ray."""
        j = (torch.searchsorted(cdf, q.contiguous(), right=True) - 1).clamp_(0, cand - 1)
        frac = ((q - cdf.gather(1, j)) / mass.gather(1, j).clamp(min=1e-12)).clamp_(0, 1)
        return t0 + (j.to(dt) + frac) * dz, cum.gather(1, j) + frac * ell.gather(1, j)

    # every sample's depth and interval, once (the rounds below take columns of them)
    m_max = int(n.max()) if rays > 0 else 0
    n_f = n.clamp(min=1).to(dt)[:, None]
    cols = torch.arange(m_max + 1, device=dev, dtype=dt)[None]
    # (jitter: drawn for max_samples per ray, so a pixel does not depend on its chunk's longest ray)
    frac = hash_uniform(ids, accel.max_samples, 100, opts.seed, dt)[:, :m_max] if accel.jitter else 0.5
    z_all, _ = locate(((cols[:, :m_max] + frac) / n_f).clamp(max=1.0))
    _, u_edges = locate((cols / n_f).clamp(max=1.0))
    delta_all = u_edges[:, 1:] - u_edges[:, :-1]
    del u_edges

    trans = torch.ones(rays, device=dev, dtype=dt)
    acc_rgb = torch.zeros(rays, 3, device=dev, dtype=dt)
    acc_depth = torch.zeros(rays, device=dev, dtype=dt)
    acc_w = torch.zeros(rays, device=dev, dtype=dt)
    acc_n = torch.zeros(rays, 3, device=dev, dtype=dt) if opts.normals else None
    evaluated = 0

    def accumulate(a, z, valid, rgb, sigma, delta, pts, opaque=False):
        density = activate_density(sigma, opts)
        alpha = valid if opaque else (1 - torch.exp(-density * delta)) * valid
        excl = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], dim=1), dim=1)
        w = trans[a, None] * alpha * excl[:, :-1]
        acc_rgb[a] += (w[..., None] * rgb).sum(1)
        acc_depth[a] += (w * z).sum(1)
        acc_w[a] += w.sum(1)
        trans[a] = trans[a] * excl[:, -1]
        if acc_n is not None:
            keep = (w > 1e-6) & valid.bool()
            if keep.any():
                normals = torch.zeros_like(pts)
                normals[keep] = field_normals(field, pts[keep][None], 1)[0]
                acc_n[a] += (w[..., None] * normals).sum(1)

    # 3. rounds of samples, front to back, with early termination
    alive = torch.nonzero(n > 0).squeeze(1)
    k0, k = 0, 8
    while alive.numel() > 0:
        # every ray still alive (haze, fog): a slice, so the reads and updates below are views, not copies
        a = slice(None) if alive.numel() == rays else alive
        k = min(k, m_max - k0)
        ks = k0 + torch.arange(k, device=dev, dtype=dt)
        valid = ks[None] < n[a, None].to(dt)  # [A, K]
        z = z_all[a, k0:k0 + k]
        delta = delta_all[a, k0:k0 + k] * valid
        pts = o[a, None] + d[a, None] * z[..., None]
        rgb = torch.zeros(*z.shape, 3, device=dev, dtype=dt)
        sigma = torch.zeros(z.shape, device=dev, dtype=dt)
        if valid.all():
            rgb_v, sigma_v = _eval(field, pts.reshape(-1, 3))
            rgb, sigma = rgb_v.reshape(rgb.shape).to(dt), sigma_v.reshape(sigma.shape).to(dt)
        else:
            rgb_v, sigma_v = _eval(field, pts[valid])
            rgb[valid], sigma[valid] = rgb_v.to(dt), sigma_v.to(dt)
        evaluated += int(valid.sum())
        accumulate(a, z, valid.to(dt), rgb, sigma, delta, pts)
        k0 += k
        k = min(2 * k, 32)
        alive = alive[(trans[a] > accel.min_transmittance) & (n[a] > k0)]

    # 4. the tail sample at ray_end (its interval as in the plain path: opaque unless a background
    #    network or an open far end takes over; with last_back it takes whatever the ray has left)
    alive = torch.nonzero(trans > accel.min_transmittance).squeeze(1)
    if alive.numel() > 0:
        z = torch.full((alive.numel(), 1), t1, device=dev, dtype=dt)
        pts = o[alive, None] + d[alive, None] * z[..., None]
        rgb, sigma = _eval(field, pts.reshape(-1, 3))
        evaluated += alive.numel()
        accumulate(alive, z, torch.ones_like(z), rgb.reshape(-1, 1, 3).to(dt), sigma.reshape(-1, 1).to(dt),
                   torch.full_like(z, last_delta), pts, opaque=opts.last_back)
    out = {"rgb": acc_rgb, "depth": acc_depth[:, None], "opacity": acc_w[:, None], "transmittance": trans,
           "evaluated": evaluated}
    if acc_n is not None:
        out["normals"] = F.normalize(acc_n, dim=-1)
    return out


def needs_plain_path(field, opts: RenderOptions) -> Optional[str]:
    """Why this request must use the plain path, or None when the accelerated one gives the same image."""
    if opts.density_noise_std > 0:
        return "density noise (training) is on"
    if opts.density_cut_quantile is not None:
        return "the density quantile cut depends on each chunk's densities"
    if _single_fields(field) is None:
        return "a batch of several latents for a field without select()"
    return None


def _render_image(field, camera: Camera, resolution: Union[int, Tuple[int, int]], opts: RenderOptions,
                  grid: OccupancyGrid, accel: AccelOptions, stats: dict, patch: Optional[PatchParams] = None,
                  should_cancel: Optional[Callable[[], bool]] = None,
                  progress: Optional[Callable[[int, int], None]] = None,
                  pixel_order: Optional[torch.Tensor] = None,
                  on_chunk: Optional[Callable[[int, int, dict], None]] = None) -> RenderOutput:
    """`core.renderer.render` with empty-space skipping (see FastRenderer.render); `stats` receives
    the number of field evaluations and why the plain path ran (None when it did not)."""
    reason = needs_plain_path(field, opts)
    stats.update(fallback=reason, evaluated=0)
    if reason is not None:
        return render(field, camera, resolution, opts, patch, should_cancel, progress)
    if grid.density_key != (opts.density_shift, opts.density_activation):
        raise ValueError("the occupancy grid was built for another density shift or activation")
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    batch = len(camera)
    if field.batch_size != batch:
        raise ValueError(f"{batch} cameras for a field of {field.batch_size} latents")
    fields = _single_fields(field)
    origins, dirs = camera.rays((h, w), patch)
    first = opts.sample_offset * h * w
    ray_ids = torch.arange(first, first + batch * h * w, device=origins.device).reshape(batch, h * w)
    has_bg = has_background(field)
    last_delta = last_interval(has_bg, opts)
    chunk = max(1, accel.max_points_per_chunk // max(accel.max_samples, 1))
    order = None if pixel_order is None else pixel_order.to(origins.device)
    if order is not None and order.numel() != h * w:
        raise ValueError(f"pixel_order has {order.numel()} indices for {h * w} pixels")
    images = {}
    total = batch * h * w
    for b in range(batch):
        buffers = {}
        for start in range(0, h * w, chunk):
            if should_cancel is not None and should_cancel():
                raise RenderCancelled()
            sl = slice(start, start + chunk) if order is None else order[start:start + chunk]
            o, d, ids = origins[b, sl], dirs[b, sl], ray_ids[b, sl]
            out = _march(fields[b], grid, b, o, d, ids, opts, accel, last_delta)
            stats["evaluated"] += out["evaluated"]
            background = background_along_rays(fields[b].background, o, d, ids, opts, 1) if has_bg else None
            rgb = add_backdrop(out["rgb"], out["transmittance"][:, None], out["opacity"], background,
                               opts.white_background)
            part = {"rgb": rgb, "depth": out["depth"], "opacity": out["opacity"]}
            if "normals" in out:
                part["normals"] = out["normals"]
            for key, value in part.items():
                if key not in buffers:
                    buffers[key] = value.new_zeros((h * w, value.shape[1]))
                buffers[key][sl] = value
            done = min(start + chunk, h * w)
            if progress is not None:
                progress(b * h * w + done, total)
            if on_chunk is not None:
                on_chunk(b, done, buffers)
        for key, buffer in buffers.items():
            images.setdefault(key, []).append(buffer)
    image = lambda ts: torch.stack(ts).transpose(1, 2).reshape(batch, -1, h, w)
    return RenderOutput(rgb=image(images["rgb"]), depth=image(images["depth"]), opacity=image(images["opacity"]),
                        normals=image(images["normals"]) if "normals" in images else None)


class FastRenderer:
    """The accelerated exact path bound to one field (one latent batch): holds its occupancy grid.
    Build it through `core.rendering.field_renderer("accelerated", field, options, accel=...)`.

        fast = field_renderer("accelerated", field, options)   # builds the grid once (the per-latent set-up)
        out = fast.render(camera, 256)                         # RenderOutput, as the plain path gives
        out = fast.render(camera, 256, normals=True)           # RenderOptions overrides
        more = fast.with_samples(2.0)                          # same field and grid, twice the samples

    The grid is rebuilt only when a render asks for another density shift or activation; `grid`
    passes one already built for this field (another renderer's, or one with other knobs).
    """

    path = "accelerated"

    def __init__(self, field, options: RenderOptions, accel: AccelOptions = AccelOptions(),
                 grid: Optional[OccupancyGrid] = None):
        self.field, self.options, self.accel = field, options, accel
        self.grid = grid if grid is not None else OccupancyGrid(field, options, accel)
        self.last_stats: dict = {}

    def with_accel(self, accel: AccelOptions) -> "FastRenderer":
        """A renderer of the same field and options with other knobs of the march, sharing this one's
        occupancy grid (the grid's own knobs, resolution and threshold, stay those it was built with)."""
        return FastRenderer(self.field, self.options, accel, grid=self.grid)

    def with_samples(self, multiplier: float) -> "FastRenderer":
        """`with_accel` with the samples per ray scaled by `multiplier`: max_samples x multiplier, the
        smallest spacing / multiplier (the tail sample at ray_end stays one)."""
        accel, opts = self.accel, self.options
        min_step = accel.min_step if accel.min_step is not None else (opts.ray_end - opts.ray_start) / 256
        return self.with_accel(replace(accel, max_samples=max(1, int(round(accel.max_samples * multiplier))),
                                       min_step=min_step / multiplier))

    def render(self, cameras: Camera, resolution: Union[int, Tuple[int, int]],
               options: Optional[RenderOptions] = None, *, patch: Optional[PatchParams] = None,
               should_cancel: Optional[Callable[[], bool]] = None,
               progress: Optional[Callable[[int, int], None]] = None, pixel_order: Optional[torch.Tensor] = None,
               on_chunk: Optional[Callable[[int, int, dict], None]] = None, **option_overrides) -> RenderOutput:
        """The core.rendering.FieldRenderer contract, plus a coarse-to-fine order of the rays:
        `pixel_order` (a permutation of the h*w pixel indices, row-major) marches the rays in that
        order (a ray's colour does not depend on which rays share its chunk, so the image is the same
        up to float rounding and early termination at a round boundary); `on_chunk(b, done, buffers)`
        is called after every chunk with the number of pixels of latent b done so far, in that order,
        and the flat [h*w, C] buffers being filled (pixels not done yet hold zeros). Together they let
        a viewer show a coarse lattice of pixels first and refine it (viewer/scene.py).

        Where acceleration would change the image (needs_plain_path) the plain path renders it;
        `last_stats` then says why ("fallback") and counts the field evaluations otherwise."""
        opts = options if options is not None else self.options
        if option_overrides:
            opts = replace(opts, **option_overrides)
        if self.grid.density_key != (opts.density_shift, opts.density_activation):
            self.grid = OccupancyGrid(self.field, opts, self.accel)
        device = getattr(self.field, "device", None)
        if device is not None:
            cameras = cameras.to(device)
        self.last_stats = {}
        with torch.inference_mode():
            return _render_image(self.field, cameras, resolution, opts, self.grid, self.accel, self.last_stats,
                                 patch, should_cancel, progress, pixel_order, on_chunk)
