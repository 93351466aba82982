"""The adversarial objective (EpiGRAF 5.2): non-saturating logistic loss, lazy R1, and the blur of
D's inputs that fades out early in training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def blur_sigma(cur_nimg: float, init_sigma: float, fade_kimg: float) -> float:
    """sigma fades linearly from init_sigma to 0 over fade_kimg thousand images."""
    if fade_kimg <= 0 or init_sigma <= 0:
        return 0.0
    return max(1.0 - cur_nimg / (fade_kimg * 1e3), 0.0) * init_sigma


def blur_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """1-D kernel 2^(-(x/sigma)^2) on x = -floor(3 sigma) .. floor(3 sigma), normalised to sum 1."""
    radius = int(math.floor(sigma * 3))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp2(-(x / sigma).square())
    return k / k.sum()


DEPTH_BLUR_WIDTH = 30.0


def depth_blur_kernel(sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """3DGP's second blur of the depth channel: the same radius floor(3 sigma), but a fixed width,
    2^(-(x/30)^2) (nearly a box for radii up to 30), normalised to sum 1."""
    radius = int(math.floor(sigma * 3))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp2(-(x / DEPTH_BLUR_WIDTH).square())
    return k / k.sum()


def blur_images(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable blur of [B, C, H, W] with the kernel above; reflect padding keeps the border honest
    (zero padding would darken the edges of every patch)."""
    if sigma <= 0:
        return images
    return separable_blur(images, blur_kernel(sigma, images.dtype, images.device))


def blur_depth_channel(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """[B, 4, H, W] RGB + depth: the depth channel blurred again with depth_blur_kernel(sigma) while
    the blur fades (identity at sigma 0); the colour channels pass unchanged."""
    if sigma <= 0:
        return images
    depth = separable_blur(images[:, 3:], depth_blur_kernel(sigma, images.dtype, images.device))
    return torch.cat([images[:, :3], depth], dim=1)


def separable_blur(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of [B, C, H, W] with the odd 1-D kernel k along x, then y (reflect
    padding; a kernel wider than the image is cropped to fit and renormalised)."""
    radius = k.numel() // 2
    if radius == 0:
        return images
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    pad_w, pad_h = min(radius, w - 1), min(radius, h - 1)
    # Reflection cannot reach past the image: a kernel wider than the patch is cropped to fit.
    kx = k[radius - pad_w: radius + pad_w + 1]
    kx = kx / kx.sum()
    ky = k[radius - pad_h: radius + pad_h + 1]
    ky = ky / ky.sum()
    x = F.conv2d(F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect"), kx.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, pad_h, pad_h), mode="reflect"), ky.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: G minimises softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def opacity_binarity(opacity: torch.Tensor) -> torch.Tensor:
    """Mean of o (1 - o) over the rendered opacities o in [0, 1]: 0 where every ray is empty or solid,
    at most 1/4. Its gradient 1 - 2o pushes each ray away from 1/2 towards the nearer end, so a model
    that draws its objects as a half-transparent haze over the background is asked to commit."""
    o = opacity.clamp(0.0, 1.0)
    return (o * (1 - o)).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm of dD/dx at the real inputs, [B] (differentiable: create_graph)."""
    grad, = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True, only_inputs=True)
    return grad.square().flatten(1).sum(dim=1)


def auto_gamma(resolution: int, batch_size: int) -> float:
    """StyleGAN2-ADA's heuristic, EpiGRAF's `gamma: auto`: 0.0002 * resolution^2 / batch."""
    return 0.0002 * resolution ** 2 / batch_size
