"""Generator: mapping, truncation, noise, gradients, parameter counts of every preset."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.cameras import Camera, PatchParams, Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.compositing import activate_density
from trigan.core.errors import ConfigError
from trigan.core.field import EMPTY_SIGMA
from trigan.core.generator import Generator, parameter_counts, z_from_seed
from trigan.core.trajectories import Trajectory
from trigan.training.config import list_presets, load_config


def expected_parameter_count(m) -> dict:
    """Count from the architecture's definition (StyleGAN2 skip decoder + EpiGRAF mapping and MLP)."""
    w, z, feat = m.mapping.w_dim, m.mapping.z_dim, m.triplane.feat_dim
    cond = m.c_dim + (2 if m.mapping.camera_cond else 0)
    mapping = (cond * w + w if cond else 0) + (z + (w if cond else 0)) * w + w + (m.mapping.num_layers - 1) * (w * w + w)
    ch = lambda r: min(m.triplane.channel_base // r, m.triplane.channel_max)
    noise = 1 if m.triplane.use_noise else 0
    layer = lambda cin, cout: cout * cin * 9 + cout + (w * cin + cin) + noise
    decoder, r = 0, 4
    while r <= m.triplane.resolution:
        decoder += ch(4) * 16 if r == 4 else layer(ch(r // 2), ch(r))
        decoder += layer(ch(r), ch(r)) + (3 * feat * ch(r) + 3 * feat) + (w * ch(r) + ch(r))
        r *= 2
    h = m.triplane.mlp_hidden
    mlp = feat * h + h + h * 4 + 4
    counts = {"mapping": mapping, "tri_plane_decoder": decoder, "tri_plane_mlp": mlp}
    if m.camera_generator.enabled:   # 3DGP: origin MLP (4 -> 4, class) and look-at MLP (8 -> 4, z and class)
        H, E, c = m.camera_generator.hidden_dim, m.camera_generator.embed_dim, m.c_dim
        fc = lambda i, o: i * o + o
        embeds = lambda use_z: (fc(z, E) if use_z else 0) + (fc(c, E) if c else 0)
        width = lambda use_z: H + E * (int(use_z) + int(c > 0))
        counts["camera_generator"] = (fc(4, H) + embeds(False) + fc(width(False), H) + fc(H, 4)
                                      + fc(8, H) + embeds(True) + fc(width(True), H) + fc(H, 4))
    return counts


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_builds_with_the_expected_parameter_count(preset):
    cfg = load_config(preset)
    with torch.device("meta"):  # count without allocating the big presets
        G = Generator(cfg.model)
    counts = parameter_counts(G)
    expected = expected_parameter_count(cfg.model)
    for key, value in expected.items():
        assert counts[key] == value, key
    assert counts["total"] == sum(expected.values())


def test_ffhq512_matches_the_sizes_reported_for_epigraf():
    """EpiGRAF 2.2: about 29.0M generator parameters, mapping 0.53M (no GPC), decoder 28.46M."""
    cfg = load_config("epigraf_ffhq512", ["model.mapping.camera_cond=false"])
    with torch.device("meta"):
        counts = parameter_counts(Generator(cfg.model))
    assert abs(counts["tri_plane_decoder"] - 28.46e6) < 0.01e6
    assert abs(counts["mapping"] - 0.53e6) < 0.01e6
    assert abs(counts["total"] - 29.0e6) < 0.05e6


def test_num_ws_follows_the_decoder_depth():
    for res, expected in [(16, 6), (32, 8), (512, 16)]:
        cfg = tiny_config(**{"model.triplane.resolution": res, "model.triplane.channel_base": 2048})
        with torch.device("meta"):
            assert Generator(cfg.model).synthesis.num_ws == expected


def test_seed_gives_numpy_randomstate_latent():
    z = z_from_seed(1234, 512)
    assert torch.equal(z, torch.from_numpy(np.random.RandomState(1234).randn(512).astype(np.float32)))


def test_psi_zero_gives_w_avg_and_psi_one_is_untouched(tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    G.mapping.w_avg.normal_()
    z, c = G.latents([1, 2, 3]), G.labels([0, 1, 2], 3)
    ws0 = G.map_latents(z, c, psi=0.0)
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    ws1, ws07 = G.map_latents(z, c, psi=1.0), G.map_latents(z, c, psi=0.7)
    assert torch.allclose(ws07, G.mapping.w_avg + 0.7 * (ws1 - G.mapping.w_avg), atol=1e-6)
    assert torch.equal(ws1[:, 0], ws1[:, -1])   # the same w on every layer


def test_class_truncation_moves_toward_the_class_mean(tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    c = G.labels([2], 1)
    mean = G.class_mean_w(c)
    ws0 = G.map_latents(G.latents([5]), c, psi=0.0, class_truncation=True)
    assert torch.allclose(ws0[0, 0], mean[0], atol=1e-6)
    other = G.class_mean_w(G.labels([3], 1))
    assert (mean - other).abs().max() > 1e-3   # classes have distinct means


def test_w_avg_tracks_the_batch_mean_when_asked(tiny_cfg):
    G = Generator(tiny_cfg.model)
    z, c = torch.randn(64, 32), G.labels([0] * 64, 64)
    before = G.mapping.w_avg.clone()
    ws = G.map_latents(z, c, update_emas=True)
    expected = ws[:, 0].mean(0).lerp(before, 0.998)
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6)


def test_pose_conditioning_uses_the_mean_pose_by_default():
    cfg = tiny_config(**{"model.mapping.camera_cond": "true", "model.camera.mean_pose": "[0.3,1.4,0.0]"})
    G = Generator(cfg.model).eval()
    z, c = G.latents([0, 1]), G.labels([0, 1], 2)
    default = G.map_latents(z, c)
    explicit = G.map_latents(z, c, camera_angles=torch.tensor([[0.3, 1.4, 0.0]] * 2))
    other = G.map_latents(z, c, camera_angles=torch.tensor([[-0.5, 1.0, 0.0]] * 2))
    assert torch.allclose(default, explicit) and not torch.allclose(default, other)


def test_const_noise_is_deterministic_and_random_noise_is_not(tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    for p in G.parameters():
        if p.ndim == 0:
            p.data.fill_(0.5)   # noise_strength, zero at initialisation
    ws = G.map_latents(G.latents([0]), G.labels([1], 1))
    assert torch.equal(G.synthesis(ws, "const"), G.synthesis(ws, "const"))
    assert not torch.equal(G.synthesis(ws, "random"), G.synthesis(ws, "random"))
    assert not torch.equal(G.synthesis(ws, "none"), G.synthesis(ws, "const"))


def test_planes_have_three_planes_of_feat_dim_channels(tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    planes = G.synthesis(G.map_latents(G.latents([0, 1]), G.labels([0, 1], 2)))
    assert planes.shape == (2, 24, 16, 16)
    field = G.field(planes)
    assert field.planes.shape == (2, 3, 8, 16, 16)
    rgb, sigma = field(torch.zeros(2, 5, 3))
    assert rgb.shape == (2, 5, 3) and sigma.shape == (2, 5)


def test_selecting_one_latent_of_a_batch_field(tiny_cfg):
    G = Generator(tiny_cfg.model).eval()
    field = G.field_from_ws(G.map_latents(G.latents([0, 1, 2]), G.labels([0, 1, 2], 3)))
    pts = torch.rand(1, 7, 3, generator=torch.Generator().manual_seed(7)) * 0.3
    one = field.select(1)
    assert one.batch_size == 1
    # The same maths on 7 points and on 3 x 7: the MLP's matrix products run with other shapes, and
    # the kernel torch picks for a shape (by CPU: MKL's AVX-512 ones on a Xeon) may order their sums
    # differently, which moves float32 results by a few units in the last place. Values here are
    # O(1): 1e-5 is ~100 ulps, far below any real difference (another latent's values differ by ~0.1).
    rgb_one, sigma_one = one(pts)
    rgb_all, sigma_all = field(pts.expand(3, -1, -1))
    torch.testing.assert_close(sigma_one, sigma_all[1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rgb_one, rgb_all[1:2], rtol=1e-5, atol=1e-5)
    assert (sigma_all[0] - sigma_all[1]).abs().max() > 1e-3     # the bound does tell latents apart
    # [N, 3] points for a one-latent field: the same shapes inside, so the same bits.
    assert torch.equal(one(pts[0])[1], sigma_one[0])


def test_field_reads_each_plane_at_its_own_coordinate_pair(tiny_cfg):
    """Put a ramp into one plane at a time and check which point coordinates it responds to."""
    G = Generator(tiny_cfg.model).eval()
    R = 16
    ramp_w = torch.linspace(-1, 1, R).expand(R, R)          # varies along the width (first coordinate)
    axes = {0: (0, 1), 1: (0, 2), 2: (1, 2)}
    for plane, (first, second) in axes.items():
        planes = torch.zeros(1, 3, 8, R, R)
        planes[0, plane, 0] = ramp_w
        field = G.field(planes.reshape(1, 24, R, R))
        s = field.cube_scale
        pts = torch.zeros(1, 3, 3)
        pts[0, 1, first] = 0.5 * s
        pts[0, 2, second] = 0.5 * s
        feats = field.features(pts)[0, :, 0]
        # Mean of three planes: only this plane carries the ramp; width follows the first coordinate.
        assert torch.allclose(feats, torch.tensor([0.0, 0.5 / 3, 0.0]), atol=1e-6)


def test_gradients_reach_every_parameter_in_training_mode():
    cfg = tiny_config(**{"model.background.type": "sphere", "model.background.hidden_dim": 8,
                         "model.mapping.camera_cond": "true"})
    G = Generator(cfg.model).train()
    for p in G.parameters():
        if p.ndim == 0:
            p.data.fill_(0.1)
    z, c = torch.randn(2, 32), G.labels([0, 3], 2)
    cam = Camera.from_angles([0.1, -0.4], [1.4, 1.7], fov=30.0)
    patch = PatchParams(torch.tensor([0.5, 1.0]), torch.tensor([[0.1, 0.2], [0.0, 0.0]]))
    out = G(z, c, cam, patch=patch, resolution=8, camera_angles=cam.angles, noise_mode="random",
            deterministic=False, density_noise_std=0.5)
    (out.rgb.square().mean() + out.depth.mean()).backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().max() == 0]
    assert not missing, missing


def test_background_model_fills_rays_that_miss_the_scene():
    cfg = tiny_config(**{"model.background.type": "sphere", "model.background.hidden_dim": 8,
                         "model.render.white_background": "false"})
    G = Generator(cfg.model).eval()
    with torch.no_grad():
        G.synthesis.tri_plane_mlp.model[-1].bias[3] = -50.0   # empty foreground
        ws = G.map_latents(G.latents([0]), G.labels([0], 1))
        field = G.field_from_ws(ws)
        out = G.render(field, G.default_camera(), 8)
    assert out.opacity.max() < 1e-6
    assert out.rgb.abs().max() > 1e-3   # colour comes from the background network


def test_sigmoid_colours_are_eg3ds_squashing_of_the_raw_colours_and_density_is_untouched():
    # EpiGRAF's raw colours unless a preset asks (the demo presets do)
    assert load_config("epigraf_ffhq512").model.triplane.color_activation == "none"
    raw_cfg = tiny_config(**{"model.triplane.color_activation": "none"})
    sig_cfg = tiny_config(**{"model.triplane.color_activation": "sigmoid"})
    G_raw, G_sig = Generator(raw_cfg.model).eval(), Generator(sig_cfg.model).eval()
    G_sig.load_state_dict(G_raw.state_dict())                         # no new weights: same state dict
    planes = G_raw.synthesis(G_raw.map_latents(G_raw.latents([0]), G_raw.labels([0], 2)))
    # Plane values large enough to drive the raw colours far outside [-1, 1].
    planes = planes * 50
    pts = (torch.rand(1, 4000, 3) * 2 - 1) * G_raw.field(planes).cube_scale
    rgb_raw, sigma_raw = G_raw.field(planes)(pts)
    rgb_sig, sigma_sig = G_sig.field(planes)(pts)
    assert rgb_raw.abs().max() > 3                                    # the test reaches the tails
    # EG3D: sigmoid(x) (1 + 2 m) - m in [0, 1] units, m = 0.001; trigan's colours are 2 c - 1.
    expected = 2 * (torch.sigmoid(rgb_raw) * 1.002 - 0.001) - 1
    assert torch.allclose(rgb_sig, expected, atol=1e-6)
    assert rgb_sig.min() >= -1.002 and rgb_sig.max() <= 1.002
    assert torch.equal(sigma_sig, sigma_raw)


def test_unknown_colour_activation_is_a_clear_error():
    # The config refuses it at load (a choice field); a ModelConfig made in Python without that
    # check is refused by the generator itself.
    with pytest.raises(ConfigError, match="model.triplane.color_activation='tanh': expected one of 'none', 'sigmoid'"):
        tiny_config(**{"model.triplane.color_activation": "tanh"})
    cfg = tiny_config()
    cfg.model.triplane.color_activation = "tanh"
    with pytest.raises(ValueError, match="color_activation 'tanh' .*none, sigmoid"):
        Generator(cfg.model)


def test_too_few_channels_is_a_clear_error():
    # The config check refuses it in one line; a ModelConfig made in Python without that check is
    # refused by the generator itself.
    with pytest.raises(ConfigError, match="channel_base=256 gives no channels at model.triplane.resolution=512"):
        tiny_config(**{"model.triplane.resolution": 512})
    model = tiny_config().model
    model = replace(model, triplane=replace(model.triplane, resolution=512))
    with pytest.raises(ValueError, match="channel_base 256 gives no channels at resolution 512"):
        Generator(model)


def test_generator_runs_on_the_meta_device_shapes_only():
    cfg = load_config("epigraf_megascans256")
    with torch.device("meta"):
        G = Generator(cfg.model)
    assert G.mapping.embed.weight.shape == (512, 198)
    assert G.synthesis.tri_plane_decoder.b512.torgb.weight.shape == (96, 64, 1, 1)


def test_support_radius_clears_density_beyond_it_and_nothing_within():
    """model.camera.support_radius: the field's raw density is EMPTY_SIGMA (activated: 0) farther than
    the radius from the origin and unchanged inside; renders and meshes follow, as they all query
    the field. Gradients stay finite."""
    torch.manual_seed(0)
    plain_cfg = tiny_config()
    cropped_cfg = tiny_config(**{"model.camera.support_radius": 0.2})
    G, Gc = Generator(plain_cfg.model).eval(), Generator(cropped_cfg.model).eval()
    Gc.load_state_dict(G.state_dict())
    ws = G.map_latents(G.latents([1]), G.labels([0], 1))
    field, cropped = G.field_from_ws(ws), Gc.field_from_ws(ws)
    pts = (torch.rand(1, 4000, 3) * 2 - 1) * G.cfg.camera.cube_scale
    rgb, sigma = field(pts)
    rgb_c, sigma_c = cropped(pts)
    outside = pts.norm(dim=-1) > 0.2
    assert outside.any() and (~outside).any()
    assert torch.equal(rgb, rgb_c)
    assert torch.equal(sigma_c[~outside], sigma[~outside])
    assert (sigma_c[outside] == EMPTY_SIGMA).all()
    assert (activate_density(sigma_c[outside], Gc.render_options()) == 0).all()
    # select() and differentiable() keep it; gradients through the cut are finite
    assert cropped.select(0).support_radius == 0.2
    p = pts.clone().requires_grad_(True)
    _, s = cropped.differentiable()(p)
    grad, = torch.autograd.grad(activate_density(s, Gc.render_options()).sum(), p)
    assert torch.isfinite(grad).all() and (grad[outside] == 0).all()
    # a render with the radius: only rays that pass within it can be covered
    cam = G.default_camera(yaw=0.3)
    with torch.no_grad():
        out = Gc.render(cropped, cam, 24)
    o, d = cam.rays((24, 24))
    miss = (torch.cross(o[0], d[0], dim=-1).norm(dim=-1) / d[0].norm(dim=-1)) > 0.2   # distance of the line
    assert miss.any() and float(out.opacity[0, 0].reshape(-1)[miss].max()) < 1e-6


def test_support_radius_must_be_positive():
    with pytest.raises(ConfigError, match="support_radius"):
        Generator(tiny_config(**{"model.camera.support_radius": 0.0}).model)


def test_pose_conditioning_reads_yaw_in_the_models_own_convention():
    """A pose-conditioned mapping with yaw_offset pi/2 (a 3DGP model) given trigan's yaw y + pi/2
    computes what one without the offset computes for y; so does its mean pose (stored in trigan's)."""
    plain_cfg = tiny_config(**{"model.mapping.camera_cond": "true", "model.camera.mean_pose": "[0.3,1.4,0.0]"})
    shifted_cfg = tiny_config(**{"model.mapping.camera_cond": "true", "model.camera.yaw_offset": math.pi / 2,
                                 "model.camera.mean_pose": f"[{0.3 + math.pi / 2},1.4,0.0]"})
    plain, shifted = Generator(plain_cfg.model).eval(), Generator(shifted_cfg.model).eval()
    shifted.load_state_dict({**plain.state_dict(), "mapping.mean_camera_pose": shifted.mapping.mean_camera_pose})
    z, c = plain.latents([0, 1]), plain.labels([0, 1], 2)
    angles = torch.tensor([[0.2, 1.3, 0.0], [-1.0, 1.7, 0.0]])
    moved = angles + torch.tensor([math.pi / 2, 0.0, 0.0])
    with torch.no_grad():
        assert torch.allclose(shifted.map_latents(z, c, camera_angles=moved), plain.map_latents(z, c, camera_angles=angles),
                              atol=1e-6)
        assert torch.allclose(shifted.map_latents(z, c), plain.map_latents(z, c), atol=1e-6)
        assert (plain.map_latents(z, c, camera_angles=moved) - plain.map_latents(z, c, camera_angles=angles)).abs().max() > 1e-4


def test_one_start_view_the_mean_pose_even_off_the_yaw_offset(tmp_path, capsys, monkeypatch):
    """A model whose mean pose yaw (0.4) is not its yaw_offset (0), as training.mirror=false data gives:
    default_camera, posterior_camera(mean=True), Pose.for_generator and `trigan render`'s view all
    start at the mean pose (yaw 0.4, pitch 1.3, the configured fov and radius). default_camera's
    yaw and pitch stay absolute overrides."""
    cfg = tiny_config(**{"model.camera.mean_pose": "[0.4,1.3,0.0]", "model.camera.yaw_offset": 0.0})
    G = Generator(cfg.model).eval()
    start = Pose(yaw=0.4, pitch=1.3, radius=cfg.model.camera.radius, fov=cfg.model.camera.fov)
    assert Pose.for_generator(G) == start
    expected = start.to_camera().repeat(2)
    for camera in (G.default_camera(batch=2), G.posterior_camera(G.latents([0, 1]), mean=True)):
        for key in ("angles", "radius", "fov", "look_at", "pivot"):
            assert torch.equal(getattr(camera, key), getattr(expected, key)), key
    overridden = G.default_camera(yaw=0.1, pitch=[1.0, 1.2])
    assert torch.allclose(overridden.yaw, torch.tensor([0.1, 0.1])) and torch.allclose(overridden.pitch, torch.tensor([1.0, 1.2]))
    # `trigan render` (no --camera): its one view is the same camera
    ckpt = save_checkpoint(tmp_path / "g.ckpt", cfg, G)
    used = []
    cameras = Trajectory.cameras
    monkeypatch.setattr(Trajectory, "cameras", lambda self, *a, **k: used.append(cameras(self, *a, **k)) or used[-1])
    assert main(["render", str(ckpt), "--out", str(tmp_path / "out"), "--seeds", "0", "--resolution", "16",
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert len(used) == 1 and torch.equal(used[0].angles.cpu(), expected.angles[:1])
    assert torch.equal(used[0].fov.cpu(), expected.fov[:1]) and torch.equal(used[0].radius.cpu(), expected.radius[:1])
