"""The pieces of the training recipe against independent answers: patch grids, schedules, losses,
EMA, the data stream, the split-invariant random numbers, the typed batches of a step and the
Trainer's state changes (best metric, rollback counts)."""

from __future__ import annotations

import math

import pytest
import torch

from train_helpers import fitted_tiny_config, tiny_train_config, write_tiny_dataset
from trigan.core.cameras import Camera, PatchParams
from trigan.core.generator import Generator
from trigan.training import distributed as ddp
from trigan.training import synth
from trigan.training.batches import FakeBatch, RealBatch, RenderedFakes
from trigan.training.config import PatchConfig, load_config
from trigan.training.loop import StepSampler, Trainer, ema_beta, gpc_spoof_p, nerf_noise_std, opacity_reg_weight
from trigan.training.losses import (
    blur_images,
    blur_kernel,
    blur_sigma,
    discriminator_loss,
    generator_loss,
    opacity_binarity,
    r1_penalty,
)
from trigan.training.patches import extract_patches, patch_beta, sample_patches
from trigan.training.randomness import PHASE_G, SampleNoise, batch_generator, mix_seed

# -- patches ----------------------------------------------------------------------------------------

def _ndc_of_rays(camera: Camera, res: int, patch: PatchParams) -> torch.Tensor:
    """Project the renderer's patch rays back onto the image plane: NDC (x, y) of every ray."""
    _, dirs = camera.rays(res, patch)
    c2w = camera.cam2world()
    cam = dirs @ c2w[:, :3, :3]                      # world -> camera frame (rotation is orthonormal)
    focal = 1 / math.tan(math.radians(float(camera.fov[0])) / 2)
    return cam[..., :2] / (-cam[..., 2:3]) * focal  # [B, P*P, 2]


def test_real_patches_are_cut_on_the_grid_the_renderer_shoots_rays_through():
    # An image whose pixel values are their own NDC coordinates (bilinear interpolation is exact for
    # it): the patch cut from it must hold the NDC of each patch ray.
    res, p = 32, 8
    lin = torch.linspace(-1, 1, res)
    ys, xs = torch.meshgrid(-lin, lin, indexing="ij")          # top row is NDC y = +1
    image = torch.stack([xs, ys])[None].repeat(3, 1, 1, 1)      # [3, 2, H, W]
    patch = PatchParams(scale=torch.tensor([1.0, 0.5, 0.25]), offset=torch.tensor([[0, 0], [0.5, 0.0], [0.1, 0.7]]))
    cut = extract_patches(image, patch, p)                      # [3, 2, P, P]
    camera = Camera.from_angles([0.3, 1.0, -2.0], [1.2, 1.5, 1.9], fov=20.0)
    ndc = _ndc_of_rays(camera, p, patch).reshape(3, p, p, 2).permute(0, 3, 1, 2)
    assert torch.allclose(cut, ndc, atol=1e-5)
    # offset (0, 0) is the bottom-left: the half-scale patch at offset x = 0.5 covers the right half, bottom half
    assert cut[1, 0].min() >= -1e-6 and cut[1, 1].max() <= 1e-6


def test_patch_offsets_keep_patches_inside_the_image_and_groups_share_them():
    cfg = PatchConfig(dist="uniform", anneal_kimg=0)
    gen = torch.Generator().manual_seed(0)
    patch = sample_patches(cfg, 64, kimg=0.0, min_scale=0.25, group_size=4, generator=gen)
    s, o = patch.scale, patch.offset
    assert (s >= 0.25 - 1e-6).all() and (s <= 1 + 1e-6).all()
    assert (o >= 0).all() and (o + s[:, None] <= 1 + 1e-6).all()
    assert torch.equal(s.view(16, 4), s.view(16, 4)[:, :1].expand(16, 4))
    assert torch.equal(o.view(16, 4, 2), o.view(16, 4, 2)[:, :1].expand(16, 4, 2))


def test_beta_schedule_and_the_mean_patch_scale():
    cfg = PatchConfig(beta_start=0.001, beta_end=0.8, anneal_kimg=10000)
    assert patch_beta(cfg, 0) == pytest.approx(0.001)
    assert patch_beta(cfg, 5000) == pytest.approx(0.4005)
    assert patch_beta(cfg, 20000) == pytest.approx(0.8)
    gen = torch.Generator().manual_seed(1)
    for kimg in (0.0, 10000.0):
        b = patch_beta(cfg, kimg)
        s = sample_patches(cfg, 200000, kimg, min_scale=0.125, group_size=1, generator=gen).scale.double()
        # E[Beta(1, b)] = 1 / (1 + b)
        expected = 0.125 + (1 - 0.125) / (1 + b)
        assert float(s.mean()) == pytest.approx(expected, abs=3e-3)
    assert float(s.min()) >= 0.125 - 1e-6


# -- losses ------------------------------------------------------------------------------------------

def test_blur_kernel_and_sigma_schedule():
    k = blur_kernel(2.0, torch.float64)
    assert k.numel() == 2 * 6 + 1 and float(k.sum()) == pytest.approx(1.0)
    x = torch.arange(-6, 7, dtype=torch.float64)
    ref = 2.0 ** (-(x / 2) ** 2)
    assert torch.allclose(k, ref / ref.sum())
    assert blur_sigma(0, 10, 200) == 10 and blur_sigma(100_000, 10, 200) == pytest.approx(5.0)
    assert blur_sigma(300_000, 10, 200) == 0.0


def test_blur_keeps_constants_and_averages_a_checkerboard():
    const = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(blur_images(const, 3.0), const, atol=1e-6)
    board = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1
    blurred = blur_images(board[None, None], 4.0)
    assert blurred[0, 0, 4:12, 4:12].abs().max() < 0.05          # high frequencies gone
    assert torch.equal(blur_images(board[None, None], 0.0), board[None, None])


def test_logistic_losses_and_r1_against_closed_forms():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = lambda v: math.log1p(math.exp(v))
    assert float(generator_loss(fake)) == pytest.approx((sp(-0.5) + sp(3.0)) / 2)
    assert float(discriminator_loss(real, fake)) == pytest.approx((sp(0.5) + sp(-3.0)) / 2 + (sp(-2.0) + sp(1.0)) / 2)
    # D(x) = <w, x> + |x|^2 / 2 has gradient w + x
    w = torch.randn(3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * w).flatten(1).sum(1) + 0.5 * x.square().flatten(1).sum(1)
    penalty = r1_penalty(logits, x)
    assert torch.allclose(penalty, (w + x.detach()).square().flatten(1).sum(1), rtol=1e-5)
    penalty.sum().backward()   # differentiable (create_graph): d/dx |w + x|^2 = 2 (w + x)
    assert torch.allclose(x.grad, 2 * (w + x.detach()), rtol=1e-5)


def test_opacity_binarity_is_zero_for_empty_or_solid_rays_and_pushes_each_ray_to_its_nearer_end():
    o = torch.tensor([0.0, 1.0, 0.5, 0.25, 0.9], requires_grad=True)
    value = opacity_binarity(o)
    assert value.item() == pytest.approx((0 + 0 + 0.25 + 0.1875 + 0.09) / 5)
    value.backward()
    # d/do of mean o(1 - o) = (1 - 2o) / n: a descent step lowers o below 1/2 and raises it above.
    assert torch.allclose(o.grad, (1 - 2 * o.detach()) / 5)
    assert o.grad[3] > 0 and o.grad[4] < 0 and o.grad[2] == 0
    # Opacities a hair outside [0, 1] (float sums of weights) count as empty or solid.
    assert float(opacity_binarity(torch.tensor([-1e-6, 1 + 1e-6]))) == 0.0


def test_opacity_regulariser_weight_waits_then_ramps_linearly():
    cfg = load_config("demo", ["training.opacity_reg=2.0", "training.opacity_reg_start_kimg=10",
                               "training.opacity_reg_ramp_kimg=20"])
    assert [opacity_reg_weight(cfg, k) for k in (0, 9.99, 10, 15, 30, 500)] == pytest.approx([0, 0, 0, 0.5, 2, 2])
    step = load_config("demo", ["training.opacity_reg=2.0", "training.opacity_reg_start_kimg=10",
                                "training.opacity_reg_ramp_kimg=0"])
    assert opacity_reg_weight(step, 9.0) == 0 and opacity_reg_weight(step, 10.0) == 2.0
    assert opacity_reg_weight(load_config("demo", ["training.opacity_reg=0"]), 1e4) == 0

# -- EMA and schedules -----------------------------------------------------------------------------

def test_ema_half_life_is_batch_times_multiplier_kimg():
    cfg = tiny_train_config("training.batch_size=64", "training.ema_rampup=null")
    beta = ema_beta(cfg, 10 ** 7)
    steps = 64 * 0.3125 * 1000 / 64           # 20 kimg of 64-image steps
    assert beta ** steps == pytest.approx(0.5)
    ramped = tiny_train_config("training.batch_size=64")
    # ramp-up: early on the half-life is 5% of the images seen
    assert ema_beta(ramped, 64_000) ** (0.05 * 64_000 / 64) == pytest.approx(0.5)


def test_nerf_noise_and_gpc_anneal_linearly():
    cfg = tiny_train_config("model.render.nerf_noise_std_init=1.0", "model.render.nerf_noise_kimg_growth=100")
    assert nerf_noise_std(cfg, 0) == 1.0 and nerf_noise_std(cfg, 25) == pytest.approx(0.75)
    assert nerf_noise_std(cfg, 1000) == 0.0
    assert gpc_spoof_p(cfg, 0) == 1.0 and gpc_spoof_p(cfg, 500) == pytest.approx(0.75)
    assert gpc_spoof_p(cfg, 5000) == pytest.approx(0.5)


# -- data stream and randomness ---------------------------------------------------------------------

def test_step_sampler_resumes_and_ranks_partition_the_global_batch():
    take = lambda it, n: [next(it) for _ in range(n)]
    whole = take(iter(StepSampler(10, 4, 0, 1, seed=3)), 4 * 7)
    resumed = take(iter(StepSampler(10, 4, 0, 1, seed=3, start_step=3)), 4 * 4)
    assert resumed == whole[12:]
    r0 = take(iter(StepSampler(10, 4, 0, 2, seed=3)), 2 * 7)
    r1 = take(iter(StepSampler(10, 4, 1, 2, seed=3)), 2 * 7)
    for step in range(7):
        assert r0[2 * step:2 * step + 2] + r1[2 * step:2 * step + 2] == whole[4 * step:4 * step + 4]
    assert sorted(whole[:10]) == list(range(10))      # an epoch is a permutation


def test_sample_noise_depends_on_the_sample_not_on_the_batch_it_is_in():
    whole = SampleNoise(5, range(4))(4, 8, "cpu", torch.float32)
    halves = torch.cat([SampleNoise(5, [0, 1])(2, 8, "cpu", torch.float32),
                        SampleNoise(5, [2, 3])(2, 8, "cpu", torch.float32)])
    assert torch.equal(whole, halves)
    noise = SampleNoise(5, range(4))
    first, second = noise(4, 8, "cpu", torch.float32), noise(4, 8, "cpu", torch.float32)
    assert not torch.equal(first, second)            # layers get different maps
    assert abs(float(whole.std()) - 1) < 0.2


def test_renderer_noise_of_a_split_batch_equals_the_whole_batch():
    G = Generator(tiny_train_config().model)
    z = torch.randn(4, G.z_dim)
    c = torch.eye(G.c_dim)[torch.tensor([0, 1, 2, 0])] if G.c_dim else None
    cam = Camera.from_angles(torch.linspace(-1, 1, 4), 1.4, fov=30.0)
    patch = PatchParams(torch.full((4,), 0.5), torch.full((4, 2), 0.25))
    opts = dict(density_noise_std=1.0, deterministic=True, seed=1234)
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(z, c))
        whole = G.render(field, cam, 8, patch=patch, **opts).rgb
        parts = []
        for sl in (slice(0, 2), slice(2, 4)):
            f = G.field_from_ws(G.map_latents(z[sl], None if c is None else c[sl]))
            parts.append(G.render(f, cam[sl], 8, patch=PatchParams(patch.scale[sl], patch.offset[sl]),
                                  sample_offset=sl.start, **opts).rgb)
        noiseless = G.render(field, cam, 8, patch=patch, deterministic=True, seed=1234).rgb
    assert torch.allclose(whole, torch.cat(parts), atol=1e-5)
    assert not torch.allclose(whole, noiseless, atol=1e-3)   # the density noise is really there


def test_mixed_seeds_differ_for_neighbouring_inputs():
    seeds = {mix_seed(0, step, phase) for step in range(50) for phase in (1, 2, 3)}
    assert len(seeds) == 150
    a = torch.rand(4, generator=batch_generator(0, 1, 1))
    assert torch.equal(a, torch.rand(4, generator=batch_generator(0, 1, 1)))
    assert not torch.equal(a, torch.rand(4, generator=batch_generator(0, 2, 1)))


# -- what flows through a step, and the Trainer's state changes ---------------------------------------

@pytest.fixture(scope="module")
def posed_data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("posed"), num=12, classes=3)


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    """The synthetic dataset at 16^2 (with depth maps, for D's depth channel and the outline D)."""
    data = tmp_path_factory.mktemp("shapes") / "shapes.zip"
    synth.write_synth_dataset(data, synth.SynthSettings(num=12, resolution=16, classes=2, seed=4), progress=False)
    return data


def _trainer(tmp_path, data, *overrides) -> Trainer:
    cfg, ds = fitted_tiny_config(data, *overrides)
    return Trainer(cfg, tmp_path / "run", ds, ddp.DistInfo())


def test_fake_and_real_batches_have_the_documented_shapes(tmp_path, posed_data):
    trainer = _trainer(tmp_path, posed_data, "model.mapping.camera_cond=true")
    cfg, b = trainer.cfg, trainer.batch_gpu
    fakes = trainer.fake_inputs(torch.Generator().manual_seed(0))
    assert isinstance(fakes, FakeBatch)
    assert fakes.latents.shape == (b, cfg.model.mapping.z_dim)
    assert fakes.labels.shape == (b, 3) and torch.equal(fakes.labels.sum(dim=1), torch.ones(b))
    assert isinstance(fakes.cameras, Camera) and len(fakes.cameras) == b
    assert fakes.gpc_angles.shape == (b, 3)
    assert fakes.patches.scale.shape == (b,) and fakes.patches.offset.shape == (b, 2)
    assert fakes.sample_indices == list(range(b))
    assert fakes.global_patch_scale.shape == (trainer.batch,) and fakes.global_patch_scale.device.type == "cpu"
    assert fakes.prior_cameras is None and fakes.depth_choices is None      # no camera generator, no depth
    real = trainer.next_real()
    assert isinstance(real, RealBatch)
    assert real.images.shape == (b, 3, 16, 16) and -1 <= real.images.min() and real.images.max() <= 1
    assert real.labels.shape == (b, 3) and real.angles.shape == (b, 3)
    assert real.features is None and real.outline_masks is None


def test_a_camera_generator_keeps_the_prior_cameras_beside_the_posterior_ones(tmp_path, posed_data):
    trainer = _trainer(tmp_path, posed_data, "model.family=3dgp", "model.camera_generator.enabled=true",
                       "model.camera_generator.hidden_dim=32", "model.camera.dist=uniform")
    fakes = trainer.fake_inputs(torch.Generator().manual_seed(0))
    assert len(fakes.prior_cameras) == len(fakes.cameras) == trainer.batch_gpu
    assert not torch.equal(fakes.prior_cameras.angles, fakes.cameras.angles)


def test_render_fakes_gives_the_same_record_with_and_without_the_outline_d(tmp_path, shapes_data):
    trainer = _trainer(tmp_path, shapes_data, "discriminator.img_channels=4", "training.outline.weight=1.0",
                       "training.outline.resolution=8")
    b, P = trainer.batch_gpu, trainer.patch_res
    fakes = trainer.fake_inputs(torch.Generator().manual_seed(0))
    assert fakes.depth_choices.shape == (b,) and fakes.depth_choices.dtype == torch.long
    real = trainer.next_real()
    assert real.images.shape == (b, 4, 16, 16) and real.outline_masks.shape == (b, 1, 8, 8)
    with torch.no_grad():
        plain = trainer.render_fakes(fakes, PHASE_G)
        with_outline = trainer.render_fakes(fakes, PHASE_G, outline=True)
    assert type(plain) is type(with_outline) is RenderedFakes
    assert plain.images.shape == (b, 4, P, P) and plain.opacity.shape == (b, 1, P, P)
    assert plain.whole_opacity is None and with_outline.whole_opacity.shape == (b, 1, 8, 8)
    # the whole-image render is an addition: the patches D sees are the same
    assert torch.equal(plain.images, with_outline.images) and torch.equal(plain.opacity, with_outline.opacity)


def test_the_best_metric_is_the_lowest_finite_value_of_the_first_metric(tmp_path, posed_data):
    trainer = _trainer(tmp_path, posed_data, "training.metrics=[fid2k_full,kid2k_full]")
    fid = "fid2k_full"
    steps = [  # (metrics, is best, best after, last after)
        ({}, False, None, {}),
        ({fid: 5.0, "kid2k_full": 1.0}, True, 5.0, {fid: 5.0, "kid2k_full": 1.0}),
        ({fid: 6.0}, False, 5.0, {fid: 6.0}),
        ({fid: 5.0}, False, 5.0, {fid: 5.0}),                  # as good is not better
        ({fid: float("inf")}, False, 5.0, {fid: float("inf")}),
        ({"kid2k_full": 0.1}, False, 5.0, {"kid2k_full": 0.1}),  # the first metric missing
        ({fid: 4.0}, True, 4.0, {fid: 4.0}),
        ({}, False, 4.0, {fid: 4.0}),                          # no evaluation: the last ones stay
    ]
    for metrics, best, best_after, last_after in steps:
        assert trainer.record_metrics(metrics) is best, metrics
        assert trainer.best_metric == best_after and trainer.last_metric == last_after
    assert trainer.record_metrics({fid: float("nan")}) is False and trainer.best_metric == 4.0


def test_rollbacks_count_in_all_and_in_a_row_and_survive_the_reload(tmp_path, posed_data):
    trainer = _trainer(tmp_path, posed_data)
    base_seed = trainer.cfg.training.seed
    (tmp_path / "run").mkdir(parents=True, exist_ok=True)
    good = tmp_path / "run" / "good.ckpt"
    trainer.save(good)                                       # rollbacks 0, seed offset 0, step 0
    assert [trainer.note_divergence(), trainer.note_divergence()] == [1, 2]
    trainer.note_good_checkpoint()
    assert (trainer.rollbacks, trainer.failures_since_good) == (2, 0)
    trainer.train_step()
    trainer.add_train_time(1.5)
    trainer.add_train_time(0.25)
    assert trainer.end_tick() == 1 and trainer.end_tick() == 2
    assert (trainer.step, trainer.tick, trainer.train_seconds) == (1, 2, 1.75)
    assert trainer.note_divergence() == 1
    trainer.roll_back(good)
    # the checkpoint's progress, the counts of now; the seed moves by the failures in a row
    assert (trainer.step, trainer.cur_nimg, trainer.tick, trainer.train_seconds) == (0, 0, 0, 0.0)
    assert (trainer.rollbacks, trainer.failures_since_good, trainer.seed_offset) == (3, 1, 1)
    assert trainer.note_divergence() == 2
    trainer.roll_back(good)
    # the offset is the checkpoint's (0) plus the failures in a row (2), not a running sum
    assert (trainer.rollbacks, trainer.failures_since_good, trainer.seed_offset) == (4, 2, 2)
    assert trainer.seed == base_seed + 7919 * 2
