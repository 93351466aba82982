"""3DGP's depth path: the depth adaptor (selection schedule, candidates, learnable near plane), real
depth normalisation, the extra depth blur, and a 4-channel D fed real depth maps."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from trigan.training.config import DepthConfig, DiscriminatorConfig, PatchConfig
from trigan.training.dataset import open_dataset
from trigan.training.depth_adaptor import (
    DepthAdaptor,
    normalize_depth,
    real_depth_to_unit,
    sample_choices,
    selection_probabilities,
    selection_start_p,
)
from trigan.training.discriminator import Discriminator
from trigan.training.losses import blur_depth_channel, blur_images, depth_blur_kernel
from trigan.training.patches import extract_patches, sample_patches
from trigan.training.synth import SynthSettings, write_synth_dataset

RAY = (0.75, 1.25)   # 3DGP's default ray interval


# ---------------------------------------------------------------------------------------------
# Selection schedule

def test_selection_probabilities_go_from_uniform_to_upstreams_final_values():
    cfg = DepthConfig()   # 4 candidates, start_p 0.1, 10000 kimg
    np.testing.assert_allclose(selection_probabilities(cfg, 4, 0.0), [0.25] * 4, atol=1e-12)
    np.testing.assert_allclose(selection_probabilities(cfg, 4, 10000.0), [0.1, 0.2, 0.3, 0.4], atol=1e-12)
    np.testing.assert_allclose(selection_probabilities(cfg, 4, 50000.0), [0.1, 0.2, 0.3, 0.4], atol=1e-12)
    # Halfway: start_p = 0.175, slope = 2 (1 - 4 * 0.175) / (4 * 3) = 0.05.
    np.testing.assert_allclose(selection_probabilities(cfg, 4, 5000.0), [0.175, 0.225, 0.275, 0.325], atol=1e-12)
    assert selection_start_p(cfg, 4, 2500.0) == pytest.approx(0.25 - 0.15 / 4)


@pytest.mark.parametrize("n,start_p,kimg", [(2, 0.3, 100.0), (4, 0.1, 3000.0), (6, 0.05, 7777.0), (3, 0.0, 1e9)])
def test_selection_probabilities_sum_to_one_and_rise_linearly(n, start_p, kimg):
    p = selection_probabilities(DepthConfig(selection_start_p=start_p), n, kimg)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    steps = np.diff(p)
    np.testing.assert_allclose(steps, steps[0], atol=1e-12)
    assert (steps >= -1e-12).all() and (p >= -1e-12).all()


def test_sampled_choices_follow_the_probabilities_and_the_generator():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    n = 200_000
    draws = sample_choices(p, n, torch.Generator().manual_seed(3))
    freq = np.bincount(draws.numpy(), minlength=4) / n
    tol = 5 * np.sqrt(p * (1 - p) / n)           # five binomial standard deviations
    assert (np.abs(freq - p) < tol).all(), (freq, p)
    again = sample_choices(p, n, torch.Generator().manual_seed(3))
    assert torch.equal(draws, again)
    # A candidate with probability 0 is never drawn.
    zero_first = sample_choices(np.array([0.0, 0.5, 0.5]), 10_000, torch.Generator().manual_seed(1))
    assert zero_first.min() >= 1 and zero_first.max() <= 2


# ---------------------------------------------------------------------------------------------
# The adaptor

def _adaptor(**overrides):
    torch.manual_seed(0)
    return DepthAdaptor(dataclasses.replace(DepthConfig(), **overrides), *RAY)


def test_near_plane_starts_just_past_ray_start_and_normalisation_maps_it_to_minus_one():
    adaptor = _adaptor()
    near = float(adaptor.near_plane().detach())
    # 0.75 + sigmoid(-3) * 0.25 * 0.5 (sigmoid(-3) = 1 / (1 + e^3))
    assert near == pytest.approx(0.75 + 0.125 / (1 + math.exp(3)), abs=1e-7)
    depth = torch.tensor([near, (near + 1.25) / 2, 1.25]).view(3, 1, 1, 1)
    x = adaptor.candidates(depth)[0].flatten()
    np.testing.assert_allclose(x.detach().numpy(), [-1.0, 0.0, 1.0], atol=1e-6)
    # Everything rendered inside [near, far] lands in [-1, 1].
    inside = torch.linspace(near, 1.25, 101).view(1, 1, 1, 101)
    xs = adaptor.candidates(inside)[0]
    assert xs.min() >= -1 - 1e-6 and xs.max() <= 1 + 1e-6
    # The near plane never leaves [ray_start, ray_start + max_fraction * span].
    with torch.no_grad():
        adaptor.near_plane_offset.fill_(50.0)
    assert float(adaptor.near_plane().detach()) == pytest.approx(0.75 + 0.25 * 0.5)


def test_candidates_and_outputs_have_the_input_shape_and_the_choice_picks_per_sample():
    adaptor = _adaptor()
    depth = 0.75 + 0.5 * torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    cands = adaptor.candidates(depth)
    assert len(cands) == 4 == adaptor.num_candidates
    assert all(c.shape == depth.shape for c in cands)
    choices = torch.tensor([0, 3, 1, 2, 3])
    out = adaptor(depth, choices)
    assert out.shape == depth.shape
    for b, k in enumerate(choices.tolist()):
        assert torch.equal(out[b], cands[k][b])
    assert torch.equal(adaptor(depth), cands[-1])                        # evaluation: the last head
    assert torch.allclose(_adaptor(out_strategy="mean")(depth), torch.stack(cands).mean(0))
    assert torch.equal(_adaptor(out_strategy="last")(depth, choices), cands[-1])
    with pytest.raises(ValueError, match="out_strategy"):
        _adaptor(out_strategy="median")


def test_the_candidates_share_one_head_and_gradients_reach_the_near_plane_and_convs():
    adaptor = _adaptor()
    heads = [m for m in adaptor.modules() if isinstance(m, type(adaptor.head)) and m.weight.shape[0] == 1]
    assert len(heads) == 1                                               # one shared 1x1 head
    depth = 0.8 + 0.4 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = adaptor(depth, torch.tensor([0, 3]))
    out.square().sum().backward()
    assert adaptor.near_plane_offset.grad is not None and adaptor.near_plane_offset.grad != 0
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in adaptor.layers)


def test_normalisation_is_the_affine_map_of_the_interval():
    d = torch.tensor([0.5, 1.0, 2.0])
    np.testing.assert_allclose(normalize_depth(d, 0.5, 2.0).numpy(), [-1.0, -1 / 3, 1.0], atol=1e-7)


def test_real_depth_maps_map_from_the_16_bit_scale_to_minus_one_one():
    d = torch.tensor([0.0, 32768.0, 65535.0, 255 * 256.0])
    np.testing.assert_allclose(real_depth_to_unit(d).numpy(),
                               [-1.0, 0.0, 65535 / 32768 - 1, 255 * 256 / 32768 - 1], atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The extra depth blur

def _reference_blur(channel: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Direct separable convolution with numpy's reflect padding (kernel fits inside the image)."""
    r = len(k) // 2
    padded = np.pad(channel, ((0, 0), (r, r)), mode="reflect")
    x = np.stack([(padded[:, j:j + 2 * r + 1] * k).sum(1) for j in range(channel.shape[1])], 1)
    padded = np.pad(x, ((r, r), (0, 0)), mode="reflect")
    return np.stack([(padded[i:i + 2 * r + 1] * k[:, None]).sum(0) for i in range(channel.shape[0])], 0)


def test_depth_blur_kernel_has_the_blur_radius_and_a_fixed_width():
    k = depth_blur_kernel(3.0, torch.float64)
    assert k.numel() == 2 * 9 + 1                                      # radius floor(3 sigma)
    x = np.arange(-9, 10)
    ref = 2.0 ** (-(x / 30.0) ** 2)
    np.testing.assert_allclose(k.numpy(), ref / ref.sum(), rtol=1e-12)
    assert depth_blur_kernel(0.2).numel() == 1                          # radius 0: identity


def test_depth_blur_touches_only_depth_and_matches_a_direct_convolution():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 4, 24, 24, generator=gen, dtype=torch.float64)
    sigma = 2.5
    out = blur_depth_channel(img, sigma)
    assert torch.equal(out[:, :3], img[:, :3])
    k = depth_blur_kernel(sigma, torch.float64).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b, 3].numpy(), _reference_blur(img[b, 3].numpy(), k), atol=1e-12)
    assert torch.equal(blur_depth_channel(img, 0.0), img)
    # In run_D it follows the ordinary blur; a constant depth map stays constant through both.
    flat = torch.cat([img[:, :3], torch.full_like(img[:, :1], 0.3)], 1)
    both = blur_depth_channel(blur_images(flat, sigma), sigma)
    assert torch.allclose(both[:, 3], torch.full_like(both[:, 3], 0.3), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# A 4-channel D fed real depth maps

@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "shapes.zip"
    write_synth_dataset(path, SynthSettings(num=8, resolution=32, classes=2, seed=2), progress=False)
    return path


def test_a_four_channel_discriminator_runs_forward_and_backward_on_real_depth(synth_data):
    ds = open_dataset(synth_data, mirror=True)
    assert ds.has_depth
    items = [ds[i] for i in (0, 1, 8, 9)]                               # 8, 9: mirrored copies of 0, 1
    rgb = torch.stack([it["image"] for it in items]).float() / 127.5 - 1
    depth = real_depth_to_unit(torch.stack([it["depth"] for it in items]).float())
    assert depth.shape == (4, 1, 32, 32) and depth.min() >= -1 and depth.max() < 1
    assert torch.equal(depth[2], depth[0].flip(-1))                     # mirrored with the image
    full = torch.cat([rgb, depth], 1)
    patch = sample_patches(PatchConfig(), 4, 0.0, 0.5, 4, generator=torch.Generator().manual_seed(0))
    patches = extract_patches(full, patch, 16).requires_grad_(True)
    cfg = DiscriminatorConfig(patch_resolution=16, num_additional_start_blocks=1, channel_base=256,
                              channel_max=16, img_channels=4)
    torch.manual_seed(0)
    D = Discriminator(cfg, c_dim=ds.num_classes)
    c = torch.nn.functional.one_hot(torch.stack([it["label"] for it in items]), ds.num_classes).float()
    logits = D(patches, c, patch)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert patches.grad[:, 3].abs().sum() > 0                          # depth reaches the logits
    first = getattr(D, f"b{D.block_resolutions[0]}").fromrgb.weight
    assert first.shape[1] == 4 and first.grad[:, 3].abs().sum() > 0
    # Changing only the depth changes the logits.
    with torch.no_grad():
        other = patches.detach().clone()
        other[:, 3] = -other[:, 3]
        assert not torch.allclose(D(other, c, patch), logits.detach())
