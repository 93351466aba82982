"""How close two images are: PSNR, SSIM and silhouette IoU.

Images follow the renderer's convention (float [3, H, W] or [B, 3, H, W] in [-1, 1]); the metrics
are those of the [0, 1] images ((x + 1) / 2, clamped), so the numbers compare with published ones.
Opacities are [1, H, W] or [B, 1, H, W] in [0, 1]. Every function returns a plain float (the mean
over the batch) and computes in float64 on the CPU: these are reporting numbers, not losses
(training/perceptual.py has the differentiable, mask-weighted versions).

* PSNR: 10 log10(1 / MSE) of the [0, 1] images (peak 1), optionally only over a mask's pixels;
  identical images give +inf.
* SSIM: Wang et al. 2004 with a Gaussian window (sigma 1.5, 11 taps, fewer on images smaller than
  that), valid positions only (no padding), K1 = 0.01, K2 = 0.03, data range 1; the mean over
  positions and channels.
* Silhouette IoU: |A and B| / |A or B| of opacities thresholded at 0.5; two empty silhouettes agree
  perfectly (1.0).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _batched(x: torch.Tensor, name: str) -> torch.Tensor:
    """[C, H, W] or [B, C, H, W] -> [B, C, H, W] float64 on the CPU, detached."""
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a tensor [C, H, W] or [B, C, H, W], got {shape}")
    x = x.detach().to("cpu", torch.float64)
    return x[None] if x.ndim == 3 else x


def _unit_pair(a: torch.Tensor, b: torch.Tensor):
    """Both images batched and mapped from [-1, 1] to [0, 1] (clamped); shapes must agree."""
    a, b = _batched(a, "a"), _batched(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return ((a + 1) / 2).clamp(0, 1), ((b + 1) / 2).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """PSNR in dB of two [-1, 1] images as [0, 1] images (peak-to-peak 2 on the [-1, 1] scale).

    `mask` ([1, H, W] or [B, 1, H, W], weights in [0, 1]) restricts the mean squared error to the
    masked pixels (weighted). With a batch, the mean of the per-image PSNRs. +inf where equal."""
    a, b = _unit_pair(a, b)
    sq = (a - b) ** 2
    if mask is None:
        mse = sq.mean(dim=(1, 2, 3))
    else:
        m = _batched(mask, "mask").clamp(0, 1).expand(a.shape[0], 1, *a.shape[2:])
        weight = m.sum(dim=(1, 2, 3)) * a.shape[1]
        if bool((weight <= 0).any()):
            raise ValueError("psnr: the mask selects no pixels")
        mse = (sq * m).sum(dim=(1, 2, 3)) / weight
    values = [math.inf if v <= 0 else 10 * math.log10(1.0 / v) for v in mse.tolist()]
    return float(sum(values) / len(values))


def gaussian_window(size: int, sigma: float = SSIM_SIGMA, dtype=torch.float64) -> torch.Tensor:
    """A normalised 1-D Gaussian of `size` taps centred between them (sums to 1)."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_window_size(height: int, width: int) -> int:
    """11 taps, clipped to the image (odd, so the window has a centre pixel)."""
    size = min(SSIM_WINDOW, int(height), int(width))
    return size if size % 2 == 1 else size - 1


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over [B, C, H, W], valid positions only."""
    c = x.shape[1]
    k = g.to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two [-1, 1] images as [0, 1] images (see the module doc); 1.0 when equal."""
    a, b = _unit_pair(a, b)
    g = gaussian_window(ssim_window_size(a.shape[2], a.shape[3]))
    mu_a, mu_b = _blur_valid(a, g), _blur_valid(b, g)
    var_a = _blur_valid(a * a, g) - mu_a ** 2
    var_b = _blur_valid(b * b, g) - mu_b ** 2
    cov = _blur_valid(a * b, g) - mu_a * mu_b
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def silhouette_iou(opacity_a: torch.Tensor, opacity_b: torch.Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of the pixels whose opacity exceeds `threshold`, pooled over the
    batch; 1.0 when both silhouettes are empty."""
    a, b = _batched(opacity_a, "opacity_a"), _batched(opacity_b, "opacity_b")
    if a.shape != b.shape:
        raise ValueError(f"opacities differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    in_a, in_b = a > threshold, b > threshold
    union = int((in_a | in_b).sum())
    return 1.0 if union == 0 else int((in_a & in_b).sum()) / union
