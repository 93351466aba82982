"""Patch-wise training (EpiGRAF 4): which part of each image D looks at, and cutting real patches.

A patch is an isotropic scale s in [min_scale, max_scale] and an offset (ox, oy) in [0, 1 - s]^2,
in image units with (0, 0) the bottom-left corner (NDC y points up). The generator renders the
patch by shooting rays only into it (`Camera.rays(resolution, patch)`); real patches are cut from
the full image on the very same grid, so both sides see identical geometry.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from trigan.core.cameras import PatchParams
from trigan.training.config import PatchConfig


def min_patch_scale(cfg: PatchConfig, patch_resolution: int, img_resolution: int) -> float:
    return cfg.min_scale if cfg.min_scale is not None else min(1.0, patch_resolution / img_resolution)


def _progress(kimg: float, anneal_kimg: float) -> float:
    return 1.0 if anneal_kimg <= 0 else min(max(kimg / anneal_kimg, 0.0), 1.0)


def patch_beta(cfg: PatchConfig, kimg: float) -> float:
    """The Beta distribution's second parameter, annealed linearly from beta_start to beta_end."""
    return cfg.beta_start + (cfg.beta_end - cfg.beta_start) * _progress(kimg, cfg.anneal_kimg)


def uniform_min_scale(cfg: PatchConfig, kimg: float, target_min: float) -> float:
    """The 'uniform' schedule's lower bound, annealed linearly from 1 to the target."""
    return 1.0 + (target_min - 1.0) * _progress(kimg, cfg.anneal_kimg)


def sample_patches(cfg: PatchConfig, batch: int, kimg: float, min_scale: float, group_size: int,
                   generator: Optional[torch.Generator] = None) -> PatchParams:
    """Patch parameters for a batch; consecutive groups of `group_size` samples share one patch
    (the minibatch-std groups then compare patches of the same place and size)."""
    groups = -(-batch // max(group_size, 1))
    if cfg.dist == "full":
        scale = torch.ones(groups)
    elif cfg.dist == "beta":
        # Beta(1, b) by its inverse CDF, x = 1 - (1 - u)^(1/b), so that it draws from `generator`.
        u = torch.rand(groups, generator=generator, dtype=torch.float64)
        x = 1 - (1 - u) ** (1 / patch_beta(cfg, kimg))
        scale = (min_scale + (cfg.max_scale - min_scale) * x).float()
    elif cfg.dist == "uniform":
        lo = uniform_min_scale(cfg, kimg, min_scale)
        scale = lo + (cfg.max_scale - lo) * torch.rand(groups, generator=generator)
    else:
        raise ValueError(f"unknown patch distribution {cfg.dist!r} (expected beta, uniform or full)")
    scale = scale.clamp(max=1.0)
    offset = torch.rand(groups, 2, generator=generator) * (1 - scale)[:, None]
    rep = max(group_size, 1)
    return PatchParams(scale=scale.repeat_interleave(rep)[:batch], offset=offset.repeat_interleave(rep, dim=0)[:batch])


def patch_grid(patch: PatchParams, resolution: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """grid_sample coordinates [B, P, P, 2] of the patch's pixel centres in the full image.

    The renderer's pixel grid is corner-aligned (NDC -1..1 hits the outermost pixel centres), which
    is grid_sample's align_corners=True; grid y runs top to bottom, NDC y bottom to top."""
    lin = torch.linspace(-1, 1, resolution, dtype=dtype, device=device)
    ys, xs = torch.meshgrid(-lin, lin, indexing="ij")                  # NDC, top row first
    s = patch.scale.to(device=device, dtype=dtype)[:, None, None]
    ox = patch.offset[:, 0].to(device=device, dtype=dtype)[:, None, None]
    oy = patch.offset[:, 1].to(device=device, dtype=dtype)[:, None, None]
    x = (xs + 1) * s - 1 + 2 * ox
    y = (ys + 1) * s - 1 + 2 * oy
    return torch.stack([x, -y], dim=-1)


def extract_patches(images: torch.Tensor, patch: PatchParams, resolution: int) -> torch.Tensor:
    """Cut patches [B, C, P, P] from full images [B, C, H, W] (bilinear, as EpiGRAF: no pre-filter)."""
    grid = patch_grid(patch, resolution, images.dtype, images.device)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
