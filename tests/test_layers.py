"""StyleGAN2 building blocks against independent formulations."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal

from trigan.core.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    bias_act,
    conv2d_resample,
    make_resample_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upfirdn2d,
    upsample2d,
)


def test_resample_filter_is_the_normalised_1331_outer_product():
    f = make_resample_filter()
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_upsample_preserves_constants_and_keeps_pixel_centres_aligned():
    f = make_resample_filter()
    const = torch.full((1, 1, 8, 8), 3.0)
    assert torch.allclose(upsample2d(const, f)[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 3.0))
    # A ramp x[k] = k: output pixel i has its centre at input coordinate (i + 0.5) / 2 - 0.5.
    ramp = torch.arange(8.0).reshape(1, 1, 1, 8).expand(1, 1, 8, 8)
    up = upsample2d(ramp, f)[0, 0, 8]
    i = torch.arange(16.0)
    assert torch.allclose(up[2:-2], ((i + 0.5) / 2 - 0.5)[2:-2], atol=1e-5)


def test_upfirdn2d_matches_scipy():
    rng = np.random.RandomState(0)
    x = rng.randn(6, 7).astype(np.float32)
    taps = np.array([1, 3, 3, 1], np.float32)
    f2 = np.outer(taps, taps) / 64
    ours = upfirdn2d(torch.from_numpy(x)[None, None], torch.from_numpy(f2), up=2, padding=(2, 1, 2, 1), gain=4)
    # scipy: zero-insert, full convolution (index shifts by filter length - 1 - pad), separable.
    zero_inserted = np.zeros((12, 14), np.float32)
    zero_inserted[::2, ::2] = x
    full = signal.convolve2d(zero_inserted, f2 * 4, mode="full")
    expected = full[1:1 + 12, 1:1 + 14]
    assert np.allclose(ours[0, 0].numpy(), expected, atol=1e-5)


def test_upsampling_conv_equals_upsample_then_flipped_conv():
    """The fused transposed path is zero-insert + true convolution + low-pass filter (the two
    orders differ only in how the image border is padded)."""
    x, w, f = torch.randn(2, 3, 7, 7), torch.randn(4, 3, 3, 3), make_resample_filter()
    fused = conv2d_resample(x, w, f, up=2, padding=1)
    reference = F.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert fused.shape == (2, 4, 14, 14)
    assert torch.allclose(fused[..., 3:-3, 3:-3], reference[..., 3:-3, 3:-3], atol=1e-5)


def test_downsampling_conv_halves_the_size_and_averages_constants():
    x, f = torch.full((1, 2, 8, 8), 2.0), make_resample_filter()
    w = torch.zeros(1, 2, 3, 3)
    w[0, :, 1, 1] = 0.5   # sums the two channels' centre taps with weight 0.5 each
    y = conv2d_resample(x, w, f, down=2, padding=1)
    assert y.shape == (1, 1, 4, 4)
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.full((1, 1, 2, 2), 2.0), atol=1e-6)


def test_modulated_conv_equals_explicit_per_sample_demodulated_weights():
    x, w, s = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    out = modulated_conv2d(x, w, s, padding=1)
    for b in range(3):
        wb = w * s[b].reshape(1, -1, 1, 1)
        wb = wb / torch.sqrt((wb ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        assert torch.allclose(out[b], F.conv2d(x[b:b + 1], wb, padding=1)[0], atol=1e-5)


def test_modulated_conv_output_has_unit_variance_for_unit_inputs():
    x = torch.randn(16, 64, 16, 16)
    out = modulated_conv2d(x, torch.randn(64, 64, 3, 3), torch.randn(16, 64), padding=1)
    assert abs(out.std().item() - 1.0) < 0.1


def test_fully_connected_equalized_lr_scales():
    fc = FullyConnectedLayer(100, 7, lr_multiplier=0.01, bias_init=0.0)
    with torch.no_grad():
        fc.bias.fill_(5.0)
    x = torch.randn(4, 100)
    expected = x @ (fc.weight * 0.01 / 10).t() + 5.0 * 0.01
    assert torch.allclose(fc(x), expected, atol=1e-5)
    # Stored at N(0, 1)/lr_mul, effective weights have std 1/sqrt(fan_in): outputs keep unit variance.
    assert abs((fc.weight * fc.weight_gain).std().item() * 10 - 1) < 0.1


def test_lrelu_has_slope_0_2_and_gain_sqrt2():
    x = torch.tensor([-2.0, 3.0])
    assert torch.allclose(bias_act(x, activation="lrelu", dim=0), torch.tensor([-0.4, 3.0]) * math.sqrt(2))
    assert torch.allclose(bias_act(x * 100, activation="lrelu", clamp=10.0, dim=0), torch.tensor([-10.0, 10.0]))


def test_conv_layer_clamps_after_gain():
    layer = Conv2dLayer(1, 1, 1, activation="linear", conv_clamp=1.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    y = layer(torch.full((1, 1, 2, 2), 5.0))
    assert torch.allclose(y, torch.ones_like(y))


def test_normalize_2nd_moment_gives_unit_rms():
    x = torch.randn(5, 33) * 7
    assert torch.allclose(normalize_2nd_moment(x).square().mean(dim=1), torch.ones(5), atol=1e-5)
