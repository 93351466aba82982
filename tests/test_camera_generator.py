"""3DGP's learned camera generator: the ball-in-sphere prior as parameter vectors, posteriors that stay
inside the prior's ranges, what each MLP may depend on, the generator's posterior/mean cameras, and
the 3dgp_demo preset training, resuming exactly, checkpointing and rendering on a CPU."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from train_helpers import fitted_tiny_config, tiny_session, write_tiny_dataset
from trigan.cli.main import main
from trigan.core.camera_generator import (
    FOV,
    LA_PITCH,
    LA_RADIUS,
    LA_YAW,
    LOOK_AT,
    ORIGIN,
    PARAM_NAMES,
    PITCH,
    RADIUS,
    YAW,
    CameraGenerator,
    camera_to_params,
    has_first_layout,
    migrate_first_layout,
    params_to_camera,
    prior_mean_angles,
    prior_ranges,
)
from trigan.core.cameras import Camera, Pose, sample_camera_prior
from trigan.core.checkpoint import load_checkpoint, load_generator, save_checkpoint
from trigan.core.config import CameraConfig, CameraGeneratorConfig
from trigan.core.errors import CheckpointError, ConfigError
from trigan.core.generator import Generator
from trigan.training.config import load_config

# A tiny 3DGP model: the conftest's tiny demo with a ball-in-sphere prior and a camera generator.
THREE_DGP = {"model.family": "3dgp", "model.camera_generator.enabled": "true",
             "model.camera_generator.hidden_dim": 32, "model.camera.dist": "uniform",
             "model.camera.yaw_std": 1.57, "model.camera.pitch_std": 0.785, "model.camera.fov_min": 10.0,
             "model.camera.fov_max": 45.0, "model.camera.look_at_radius_max": 0.2}


def imagenet_prior() -> CameraConfig:
    return load_config("3dgp_imagenet256").model.camera


def tiny_3dgp(**overrides) -> Generator:
    return Generator(tiny_config(**{**THREE_DGP, **overrides}).model)


# -------------------------------------------------------------------------------------------------
# The prior as parameter vectors

def test_prior_ranges_are_upstreams_ball_in_sphere():
    r = prior_ranges(imagenet_prior())
    expected = {YAW: (-1.57, 1.57), PITCH: (math.pi / 4, 3 * math.pi / 4), FOV: (10, 45), RADIUS: (1, 1),
                LA_YAW: (-math.pi, math.pi), LA_PITCH: (0, math.pi), LA_RADIUS: (0, 0.2)}
    for i, (lo, hi) in expected.items():
        assert r[i].tolist() == pytest.approx([lo, hi], abs=1e-6), PARAM_NAMES[i]
    assert prior_mean_angles(imagenet_prior()).tolist() == pytest.approx([0.0, math.pi / 2], abs=1e-6)


def test_prior_samples_fill_their_ranges_and_nothing_else():
    cfg = imagenet_prior()
    gen = torch.Generator().manual_seed(1)
    params = camera_to_params(sample_camera_prior(cfg, 20000, generator=gen))
    r = prior_ranges(cfg)
    for i, name in enumerate(PARAM_NAMES):
        lo, hi = r[i].tolist()
        col = params[:, i]
        assert float(col.min()) >= lo - 1e-5 and float(col.max()) <= hi + 1e-5, name
        if hi > lo:   # uniform in the range (look-at pitch: uniform in cos, i.e. directions on the sphere)
            x = (col.cos() + 1) / 2 if i == LA_PITCH else (col - lo) / (hi - lo)
            hist = torch.histc(x, bins=10, min=0, max=1) / len(x)
            assert float((hist - 0.1).abs().max()) < 0.01, name
    # The look-at point lies in the ball of radius 0.2 and the camera on the sphere of radius 1.
    cams = params_to_camera(params)
    assert float(cams.look_at.norm(dim=1).max()) <= 0.2 + 1e-6
    assert torch.allclose(cams.origins().norm(dim=1), torch.ones(len(cams)), atol=1e-5)


def test_camera_parameters_round_trip():
    gen = torch.Generator().manual_seed(2)
    cams = sample_camera_prior(imagenet_prior(), 500, generator=gen)
    back = params_to_camera(camera_to_params(cams), like=cams)
    for f in ("angles", "radius", "fov", "look_at", "pivot"):
        assert torch.allclose(getattr(back, f), getattr(cams, f), atol=1e-5), f
    # and a look-at point at the pivot reads as radius 0 (no NaN direction)
    at_pivot = Camera.from_angles(0.3, 1.2, fov=20.0)
    p = camera_to_params(at_pivot)
    assert torch.isfinite(p).all() and float(p[0, LA_RADIUS]) == 0.0


def test_a_camera_generator_needs_a_prior_with_ranges():
    with pytest.raises(ConfigError, match="model.camera.dist"):
        tiny_3dgp(**{"model.camera.dist": "custom"})
    # truncnorm has ranges only where the config gives them; the message must not offer it as a fix
    with pytest.raises(ConfigError, match=r"dist uniform or spherical_uniform, or model\.camera\.yaw_range\), "
                                          r"got model\.camera\.dist='truncnorm'"):
        tiny_3dgp(**{"model.camera.dist": "truncnorm"})
    with pytest.raises(ConfigError, match="fov_min"):
        tiny_3dgp(**{"model.camera.fov_min": 50.0})


# -------------------------------------------------------------------------------------------------
# The adaptor

def _random_inputs(n, z_dim, c_dim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    prior = camera_to_params(sample_camera_prior(imagenet_prior(), n, generator=gen))
    z = torch.randn(n, z_dim, generator=gen)
    c = torch.nn.functional.one_hot(torch.randint(c_dim, (n,), generator=gen), c_dim).float()
    return prior, z, c


def test_posteriors_stay_inside_the_prior_ranges_even_when_the_networks_saturate():
    cg = CameraGenerator(CameraGeneratorConfig(enabled=True, hidden_dim=16), imagenet_prior(), z_dim=8, c_dim=5)
    prior, z, c = _random_inputs(4000, 8, 5)
    with torch.no_grad():
        for p in cg.parameters():   # drive the outputs far into the sigmoid's tails
            p.mul_(40).add_(torch.randn_like(p) * 40)
        post = cg(prior, z * 5, c)
    r = prior_ranges(imagenet_prior())
    assert torch.isfinite(post).all()
    assert (post >= r[:, 0] - 1e-5).all() and (post <= r[:, 1] + 1e-5).all()
    # The ranges are really reached (the bound does work), not merely respected.
    for i in (YAW, PITCH, FOV, LA_YAW, LA_PITCH, LA_RADIUS):
        lo, hi = r[i].tolist()
        width = hi - lo
        assert float(post[:, i].min()) < lo + 0.01 * width or float(post[:, i].max()) > hi - 0.01 * width
    assert torch.equal(post[:, RADIUS], prior[:, RADIUS])   # the radius is never adapted


def test_each_mlp_sees_what_it_should():
    cg = CameraGenerator(CameraGeneratorConfig(enabled=True, hidden_dim=16), imagenet_prior(), z_dim=8, c_dim=5)
    prior, z, c = _random_inputs(64, 8, 5)
    with torch.no_grad():
        base = cg(prior, z, c)
        other_z = cg(prior, torch.randn_like(z), c)
        other_c = cg(prior, z, c.roll(1, dims=1))
        other_fov = prior.clone()
        other_fov[:, FOV] = 30.0
        fov_changed = cg(other_fov, z, c)
    origin = list(ORIGIN)
    fov_la = [FOV, *LOOK_AT]
    assert torch.equal(base[:, origin], other_z[:, origin])           # the origin ignores z ...
    assert (base[:, fov_la] - other_z[:, fov_la]).abs().max() > 1e-4   # ... fov and look-at do not
    assert (base[:, origin] - other_c[:, origin]).abs().max() > 1e-4   # the class moves the origin
    assert torch.equal(base[:, origin], fov_changed[:, origin])        # the origin sees no fov
    assert (base[:, FOV] - fov_changed[:, FOV]).abs().max() > 1e-5


def test_groups_not_adjusted_keep_the_prior_values():
    cfg = CameraGeneratorConfig(enabled=True, hidden_dim=16, adjust_angles=False, adjust_look_at=False)
    cg = CameraGenerator(cfg, imagenet_prior(), z_dim=8, c_dim=5)
    prior, z, c = _random_inputs(32, 8, 5)
    post = cg(prior, z, c)
    keep = [YAW, PITCH, RADIUS, *LOOK_AT]
    assert torch.equal(post[:, keep], prior[:, keep])
    assert (post[:, FOV] - prior[:, FOV]).abs().max() > 1e-3
    # A single-value range (fixed fov) maps back to that value, and a look-at ball of radius 0 to
    # the pivot (its direction angles move, but at radius 0 they place nothing); the regularisers
    # leave all of them alone.
    fixed = CameraConfig(dist="uniform", yaw_std=1.0, pitch_std=0.5, fov=18.0, look_at_radius_max=0.0)
    cg = CameraGenerator(CameraGeneratorConfig(enabled=True, hidden_dim=16), fixed, z_dim=8, c_dim=0)
    prior_cams = sample_camera_prior(fixed, 16, torch.Generator().manual_seed(0))
    prior = camera_to_params(prior_cams)
    post = cg(prior, torch.randn(16, 8))
    assert torch.equal(post[:, [FOV, RADIUS, LA_RADIUS]], prior[:, [FOV, RADIUS, LA_RADIUS]])
    assert torch.equal(params_to_camera(post, like=prior_cams).look_at, prior_cams.look_at)
    assert cg.adapted.tolist() == [True, True, False, False, False, False, False]


# -------------------------------------------------------------------------------------------------
# Inside the Generator

def test_epigraf_models_have_no_camera_generator_and_unchanged_weights():
    G = Generator(tiny_config().model)
    assert G.camera_generator is None
    assert not any("camera_generator" in k for k in G.state_dict())
    z = G.latents([0, 1])
    prior = Camera.from_angles([0.1, 0.2], 1.4, fov=12.0)
    assert G.posterior_camera(z, None, prior) is not None
    assert torch.equal(G.posterior_camera(z, None, prior).angles, prior.angles)   # the identity
    cam = G.default_camera()
    assert float(cam.yaw[0]) == 0.0 and float(cam.fov[0]) == G.cfg.camera.fov


def test_a_seed_gets_the_same_posterior_camera_in_any_batch():
    G = tiny_3dgp()
    z = G.latents([3, 5])
    c = G.labels([1, 2], 2)
    both = G.posterior_camera(z, c, prior_seeds=[3, 5])
    alone = G.posterior_camera(z[1:], c[1:], prior_seeds=[5])
    assert torch.allclose(both.angles[1:], alone.angles) and torch.allclose(both.fov[1:], alone.fov)
    assert torch.allclose(both.look_at[1:], alone.look_at)
    # ... and that camera is the generator applied to the prior camera drawn from the seed
    prior = sample_camera_prior(G.cfg.camera, 1, torch.Generator().manual_seed(5))
    direct = G.camera_generator(camera_to_params(prior), z[1:], c[1:])
    assert torch.allclose(camera_to_params(alone), direct, atol=1e-5)


def test_the_mean_camera_is_the_mean_of_posterior_parameters():
    G = tiny_3dgp()
    n = 300
    gen = torch.Generator().manual_seed(7)
    prior = sample_camera_prior(G.cfg.camera, n, gen)
    z = torch.randn(n, G.z_dim, generator=gen)
    classes = torch.randint(G.c_dim, (n,), generator=gen)
    c = torch.nn.functional.one_hot(classes, G.c_dim).float()
    with torch.no_grad():
        expected = G.camera_generator(camera_to_params(prior), z, c).mean(dim=0)
    mean = G.mean_camera(num_samples=n, seed=7)
    assert torch.allclose(camera_to_params(mean)[0], expected, atol=1e-5)
    # per class: one camera per label row, each the mean over that class only
    per_class = G.mean_camera(G.labels([0, 1], 2), num_samples=n, seed=7)
    assert len(per_class) == 2
    assert not torch.allclose(per_class.angles[0], per_class.angles[1])
    # default_camera uses the mean posterior's fov and look-at, with the yaw asked for
    cam = G.default_camera(yaw=0.25, batch=3)
    m = G.mean_camera()
    assert torch.allclose(cam.fov, m.fov.expand(3)) and torch.allclose(cam.look_at, m.look_at.expand(3, 3))
    assert torch.allclose(cam.yaw, torch.full((3,), 0.25))
    assert torch.allclose(G.default_camera().yaw, m.yaw)
    same = G.posterior_camera(G.latents([0, 1]), G.labels([1, 1], 2), mean=True)
    assert torch.allclose(same.fov, G.mean_camera(G.labels([1], 1)).fov.expand(2))


def test_a_3dgp_start_view_is_the_same_camera_everywhere():
    """default_camera, posterior_camera(mean=True) and Pose.for_generator (`trigan render`, the viewer):
    the mean posterior camera, bit for bit, over random classes or per class."""
    G = tiny_3dgp()
    start = Pose.for_generator(G).to_camera().repeat(2)
    z = G.latents([0, 1])
    for camera in (G.default_camera(batch=2), G.posterior_camera(z, mean=True)):
        for key in ("angles", "radius", "fov", "look_at", "pivot"):
            assert torch.equal(getattr(camera, key), getattr(start, key)), key
    per_class = G.posterior_camera(z, G.labels([1, 1], 2), mean=True)
    assert torch.equal(per_class.angles, Pose.for_generator(G, 1).to_camera().repeat(2).angles)


def test_rendering_from_posterior_cameras_trains_the_camera_generator():
    G = tiny_3dgp()
    z = torch.randn(2, G.z_dim)
    c = G.labels([0, 1], 2)
    cam = G.posterior_camera(z, c)
    out = G.render(G.field_from_ws(G.map_latents(z, c)), cam, 8)
    out.rgb.mean().backward()
    grads = [p.grad for p in G.camera_generator.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_camera_generator_weights_survive_a_checkpoint(tmp_path):
    cfg = tiny_config(**THREE_DGP)
    G = Generator(cfg.model)
    with torch.no_grad():
        for p in G.camera_generator.parameters():
            p.add_(torch.randn_like(p))
    save_checkpoint(tmp_path / "g.ckpt", cfg, G)
    G2, ckpt = load_generator(tmp_path / "g.ckpt")
    assert ckpt.config.model.camera_generator.enabled
    z = G.latents([4])
    a, b = G.posterior_camera(z, G.labels([1], 1)), G2.posterior_camera(z, G2.labels([1], 1))
    assert torch.equal(a.fov, b.fov) and torch.equal(a.angles, b.angles)


# -------------------------------------------------------------------------------------------------
# Training

TINY_3DGP_TRAIN = [f"{k}={v}" for k, v in THREE_DGP.items()] + [
    "training.camera_reg.emd_anneal_kimg=0.016", "training.camera_reg.jacobian_origin=0.5",
    "training.camera_reg.jacobian_fov=0.05", "training.camera_reg.jacobian_look_at=0.005",
    "training.camera_reg.force_mean_num_samples=32", "training.camera_reg.jacobian_num_samples=32"]


def _run(tmp_path, name, data, kimg, resume=False):
    cfg, ds = fitted_tiny_config(data, *TINY_3DGP_TRAIN, f"training.kimg={kimg}")
    run = tmp_path / name
    assert tiny_session(run, cfg, resume=resume).run(ds) == "done"
    return run


def test_training_with_a_camera_generator_resumes_exactly(tmp_path):
    data = write_tiny_dataset(tmp_path / "squares")
    straight = _run(tmp_path, "straight", data, 0.032)
    _run(tmp_path, "halves", data, 0.016)
    first = load_checkpoint(tmp_path / "halves" / "latest.ckpt").extra["G"]
    _run(tmp_path, "halves", data, 0.032, resume=True)
    a = load_checkpoint(straight / "latest.ckpt")
    b = load_checkpoint(tmp_path / "halves" / "latest.ckpt")
    assert a.progress["step"] == b.progress["step"] == 4
    keys = [k for k in a.extra["G"] if k.startswith("camera_generator.")]
    assert keys
    for net in ("G", "D"):
        for k, v in a.extra[net].items():
            assert torch.equal(v, b.extra[net][k]), f"{net}.{k} differs after resume"
    assert any(not torch.equal(first[k], a.extra["G"][k]) for k in keys)   # the camera generator learned
    ticks = [json.loads(line) for line in (straight / "stats.jsonl").read_text().splitlines()]
    # every term and statistic is logged; the EMD ramp starts at 0 and is on after step 0
    assert "camera_emd" not in ticks[0] and ticks[-1]["camera_emd"] > 0
    assert ticks[0]["camera_emd_multiplier"] == pytest.approx(0.5) and ticks[-1]["camera_emd_multiplier"] == 1.0
    for key in ("camera_force_mean", "camera_jacobian", "camera_fov_mean", "camera_yaw_std"):
        assert key in ticks[-1]
    assert 10.0 <= ticks[-1]["camera_fov_mean"] <= 45.0


def test_the_3dgp_demo_preset_trains_resumes_and_renders(tmp_path):
    data = tmp_path / "shapes.zip"
    assert main(["dataset", "synth", str(data), "--num", "16", "--resolution", "64", "--classes", "2", "--seed", "1"]) == 0
    common = ["--device", "cpu", "training.batch_size=4", "training.num_workers=0", "training.samples=4",
              "training.tick_kimg=0.004", "training.video_ticks=0", "training.camera_reg.force_mean_num_samples=64"]
    assert main(["train", "--config", "3dgp_demo", "--data", str(data), "--out", str(tmp_path / "runs"),
                 "--kimg", "0.004", *common]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    assert load_checkpoint(run / "latest.ckpt").progress["step"] == 1
    assert main(["train", "--resume", str(run), "--kimg", "0.008"]) == 0
    ckpt = load_checkpoint(run / "latest.ckpt")
    assert ckpt.progress["step"] == 2 and ckpt.config.model.name == "3dgp_demo"
    assert ckpt.config.model.camera_generator.enabled and ckpt.config.model.c_dim == 2
    assert any(k.startswith("camera_generator.") for k in ckpt.G_ema)
    out = tmp_path / "renders"
    assert main(["render", str(run / "latest.ckpt"), "--out", str(out), "--vis", "image", "--seeds", "0",
                 "--classes", "1", "--resolution", "16"]) == 0
    (png,) = sorted(out.rglob("*.png"))
    assert Image.open(png).size == (16, 16)


# -------------------------------------------------------------------------------------------------
# Upstream's options, and weights of trigan's first layout

def _outputs_set(cg, origin_raw, look_at_raw):
    """Zero the output layers' weights and give them biases: the raw outputs are then these numbers."""
    with torch.no_grad():
        for adaptor, raw in ((cg.origin_adaptor, origin_raw), (cg.look_at_adaptor, look_at_raw)):
            layer = adaptor.main[1]
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(raw, dtype=torch.float32) / layer.bias_gain)


def test_residual_adds_the_rescaled_prior_before_the_sigmoid_and_an_adjusted_radius_is_raw():
    """3DGP's `residual` and `adjust.radius`, from their definition: raw = MLP + (v - lo) / (hi - lo)
    (the radius raw), then lo + sigmoid(raw) (hi - lo); an adjusted radius is its raw value."""
    cfg = CameraGeneratorConfig(enabled=True, hidden_dim=8, residual=True, adjust_radius=True)
    cg = CameraGenerator(cfg, imagenet_prior(), z_dim=8, c_dim=0)
    _outputs_set(cg, (0.5, -0.25, 0.0, 0.125), (1.0, 0.0, 0.0, -1.0))
    prior, z, _ = _random_inputs(16, 8, 5)
    with torch.no_grad():
        post = cg(prior, z)
    r = prior_ranges(imagenet_prior())
    u = (prior - r[:, 0]) / (r[:, 1] - r[:, 0] + 1e-8)
    s = lambda i, raw: torch.sigmoid(raw + u[:, i])
    assert torch.allclose(post[:, YAW], r[YAW, 0] + s(YAW, 0.5) * (r[YAW, 1] - r[YAW, 0]), atol=1e-6)
    margin = 1e-5
    expected_pitch = r[PITCH, 0] + margin + s(PITCH, -0.25) * (r[PITCH, 1] - r[PITCH, 0] - 2 * margin)
    assert torch.allclose(post[:, PITCH], expected_pitch, atol=1e-6)
    assert torch.allclose(post[:, FOV], r[FOV, 0] + s(FOV, 1.0) * (r[FOV, 1] - r[FOV, 0]), atol=1e-4)
    assert torch.allclose(post[:, RADIUS], prior[:, RADIUS] + 0.125, atol=1e-6)   # raw: prior radius + output
    assert torch.allclose(post[:, LA_RADIUS], s(LA_RADIUS, -1.0) * 0.2, atol=1e-6)


def test_a_look_at_radius_floor_replaces_the_lower_end_it_maps_back_to():
    """Upstream maps the look-at radius back from its look-at pitch minimum; converted models keep that."""
    cg = CameraGenerator(CameraGeneratorConfig(enabled=True, hidden_dim=8, look_at_radius_floor=0.05),
                         imagenet_prior(), z_dim=8, c_dim=0)
    _outputs_set(cg, (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))
    prior, z, _ = _random_inputs(4, 8, 5)
    with torch.no_grad():
        post = cg(prior, z)
    assert torch.allclose(post[:, LA_RADIUS], torch.full((4,), 0.05 + 0.5 * (0.2 - 0.05)))


def _first_layout_state(generator: CameraGenerator, seed: int = 0) -> dict:
    """Random weights in trigan's first camera generator layout (origin 2 -> 2, look-at 6 -> 4)."""
    gen = torch.Generator().manual_seed(seed)
    H, E = generator.cfg.hidden_dim, generator.cfg.embed_dim
    shapes = {"origin_adaptor.params_in": (H, 2), "origin_adaptor.c_embed": (E, generator.c_dim),
              "origin_adaptor.hidden": (H, H + E), "origin_adaptor.out": (2, H),
              "look_at_adaptor.params_in": (H, 6), "look_at_adaptor.z_embed": (E, generator.z_dim),
              "look_at_adaptor.c_embed": (E, generator.c_dim), "look_at_adaptor.hidden": (H, H + 2 * E),
              "look_at_adaptor.out": (4, H)}
    state = {}
    for name, (o, i) in shapes.items():
        state[f"camera_generator.{name}.weight"] = torch.randn(o, i, generator=gen) * 10
        state[f"camera_generator.{name}.bias"] = torch.randn(o, generator=gen)
    return state


def _first_layout_forward(state, prior, z, c, ranges, lr_mult):
    """The first layout's computation, written out: rescaled (yaw, pitch) -> origin MLP; (its raw yaw,
    pitch, the rescaled fov and look-at) -> look-at MLP; sigmoids back into the ranges."""
    def fc(name, x, act):
        w, b = state[f"camera_generator.{name}.weight"], state[f"camera_generator.{name}.bias"]
        y = x @ (w * lr_mult / math.sqrt(w.shape[1])).t() + b * lr_mult
        return torch.nn.functional.softplus(y) if act else y

    def unit_rms(x):
        return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()

    lo, hi = ranges[:, 0], ranges[:, 1]
    u = (prior - lo) / (hi - lo + 1e-8)
    h = torch.cat([fc("origin_adaptor.params_in", u[:, [YAW, PITCH]], True),
                   unit_rms(fc("origin_adaptor.c_embed", c, True))], dim=1)
    origin = fc("origin_adaptor.out", fc("origin_adaptor.hidden", h, True), False)
    h = torch.cat([fc("look_at_adaptor.params_in", torch.cat([origin, u[:, [FOV, *LOOK_AT]]], dim=1), True),
                   unit_rms(fc("look_at_adaptor.z_embed", z, True)), unit_rms(fc("look_at_adaptor.c_embed", c, True))],
                  dim=1)
    look_at = fc("look_at_adaptor.out", fc("look_at_adaptor.hidden", h, True), False)
    raw = torch.cat([origin, look_at[:, :1], prior[:, [RADIUS]], look_at[:, 1:]], dim=1)
    return lo + torch.sigmoid(raw) * (hi - lo)


def test_weights_of_the_first_layout_convert_exactly():
    cfg = CameraGeneratorConfig(enabled=True, hidden_dim=8, embed_dim=4)
    cg = CameraGenerator(cfg, imagenet_prior(), z_dim=8, c_dim=5)
    old = _first_layout_state(cg)
    new = migrate_first_layout(old)
    assert has_first_layout(old) and not has_first_layout(new)
    cg.load_state_dict({k[len("camera_generator."):]: v for k, v in new.items()})
    prior, z, c = _random_inputs(256, 8, 5)
    with torch.no_grad():
        ours = cg(prior, z, c)
        theirs = _first_layout_forward(old, prior, z, c, prior_ranges(imagenet_prior()), cfg.lr_multiplier)
    # The same function, up to the 1e-5 pitch margin the current layout adds (as upstream does).
    keep = [YAW, FOV, RADIUS, *LOOK_AT]
    assert torch.allclose(ours[:, keep], theirs[:, keep], atol=1e-4)
    assert float((ours[:, PITCH] - theirs[:, PITCH]).abs().max()) <= 2e-5
    assert float((theirs[:, YAW] - theirs[:, YAW].mean()).abs().max()) > 1e-2   # a non-trivial mapping


@pytest.mark.parametrize("damage", ["narrow", "unknown_layer", "short_name"])
def test_a_damaged_first_layout_checkpoint_is_refused_in_one_line(tmp_path, damage):
    G = tiny_3dgp()
    state = {k: v for k, v in G.state_dict().items() if not k.startswith("camera_generator.")}
    state.update(_first_layout_state(G.camera_generator))
    if damage == "narrow":     # 3 origin inputs where the first layout has 2
        state["camera_generator.origin_adaptor.params_in.weight"] = torch.zeros(G.camera_generator.cfg.hidden_dim, 3)
    elif damage == "unknown_layer":
        state["camera_generator.origin_adaptor.extra.weight"] = torch.zeros(2, 2)
    else:
        state["camera_generator.scale"] = torch.zeros(())
    path = save_checkpoint(tmp_path / "old.ckpt", tiny_config(**THREE_DGP), state)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: its camera generator has trigan's first "
                                                        "layout, but its weights do not have that layout's")):
        load_checkpoint(path)


def test_a_checkpoint_of_the_first_layout_loads_but_does_not_resume(tmp_path):
    G = tiny_3dgp()
    cfg = tiny_config(**THREE_DGP)
    state = {k: v for k, v in G.state_dict().items() if not k.startswith("camera_generator.")}
    state.update(_first_layout_state(G.camera_generator))
    save_checkpoint(tmp_path / "old.ckpt", cfg, state, G=state, G_opt={"state": {}, "param_groups": []})
    G2, ckpt = load_generator(tmp_path / "old.ckpt")
    assert ckpt.migrated_camera_generator and G2.camera_generator.origin_adaptor.project_params.weight.shape[1] == 4
    assert set(ckpt.extra["G"]) == set(G.state_dict())
