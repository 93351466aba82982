"""Tri-plane decoder: a StyleGAN2 'skip' synthesis stack from 4^2 up to the tri-plane resolution.

It outputs `[B, 3 * feat_dim, R, R]`: channels [0, C) are the (x, y) plane, [C, 2C) the (x, z)
plane and [2C, 3C) the (y, z) plane. Block and layer names (`b4.const`, `b8.conv0.affine`,
`b8.torgb`, ...) match EpiGRAF's `synthesis.tri_plane_decoder` so official weights load by name.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
from torch import nn

from trigan.core.layers import (
    LRELU_GAIN,
    FullyConnectedLayer,
    bias_act,
    make_resample_filter,
    modulated_conv2d,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up-sampling) + noise + bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 use_noise: bool = True, conv_clamp: Optional[float] = None, kernel_size: int = 3):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", make_resample_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode="const") -> torch.Tensor:
        """noise_mode: "const" (the stored noise map), "random", "none", or a callable
        (batch, resolution, device, dtype) -> [B, 1, R, R] standard normal maps (the trainer's
        per-sample noise, which does not depend on how a batch is split over processes)."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and callable(noise_mode):
            noise = noise_mode(x.shape[0], self.resolution, x.device, x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter)
        return bias_act(x, self.bias, "lrelu", gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, to the output channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float] = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | up-sampling conv0) -> conv1 -> toRGB added to the up-sampled skip."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, use_noise: bool = True, conv_clamp: Optional[float] = None):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("resample_filter", make_resample_filter())
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        use_noise=use_noise, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    use_noise=use_noise, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "const"):
        w_iter = iter(ws.unbind(dim=1))
        if self.conv0 is None:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        y = self.torgb(x, next(w_iter))
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


def decoder_channels(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


class TriPlaneDecoder(nn.Module):
    """Blocks b4, b8, ..., bR. Each toRGB shares its w with the next block's first conv."""

    def __init__(self, w_dim: int, resolution: int, out_channels: int, channel_base: int,
                 channel_max: int, use_noise: bool = True, conv_clamp: Optional[float] = None):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"tri-plane resolution must be a power of two >= 4, got {resolution}")
        if channel_base // resolution < 1:
            raise ValueError(f"tri-plane channel_base {channel_base} gives no channels at resolution {resolution} "
                             f"(channels = min(channel_base // resolution, channel_max))")
        self.resolution, self.out_channels = resolution, out_channels
        self.block_resolutions: List[int] = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else decoder_channels(res // 2, channel_base, channel_max)
            block = SynthesisBlock(in_ch, decoder_channels(res, channel_base, channel_max), w_dim, res,
                                   out_channels, use_noise=use_noise, conv_clamp=conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last toRGB has no following conv to share with

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        if not callable(noise_mode) and noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, w_idx: w_idx + block.num_conv + block.num_torgb], noise_mode)
            w_idx += block.num_conv
        return img
