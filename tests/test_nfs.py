"""Non-Flatness Score: closed cases (flat = 1, even ramp = number of bins), an independent histc
reference, the renderer's low-density cut, generator and dataset NFS."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.cameras import Camera
from trigan.core.compositing import foreground_density
from trigan.core.generator import Generator
from trigan.core.nfs import (
    NFSError,
    dataset_depth_range,
    dataset_nfs,
    frontal_conditioning,
    frontal_pose,
    generator_depths,
    generator_nfs,
    nfs_of_depth_maps,
    nfs_per_image,
)
from trigan.core.renderer import RenderOptions, render
from trigan.training.dataset import ImageDataset, open_dataset


def histc_reference(depths: torch.Tensor, near: float, far: float, bins: int = 64) -> float:
    """3DGP's recipe, written independently: clamp, torch.histc per image, exp(entropy with +1e-12)."""
    scores = []
    for d in depths.double().clamp(near, far):
        hist = torch.histc(d.flatten(), bins=bins, min=near, max=far)
        assert hist.sum() == d.numel()
        p = hist / hist.sum()
        scores.append(torch.exp(-(p * torch.log(p + 1e-12)).sum()))
    return float(torch.stack(scores).mean())


# ---------------------------------------------------------------------------------------------------
# Depth maps

@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 1, 16, 16), (16, 16)])
def test_a_flat_depth_map_scores_one(shape):
    assert nfs_of_depth_maps(torch.full(shape, 1.03), 0.88, 1.12) == pytest.approx(1.0)


def test_an_even_ramp_over_the_range_scores_the_number_of_bins():
    ramp = torch.linspace(0.75, 1.25, 64 * 64).reshape(1, 64, 64)
    assert nfs_of_depth_maps(ramp, 0.75, 1.25) == pytest.approx(64.0, rel=1e-9)
    assert nfs_of_depth_maps(ramp, 0.75, 1.25, bins=16) == pytest.approx(16.0, rel=1e-9)


def test_k_equally_filled_bins_score_k_and_images_are_averaged():
    half = torch.cat([torch.full((1, 8, 16), 0.1), torch.full((1, 8, 16), 0.9)], dim=1)   # 2 bins
    flat = torch.full((1, 16, 16), 0.5)                                                     # 1 bin
    assert nfs_of_depth_maps(half, 0, 1) == pytest.approx(2.0)
    assert nfs_of_depth_maps(torch.cat([half, flat]), 0, 1) == pytest.approx(1.5)
    assert nfs_per_image(torch.cat([half, flat]), 0, 1).tolist() == pytest.approx([2.0, 1.0])


def test_depth_outside_the_ray_bounds_is_clamped_into_the_end_bins():
    d = torch.tensor([[[-5.0, 0.0], [1.0, 7.0]]])       # two at near, two at far
    assert nfs_of_depth_maps(d, 0, 1) == pytest.approx(2.0)


def test_matches_a_torch_histc_reference_on_random_depth():
    gen = torch.Generator().manual_seed(3)
    depths = 0.7 + 0.6 * torch.rand(5, 24, 24, generator=gen) ** 2     # some outside [0.75, 1.25]
    assert nfs_of_depth_maps(depths, 0.75, 1.25) == pytest.approx(histc_reference(depths, 0.75, 1.25), rel=1e-9)


def test_a_mask_counts_only_its_pixels():
    d = torch.cat([torch.full((1, 8, 16), 0.1), torch.full((1, 8, 16), 0.9)], dim=1)
    mask = torch.zeros_like(d, dtype=torch.bool)
    mask[:, :8] = True
    assert nfs_of_depth_maps(d, 0, 1, mask=mask) == pytest.approx(1.0)
    with pytest.raises(NFSError, match="no depth pixels"):
        nfs_of_depth_maps(d, 0, 1, mask=torch.zeros_like(mask))


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(NFSError, match="empty"):
        nfs_of_depth_maps(torch.ones(1, 4, 4), 1.0, 1.0)
    with pytest.raises(NFSError, match=r"\[N, H, W\]"):
        nfs_of_depth_maps(torch.ones(1, 2, 3, 4, 5), 0, 1)


# ---------------------------------------------------------------------------------------------------
# The low-density cut in the renderer

def test_the_cut_zeroes_densities_below_the_quantile_and_keeps_the_rest():
    sigma = torch.linspace(-4, 4, 101).reshape(1, 101)
    plain = foreground_density(sigma, RenderOptions())
    cut = foreground_density(sigma, RenderOptions(density_cut_quantile=0.5))
    median = plain.flatten().median()
    assert torch.equal(cut[plain >= median], plain[plain >= median])
    assert (cut[plain < median] == 0).all() and (plain[plain < median] > 0).all()
    assert torch.equal(foreground_density(sigma, RenderOptions(density_cut_quantile=0.0)), plain)


class _Fog:
    """Fog whose density grows with x (toward the camera at +X), for one latent."""
    batch_size = 1
    background = None

    def __call__(self, points):
        sigma = -2.0 + 20.0 * points[..., 0]
        return torch.zeros(*points.shape[:-1], 3), sigma


def test_the_cut_moves_depth_off_thin_fog_and_the_default_renders_as_before():
    cam = Camera.from_angles(0.0, math.pi / 2, radius=1.0, fov=12.0)
    opts = RenderOptions(num_steps=32, num_fine_steps=0, ray_start=0.88, ray_end=1.12)
    plain = render(_Fog(), cam, 4, opts)
    same = render(_Fog(), cam, 4, RenderOptions(num_steps=32, num_fine_steps=0, ray_start=0.88, ray_end=1.12,
                                                density_cut_quantile=None))
    assert torch.equal(plain.depth, same.depth) and torch.equal(plain.rgb, same.rgb)
    cut = render(_Fog(), cam, 4, RenderOptions(num_steps=32, num_fine_steps=0, ray_start=0.88, ray_end=1.12,
                                               density_cut_quantile=0.5))
    # The near half of the samples (densest fog) survives the cut; with the thin far fog removed the
    # expected depth loses the far contributions.
    assert (cut.depth < plain.depth).all()


# ---------------------------------------------------------------------------------------------------
# Generators and datasets

@pytest.fixture(scope="module")
def tiny_G():
    torch.manual_seed(0)
    return Generator(tiny_config(**{"model.c_dim": 3}).model).eval()


def test_generator_nfs_runs_on_a_tiny_model_and_is_deterministic(tiny_G):
    a = generator_nfs(tiny_G, num=6, batch=4, seed=1)
    b = generator_nfs(tiny_G, num=6, batch=4, seed=1)
    assert 1.0 <= a <= 64.0 and a == b
    assert generator_nfs(tiny_G, num=6, batch=4, seed=2) != a
    no_cut = generator_nfs(tiny_G, num=6, batch=4, seed=1, density_cut=None)
    assert 1.0 <= no_cut <= 64.0 and no_cut != a
    assert tiny_G.training is False


@pytest.mark.parametrize("opaque", [True, False])
def test_empty_space_is_depth_at_the_far_bound_whichever_far_end(opaque):
    # Dataset maps put the background at the far bound. An opaque far end puts a miss at its last
    # sample (within the last coarse interval before ray_end); an open one lets the ray through, and
    # generator_depths counts it at exactly ray_end.
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.render.opaque_far_end": opaque, "model.render.density_shift": -20.0}).model
    G = Generator(cfg).eval()
    depth = torch.cat(list(generator_depths(G, num=4, batch=2, density_cut=None)))
    far, step = cfg.camera.ray_end, (cfg.camera.ray_end - cfg.camera.ray_start) / cfg.render.num_steps
    assert (depth <= far + 1e-4).all() and (depth >= far - step - 1e-4).all()
    if not opaque:
        assert torch.allclose(depth, torch.full_like(depth, far), atol=1e-4)
        assert generator_nfs(G, num=4, batch=2, density_cut=None) == pytest.approx(1.0)


def test_frontal_conditioning_keeps_the_labels_and_fixes_the_pose(tiny_G):
    labels = torch.nn.functional.one_hot(torch.tensor([2, 1, 0, 2]), 3).float()
    base = lambda n, gen: (labels[:n], Camera.from_angles(torch.rand(n, generator=gen), 1.0, batch=n))
    c, cam = frontal_conditioning(tiny_G, base)(4, torch.Generator().manual_seed(0))
    assert torch.equal(c, labels)
    yaw, pitch = frontal_pose(tiny_G)
    assert torch.allclose(cam.angles[:, 0], torch.full((4,), yaw)) and torch.allclose(cam.angles[:, 1], torch.full((4,), pitch))
    c, cam = frontal_conditioning(tiny_G)(5, torch.Generator().manual_seed(0))
    assert c.shape == (5, 3) and len(cam) == 5


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("nfs") / "shapes.zip"
    assert main(["dataset", "synth", str(out), "--num", "8", "--resolution", "32", "--classes", "4"]) == 0
    return out


def test_dataset_nfs_of_a_synthesized_dataset_is_above_one(synth_data):
    ds = open_dataset(synth_data)
    value = dataset_nfs(ds)
    assert 1.0 < value < 64.0
    near, far = dataset_depth_range(ds)
    assert (near, far) == tuple(ds.meta["depth_range"])
    # Binning 16-bit values over 0..65535 is binning world depth over [near, far] (linear encoding).
    world = torch.stack([near + ds[i]["depth"].double() / 65535 * (far - near) for i in range(len(ds))])
    assert value == pytest.approx(nfs_of_depth_maps(world, near, far), rel=1e-9)
    assert dataset_nfs(open_dataset(synth_data, mirror=True)) == pytest.approx(value)


def test_dataset_nfs_needs_depth_maps(synth_data):
    with pytest.raises(NFSError, match="no depth maps"):
        dataset_nfs(ImageDataset(synth_data, load_depth=False))
