"""core/image_metrics.py against hand-computed values and an independent numpy SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trigan.core.image_metrics import psnr, silhouette_iou, ssim


def _images(seed: int, shape=(3, 16, 16)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def test_psnr_of_a_constant_offset():
    # an offset of 0.1 on the [-1, 1] scale is 0.05 on [0, 1]: MSE 0.0025, PSNR 10 log10(400)
    a = torch.full((3, 8, 8), -0.2)
    assert psnr(a, a + 0.1) == pytest.approx(10 * math.log10(400), abs=1e-4)   # float32 input
    assert psnr(a, a) == math.inf


def test_psnr_with_a_mask_and_a_batch():
    a = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    b = a.clone()
    b[:, :, :, 2:] = 0.2                     # right half differs by 0.1 on [0, 1]
    mask = torch.zeros(1, 4, 4, dtype=torch.float64)
    assert psnr(a, b, mask + (torch.arange(4) < 2)) == math.inf     # only the equal half counts
    mask[:, :, 1:3] = 1                      # one equal and one different column per row: MSE 0.01 / 2
    assert psnr(a, b, mask) == pytest.approx(10 * math.log10(200), abs=1e-9)
    # per-image PSNRs averaged: 0.01 everywhere (20 dB) and 0.01 on half (23.01 dB)
    c = b.clone()
    c[0] = 0.2
    assert psnr(a, c) == pytest.approx((20 + 10 * math.log10(200)) / 2, abs=1e-9)


def _reference_ssim(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """Wang et al. 2004 written directly: every valid window position, weighted sums in numpy."""
    a, b = (a + 1) / 2, (b + 1) / 2
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for c in range(a.shape[0]):
        pa = np.lib.stride_tricks.sliding_window_view(a[c], (size, size))
        pb = np.lib.stride_tricks.sliding_window_view(b[c], (size, size))
        mu_a, mu_b = (pa * w).sum((-1, -2)), (pb * w).sum((-1, -2))
        var_a = (w * (pa - mu_a[..., None, None]) ** 2).sum((-1, -2))
        var_b = (w * (pb - mu_b[..., None, None]) ** 2).sum((-1, -2))
        cov = (w * (pa - mu_a[..., None, None]) * (pb - mu_b[..., None, None])).sum((-1, -2))
        s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        values.append(s.mean())
    return float(np.mean(values))


@pytest.mark.parametrize("side, window", [(16, 11), (8, 7)])   # 8 pixels: window clipped to 7 (odd)
def test_ssim_matches_an_independent_computation(side, window):
    a = _images(1, (3, side, side))
    b = (a + 0.8 * _images(2, (3, side, side))).clamp(-1, 1)
    expected = _reference_ssim(a.numpy(), b.numpy(), window)
    # float64 throughout; the two differ only in summation order
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert 0.2 < expected < 0.95          # a case that is neither trivial nor degenerate


def test_ssim_of_identical_and_of_constant_images():
    a = _images(3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a[None], a[None]) == pytest.approx(1.0, abs=1e-12)
    # constant images: no variance, so SSIM is the luminance term (2 ma mb + C1) / (ma^2 + mb^2 + C1)
    ma, mb = 0.25, 0.75                   # [0, 1] levels of -0.5 and 0.5
    expected = (2 * ma * mb + 1e-4) / (ma ** 2 + mb ** 2 + 1e-4)
    assert ssim(torch.full((3, 12, 12), -0.5), torch.full((3, 12, 12), 0.5)) == pytest.approx(expected, abs=1e-7)


def test_silhouette_iou_of_overlapping_rectangles():
    a = torch.zeros(1, 10, 10)
    b = torch.zeros(1, 10, 10)
    a[:, 0:4, 0:5] = 0.9                  # 20 pixels
    b[:, 2:6, 0:5] = 0.8                  # 20 pixels, 10 shared
    b[:, 9, 9] = 0.5                      # not above the threshold
    assert silhouette_iou(a, b) == pytest.approx(10 / 30)
    assert silhouette_iou(a, a) == 1.0
    assert silhouette_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)) == 1.0
    assert silhouette_iou(a, b, threshold=0.85) == 0.0


def test_shapes_must_agree():
    with pytest.raises(ValueError):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 5, 5))
    with pytest.raises(ValueError):
        silhouette_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))
