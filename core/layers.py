"""StyleGAN2 building blocks in plain PyTorch (no compiled extensions).

The parameter layout (names, shapes, raw storage scale) follows the StyleGAN2/EpiGRAF convention so
that official weights load one to one:

* Equalized learning rate: weights are stored at N(0, 1) / lr_multiplier and scaled at run time
  by lr_multiplier / sqrt(fan_in); biases are stored raw and scaled by lr_multiplier.
* Leaky ReLU has slope 0.2 and an output gain of sqrt(2) so activations keep unit variance.
* Modulated convolutions scale input channels by per-sample styles, then demodulate so each output
  channel has unit expected norm.
* Up-sampling inserts zeros and low-pass filters with the separable [1, 3, 3, 1] kernel.

Everything works on any device and dtype; nothing here calls `.cuda()`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def lrelu_gain(activation: str) -> float:
    return LRELU_GAIN if activation == "lrelu" else 1.0


def bias_act(x: torch.Tensor, bias: Optional[torch.Tensor] = None, activation: str = "linear",
             gain: Optional[float] = None, clamp: Optional[float] = None, dim: int = 1) -> torch.Tensor:
    """Add a bias along `dim`, apply the activation, multiply by `gain`, clamp to +-clamp.

    `gain` defaults to the activation's own gain (sqrt(2) for lrelu, 1 for linear).
    """
    if bias is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + bias.reshape(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation == "softplus":
        x = F.softplus(x)
    elif activation == "tanh":
        x = torch.tanh(x)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    gain = lrelu_gain(activation) if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------------------------------
# FIR filtering

def make_resample_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable low-pass kernel as a normalised 2-D outer product (sums to 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with `f`, then subsample.

    `padding` is (x_before, x_after, y_before, y_after) in the upsampled grid. `gain` scales the
    filter, e.g. up**2 to preserve the signal level after zero insertion.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # A true convolution flips the kernel; conv2d correlates, so flip first.
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2x up-sampling that keeps the image aligned (used for the skip connections)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(x: torch.Tensor, weight: torch.Tensor, f: Optional[torch.Tensor] = None,
                    up: int = 1, down: int = 1, padding: int = 0) -> torch.Tensor:
    """Convolution (cross-correlation, as torch) fused with 2x up- or down-sampling.

    Up-sampling is a stride-2 transposed convolution followed by the low-pass filter; down-sampling
    low-pass filters first and then convolves with stride 2. The paddings keep pixel centres where
    zero insertion + filter + 'same' convolution (or filter + subsample) would put them.
    """
    kw = weight.shape[-1]
    fw = 0 if f is None else f.shape[-1]
    if up > 1:
        pad0 = padding + (fw + up - 1) // 2 - (kw - 1)
        pad1 = padding + (fw - up) // 2 - (kw - up)
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up)
        return upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1), gain=up * up)
    if down > 1:
        pad0 = padding + (fw - down + 1) // 2
        pad1 = padding + (fw - down) // 2
        x = upfirdn2d(x, f, padding=(pad0, pad1, pad0, pad1))
        return F.conv2d(x, weight, stride=down)
    return F.conv2d(x, weight, padding=padding)


# --------------------------------------------------------------------------------------------------
# Equalized-learning-rate layers

class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate and a fused bias + activation."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t()) if x.ndim == 2 else x.matmul(w.t()) + b
        return bias_act(x.matmul(w.t()), b, self.activation, dim=x.ndim - 1)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional 2x resampling, bias, activation, clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", make_resample_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, padding=self.padding)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        b = None if self.bias is None else self.bias.to(x.dtype)
        return bias_act(x, b, self.activation, gain=lrelu_gain(self.activation) * gain, clamp=clamp)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, padding: int = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    Implemented by scaling the activations rather than the weights (one shared kernel for the
    whole batch), which is mathematically the same as per-sample weights and faster on a CPU.
    Noise is added after demodulation and before the bias, as in StyleGAN2.
    """
    batch = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding)
    if demodulate:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
