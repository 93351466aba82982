"""Non-Flatness Score (NFS, 3DGP): how many depth levels a generator's geometry really uses.

    nfs = generator_nfs(G, num=256)                       # 3DGP's nfs256
    nfs_data = dataset_nfs(dataset)                       # the same measure on a dataset's depth maps
    value = nfs_of_depth_maps(depth, near, far)           # any depth maps [N, H, W] or [N, 1, H, W]

Definition (3DGP, `reference/3dgp.md` section 8): render depth with the low-density cut (after the
density activation, every density below the median of the rendered chunk's densities is set to 0, so
thin fog no longer pulls depth toward the middle of the ray), clamp it to the ray bounds
[ray_start, ray_end], histogram every image's pixels into 64 equal bins over those bounds, and take
exp of the histogram's entropy (in nats). That is the "effective number of occupied depth bins":
1 for a flat image (every pixel in one bin), 64 for depth spread evenly over the whole range.
NFS is the mean over images.

Fakes are rendered like 3DGP's: random z, psi 1, labels from `conditioning` (or uniformly random
classes), and the camera at the model's frontal pose (the mean pose for dataset poses, else the
prior's centre) with fov and look-at drawn from the prior. A model with a learned camera generator
(3DGP) renders from that camera's posterior (core.metrics.sample_renders does it), so its origin
generally moves off frontal; other models render from the frontal camera as is.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch

from trigan.core.cameras import Camera, Pose, sample_camera_prior
from trigan.core.compositing import depth_to_far_end
from trigan.core.errors import TriganError
from trigan.core.metrics import sample_renders

Progress = Optional[Callable[[int, int], None]]
# (n, generator) -> (one-hot labels [n, c_dim] or None, cameras for n images); as core.metrics.Conditioning
Conditioning = Callable[[int, torch.Generator], Tuple[Optional[torch.Tensor], Camera]]

NFS_BINS = 64
NFS_NUM = 256                 # 3DGP's nfs256
NFS_DENSITY_CUT = 0.5         # 3DGP's cut_quantile
DEPTH_SCALE = 65535.0         # dataset depth maps are on the 16-bit scale


class NFSError(TriganError):
    """Depth maps that cannot be scored (wrong shape, empty range, a dataset without depth)."""


def _as_depth_stack(depths) -> torch.Tensor:
    d = torch.as_tensor(np.asarray(depths) if not isinstance(depths, torch.Tensor) else depths)
    if d.ndim == 4 and d.shape[1] == 1:
        d = d[:, 0]
    if d.ndim == 2:
        d = d[None]
    if d.ndim != 3:
        raise NFSError(f"expected depth maps [N, H, W] or [N, 1, H, W], got shape {tuple(d.shape)}")
    return d.to(torch.float64)


def nfs_per_image(depths, near: float, far: float, bins: int = NFS_BINS, mask=None) -> torch.Tensor:
    """exp(entropy) of each depth map's histogram: float64 [N].

    Depth is clamped to [near, far] and binned into `bins` equal bins (the last one closed, like
    torch.histc). `mask` (same shape, bool) keeps only the pixels to count; an image without any
    counted pixel scores nan."""
    near, far = float(near), float(far)
    if not far > near:
        raise NFSError(f"depth range [{near}, {far}] is empty: need far > near")
    if int(bins) < 1:
        raise NFSError(f"bins must be >= 1, got {bins}")
    bins = int(bins)
    d = _as_depth_stack(depths)
    n = d.shape[0]
    flat = d.reshape(n, -1).clamp(near, far)
    idx = ((flat - near) / (far - near) * bins).floor().long().clamp(0, bins - 1)
    weight = torch.ones_like(flat)
    if mask is not None:
        m = _as_depth_stack(torch.as_tensor(mask)).reshape(n, -1)
        if m.shape != flat.shape:
            raise NFSError(f"mask shape {tuple(torch.as_tensor(mask).shape)} does not match the depth maps "
                           f"{tuple(torch.as_tensor(depths).shape)}")
        weight = (m != 0).to(torch.float64)
    hist = torch.zeros(n, bins, dtype=torch.float64).scatter_add_(1, idx, weight)
    total = hist.sum(dim=1, keepdim=True)
    p = hist / total
    entropy = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(dim=1)
    out = torch.exp(entropy)
    return torch.where(total[:, 0] > 0, out, torch.full_like(out, float("nan")))


def nfs_of_depth_maps(depths, near: float, far: float, bins: int = NFS_BINS, mask=None) -> float:
    """NFS of depth maps [N, H, W] or [N, 1, H, W]: the mean over images of exp(histogram entropy)."""
    scores = nfs_per_image(depths, near, far, bins, mask)
    scores = scores[~torch.isnan(scores)]
    if scores.numel() == 0:
        raise NFSError("no depth pixels to score (every image is empty or masked out)")
    return float(scores.mean())


# ---------------------------------------------------------------------------------------------------
# Generators

def frontal_pose(G) -> Tuple[float, float]:
    """(yaw, pitch) the model looks at its subjects from: the dataset mean pose for models trained on
    dataset poses (dist custom), else the centre of the camera prior."""
    cam = G.cfg.camera
    if cam.dist == "custom":
        start = Pose.for_model(cam)
        return start.yaw, start.pitch
    return float(cam.yaw_mean), float(cam.pitch_mean)


def frontal_conditioning(G, labels_from: Optional[Conditioning] = None) -> Conditioning:
    """Labels from `labels_from` (default: uniformly random classes); prior cameras at the frontal pose
    with fov and look-at drawn from the model's prior, as 3DGP's NFS samples them (before its camera
    generator, which sample_renders applies)."""
    yaw, pitch = frontal_pose(G)
    cam = G.cfg.camera

    def draw(n: int, generator: torch.Generator):
        if labels_from is not None:
            c, _ = labels_from(n, generator)
        else:
            c = None
            if G.c_dim > 0:
                classes = torch.randint(G.c_dim, (n,), generator=generator)
                c = torch.nn.functional.one_hot(classes, G.c_dim).float()
        prior = sample_camera_prior(cam, n, generator)
        camera = Camera.from_angles(torch.full((n,), yaw), torch.full((n,), pitch), radius=cam.radius,
                                    fov=prior.fov, look_at=prior.look_at, batch=n)
        return c, camera
    return draw


def generator_depths(G, num: int, batch: int = 16, conditioning: Optional[Conditioning] = None, seed: int = 0,
                     resolution=None, density_cut: Optional[float] = NFS_DENSITY_CUT, progress: Progress = None):
    """Yield depth batches [n, 1, H, W] of `num` fakes rendered with the low-density cut (not clamped).

    A model whose far end is open (`render.opaque_far_end` false) lets empty rays through: they count
    as depth ray_end, where a dataset's maps put the background and an opaque far end puts it too."""
    draw = conditioning if conditioning is not None else frontal_conditioning(G)
    opts = G.render_options()
    open_end = not opts.opaque_far_end and G.cfg.background.type is None
    for out in sample_renders(G, num, batch, draw, seed, resolution, progress=progress,
                              density_cut_quantile=density_cut):
        depth = depth_to_far_end(out.depth, out.opacity, opts.ray_end) if open_end else out.depth
        yield depth.detach().cpu()


def generator_nfs(G, num: int = NFS_NUM, batch: int = 16, conditioning: Optional[Conditioning] = None,
                  seed: int = 0, resolution=None, density_cut: Optional[float] = NFS_DENSITY_CUT,
                  bins: int = NFS_BINS, progress: Progress = None) -> float:
    """NFS of `num` fakes of G (3DGP's nfs256 with num=256): depth at `resolution` (default the model's)
    rendered with the low-density cut (`density_cut` quantile; None renders without it), clamped to the
    model's ray bounds, 64 bins. Deterministic for (G, seed, batch)."""
    if num < 1:
        raise NFSError(f"num must be >= 1, got {num}")
    near, far = G.cfg.camera.ray_start, G.cfg.camera.ray_end
    scores = [nfs_per_image(depth, near, far, bins)
              for depth in generator_depths(G, num, batch, conditioning, seed, resolution, density_cut, progress)]
    return float(torch.cat(scores).mean())


# ---------------------------------------------------------------------------------------------------
# Datasets and depth files

def dataset_depth_range(dataset) -> Tuple[float, float]:
    """The world-unit [near, far] that a dataset's 16-bit depth spans (dataset.json "depth_range",
    written by `trigan dataset synth`), else the raw 16-bit scale [0, 65535] (relative depth)."""
    meta = getattr(dataset, "meta", None) or {}
    rng = meta.get("depth_range") if isinstance(meta, dict) else None
    try:
        near, far = float(rng[0]), float(rng[1])
        if far > near:
            return near, far
    except (TypeError, ValueError, IndexError):
        pass
    return 0.0, DEPTH_SCALE


def dataset_nfs(dataset, bins: int = NFS_BINS, max_items: Optional[int] = None, progress: Progress = None) -> float:
    """NFS of a dataset's own depth maps (items with a "depth" [1, H, W] on the 16-bit scale).

    Depth is binned over its whole 16-bit range; for a dataset.json with a "depth_range" [near, far]
    that is the same as binning the world-unit depth over [near, far], since the encoding is linear.
    Mirrored copies score like their originals, so a mirrored dataset gives the same value."""
    if not getattr(dataset, "has_depth", False):
        raise NFSError(f"{getattr(dataset, 'path', 'dataset')}: has no depth maps (<stem>_depth.png beside "
                       "each image) to compute nfs_data from")
    total = len(dataset) if max_items is None else min(len(dataset), int(max_items))
    scores = []
    for i in range(total):
        scores.append(nfs_per_image(dataset[i]["depth"].to(torch.float64), 0.0, DEPTH_SCALE, bins))
        if progress is not None:
            progress(i + 1, total)
    if not scores:
        raise NFSError("no depth maps to score")
    return float(torch.cat(scores).mean())
