"""Where a 3DGP model's learned cameras are used outside training: FID/KID fakes and NFS fakes render
from the posterior of each drawn prior camera; progress grids, trajectories, `trigan render` and the
viewer start from the mean posterior camera (fov, radius and look-at included). EpiGRAF models keep
their prior / configured cameras exactly.

The camera generator is made to differ measurably from the prior by setting the output layers of its
two MLPs: with zero output weights the posterior is a constant known in closed form,
lo + sigmoid(raw) * (hi - lo) per parameter, far from the prior's centre and from the configured fov."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from test_camera_generator import THREE_DGP
from trigan.cli.main import main
from trigan.core.camera_generator import (
    FOV,
    LA_PITCH,
    LA_RADIUS,
    LA_YAW,
    PITCH,
    RADIUS,
    YAW,
    camera_to_params,
    params_to_camera,
    prior_ranges,
)
from trigan.core.cameras import Camera, Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.core.metrics import prior_conditioning, sample_renders
from trigan.core.nfs import frontal_conditioning, frontal_pose, generator_depths
from trigan.core.rendering import PlainRenderer
from trigan.core.trajectories import Trajectory, make_trajectory
from trigan.training.visuals import SampleSet
from trigan.viewer.scene import Scene

# Raw outputs (before the sigmoid) of the origin MLP (yaw, pitch, roll, radius) and the look-at MLP
# (fov, look-at).
RAW_ORIGIN = (1.5, -1.0, 0.0, 0.0)
RAW_LOOK_AT = (2.5, 0.7, -0.4, 1.0)


def set_outputs(G: Generator, keep_weights: bool = False) -> None:
    """Bias the camera generator's output layers by the raw values above (effective bias = bias * gain);
    without keep_weights the output weights are zeroed, so the posterior is that constant."""
    cg = G.camera_generator
    with torch.no_grad():
        for layer, raw in ((cg.origin_adaptor.main[1], RAW_ORIGIN), (cg.look_at_adaptor.main[1], RAW_LOOK_AT)):
            layer.bias.copy_(torch.tensor(raw) / layer.bias_gain)
            if not keep_weights:
                layer.weight.zero_()


def constant_posterior(G: Generator) -> torch.Tensor:
    """[7] the posterior parameters of set_outputs(G) with zero weights, from the ranges alone (pitch
    kept 1e-5 inside its range, as upstream)."""
    r = prior_ranges(G.cfg.camera)
    expected = camera_to_params(Camera.from_angles(0.0, math.pi / 2, radius=G.cfg.camera.radius))[0]
    for i, raw in zip((YAW, PITCH, FOV, LA_YAW, LA_PITCH, LA_RADIUS), RAW_ORIGIN[:2] + RAW_LOOK_AT, strict=True):
        lo, hi = r[i].tolist()
        margin = 1e-5 if i == PITCH else 0.0
        expected[i] = lo + margin + torch.sigmoid(torch.tensor(raw)) * (hi - lo - 2 * margin)
    expected[RADIUS] = G.cfg.camera.radius
    return expected


def tiny_3dgp(keep_weights: bool = False) -> Generator:
    torch.manual_seed(0)
    G = Generator(tiny_config(**THREE_DGP).model).eval()
    set_outputs(G, keep_weights)
    return G


def record_renders(monkeypatch) -> list:
    """Make the plain render path (what metric fakes, NFS fakes and sample grids render with) record
    every camera it is given (and still render)."""
    cameras, render = [], PlainRenderer.render

    def spy(self, camera, *args, **kwargs):
        cameras.append(camera)
        return render(self, camera, *args, **kwargs)
    monkeypatch.setattr(PlainRenderer, "render", spy)
    return cameras


def params(camera: Camera) -> torch.Tensor:
    return camera_to_params(camera.to("cpu"))


def test_the_constant_posterior_is_far_from_the_prior():
    """The set-up the other tests rely on: the posterior is the closed-form constant, and it is not
    a prior camera's value in disguise (fov far above the configured one, origin off the prior's centre)."""
    G = tiny_3dgp()
    expected = constant_posterior(G)
    post = G.posterior_camera(G.latents([0, 1, 2]), G.labels([0, 1, 0], 3))
    assert torch.allclose(params(post), expected.expand(3, -1), atol=1e-5)
    assert float(expected[FOV]) > 40 and abs(float(expected[FOV]) - G.cfg.camera.fov) > 10
    assert abs(float(expected[YAW])) > 0.5 and float(expected[LA_RADIUS]) > 0.1


# -------------------------------------------------------------------------------------------------
# FID / KID fakes

def test_metric_fakes_render_from_the_posterior_of_each_drawn_camera(monkeypatch):
    G = tiny_3dgp(keep_weights=True)     # a per-sample posterior, not a constant
    cameras = record_renders(monkeypatch)
    list(sample_renders(G, 5, batch_size=3, seed=4, resolution=8))
    used = torch.cat([params(c) for c in cameras])
    # The draws sample_renders makes, repeated here: per batch z, then labels and prior cameras.
    gen = torch.Generator().manual_seed(4)
    draw = prior_conditioning(G)
    expected, priors = [], []
    for n in (3, 2):
        z = torch.randn(n, G.z_dim, generator=gen)
        c, prior = draw(n, gen)
        with torch.no_grad():
            expected.append(G.camera_generator(camera_to_params(prior), z, c))
        priors.append(camera_to_params(prior))
    expected, priors = torch.cat(expected), torch.cat(priors)
    assert torch.allclose(used, expected, atol=1e-5)
    assert (used[:, FOV] - priors[:, FOV]).abs().min() > 1.0      # really moved off every prior camera
    assert used[:, FOV].std() > 0                                   # and still one camera per sample


def test_metric_fakes_of_an_epigraf_model_are_the_drawn_cameras_bit_for_bit(monkeypatch):
    torch.manual_seed(0)
    G = Generator(tiny_config().model).eval()
    assert G.camera_generator is None
    cameras = record_renders(monkeypatch)
    outs = list(sample_renders(G, 3, batch_size=3, seed=2, resolution=8))
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(3, G.z_dim, generator=gen)
    c, prior = prior_conditioning(G)(3, gen)
    for f in ("angles", "radius", "fov", "look_at", "pivot"):
        assert torch.equal(getattr(cameras[0], f), getattr(prior, f)), f
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(z, c, 1.0, camera_angles=prior.angles))
        direct = G.render(field, prior, 8, deterministic=True, seed=(2 * 1000003) & 0x7FFFFFFF)
    assert torch.equal(outs[0].rgb, direct.rgb)


# -------------------------------------------------------------------------------------------------
# NFS fakes

def test_nfs_fakes_render_from_the_posterior_of_frontal_prior_cameras(monkeypatch):
    G = tiny_3dgp(keep_weights=True)
    cameras = record_renders(monkeypatch)
    list(generator_depths(G, 4, batch=4, seed=1, resolution=8))
    used = params(cameras[0])
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, G.z_dim, generator=gen)
    c, prior = frontal_conditioning(G)(4, gen)
    yaw, pitch = frontal_pose(G)
    assert torch.allclose(prior.yaw, torch.full((4,), yaw)) and torch.allclose(prior.angles[:, 1], torch.full((4,), pitch))
    with torch.no_grad():
        expected = G.camera_generator(camera_to_params(prior), z, c)
    assert torch.allclose(used, expected, atol=1e-5)
    assert (used[:, YAW] - yaw).abs().min() > 0.1        # the origin left the frontal pose, as upstream's does


def test_nfs_fakes_of_an_epigraf_model_stay_frontal(monkeypatch):
    G = Generator(tiny_config().model).eval()
    cameras = record_renders(monkeypatch)
    list(generator_depths(G, 3, batch=3, seed=1, resolution=8))
    gen = torch.Generator().manual_seed(1)
    torch.randn(3, G.z_dim, generator=gen)
    _, prior = frontal_conditioning(G)(3, gen)
    for f in ("angles", "radius", "fov", "look_at", "pivot"):
        assert torch.equal(getattr(cameras[0], f), getattr(prior, f)), f


# -------------------------------------------------------------------------------------------------
# Progress grids and orbit videos

def test_sample_grids_are_around_the_mean_posterior_camera_of_the_current_weights(tmp_path, monkeypatch):
    G = tiny_3dgp()
    samples = SampleSet.create(G, 6, rows=2, cols=3)
    assert samples.from_mean_camera
    cameras = record_renders(monkeypatch)
    samples.render_grid(G, resolution=8, batch=6)
    used = params(cameras[0])
    expected = constant_posterior(G)
    offsets = torch.linspace(-math.pi / 4, math.pi / 4, 3).repeat(2)
    assert torch.allclose(used[:, YAW], expected[YAW] + offsets, atol=1e-5)
    keep = [PITCH, FOV, RADIUS, LA_YAW, LA_PITCH, LA_RADIUS]
    assert torch.allclose(used[:, keep], expected[keep].expand(6, -1), atol=1e-5)
    # The same sample set follows the camera generator as it changes (as it does while training).
    with torch.no_grad():
        G.camera_generator.look_at_adaptor.main[1].bias[0] = -2.0 / G.camera_generator.look_at_adaptor.main[1].bias_gain
    cameras.clear()
    samples.render_orbit_video(G, tmp_path / "orbit.mp4", frames=2, resolution=8, max_samples=2)
    lo, hi = prior_ranges(G.cfg.camera)[FOV].tolist()
    new_fov = lo + torch.sigmoid(torch.tensor(-2.0)) * (hi - lo)
    assert all(torch.allclose(c.fov.cpu(), new_fov.expand(len(c))) for c in cameras)
    assert torch.allclose(cameras[1].yaw.cpu() - cameras[0].yaw.cpu(), torch.full((2,), math.pi))   # half a turn


def test_sample_grids_of_an_epigraf_model_keep_the_configured_cameras(monkeypatch):
    G = Generator(tiny_config().model).eval()
    samples = SampleSet.create(G, 3, rows=1, cols=3)
    assert not samples.from_mean_camera
    cameras = record_renders(monkeypatch)
    samples.render_grid(G, resolution=8)
    cam = cameras[0]
    assert torch.equal(cam.angles, samples.camera_angles)
    assert torch.equal(cam.fov, torch.full((3,), float(G.cfg.camera.fov)))
    assert torch.equal(cam.look_at, torch.zeros(3, 3))


# -------------------------------------------------------------------------------------------------
# Trajectories, `trigan render`, the viewer

def _looks_at(camera: Camera, point) -> bool:
    """Each camera's optical axis (the image centre's ray) passes through `point`."""
    c2w = camera.cam2world()
    to_point = torch.nn.functional.normalize(torch.as_tensor(point, dtype=torch.float32) - c2w[:, :3, 3], dim=-1)
    return torch.allclose(-c2w[:, :3, 2], to_point, atol=1e-5)


def test_trajectories_orbit_the_origin_looking_at_the_mean_posterior_look_at():
    G = tiny_3dgp()
    expected = constant_posterior(G)
    base = Pose.for_generator(G)
    mean = params(G.mean_camera())[0]
    assert torch.allclose(torch.tensor([base.yaw, base.pitch, base.fov, base.radius]),
                          mean[[YAW, PITCH, FOV, RADIUS]])
    assert torch.allclose(torch.tensor(base.look_at), params_to_camera(expected[None]).look_at[0], atol=1e-5)
    for name in ("orbit", "front_circle", "points", "zoom"):
        traj = make_trajectory(name, base, frames=8)
        cams = traj.cameras()
        assert torch.allclose(cams.origins().norm(dim=1), torch.as_tensor(traj.radius, dtype=torch.float32), atol=1e-5)
        assert _looks_at(cams, base.look_at), name
    orbit = make_trajectory("orbit", base, frames=8).cameras()
    assert torch.allclose(orbit.fov, torch.full((8,), float(expected[FOV])), atol=1e-4)
    # --camera overrides replace their values and keep the learned look-at
    moved = base.with_values(fov=20.0, yaw=0.3)
    cam = make_trajectory("points", moved).cameras()
    assert torch.allclose(cam.fov, torch.full((3,), 20.0)) and float(cam.yaw[0]) == pytest.approx(0.3)
    assert _looks_at(cam, base.look_at)
    # EpiGRAF models: the configured view, looking at the origin, as before
    E = Generator(tiny_config().model)
    assert Pose.for_generator(E) == Pose.for_model(E.cfg.camera)
    assert Pose.for_model(E.cfg.camera).look_at == (0.0, 0.0, 0.0)


def test_the_viewer_start_pose_is_the_same_function(tmp_path):
    G = tiny_3dgp(keep_weights=True)
    ckpt = save_checkpoint(tmp_path / "g.ckpt", tiny_config(**THREE_DGP), G)
    scene = Scene(device="cpu", use_preview_module=False)
    for cls in (0, 1):
        assert scene.model_info(str(ckpt), cls).start_pose == Pose.for_generator(G, cls)
    assert scene.model_info(str(ckpt)).start_pose == Pose.for_generator(G, 0)   # no class chosen: class 0
    assert Pose.for_generator(G, 1) != Pose.for_generator(G, 0)     # per-class means differ


def test_render_cli_views_use_the_mean_posterior_camera(tmp_path, capsys, monkeypatch):
    G = tiny_3dgp()
    ckpt = save_checkpoint(tmp_path / "g.ckpt", tiny_config(**THREE_DGP), G)
    epigraf_cfg = tiny_config()
    epigraf = save_checkpoint(tmp_path / "e.ckpt", epigraf_cfg, Generator(epigraf_cfg.model))
    used = []
    cameras = Trajectory.cameras

    def spy(self, *args, **kwargs):
        used.append(cameras(self, *args, **kwargs))
        return used[-1]
    monkeypatch.setattr(Trajectory, "cameras", spy)
    expected = constant_posterior(G)
    look_at = params_to_camera(expected[None]).look_at[0]

    assert main(["render", str(ckpt), "--out", str(tmp_path / "a"), "--seeds", "0", "--resolution", "16",
                 "--quiet"]) == 0
    assert torch.allclose(params(used[-1])[0], expected, atol=1e-4)           # the image: the mean view
    used.clear()
    assert main(["render", str(ckpt), "--out", str(tmp_path / "b"), "--vis", "video", "--trajectory", "orbit",
                 "--frames", "3", "--seeds", "0", "--resolution", "16", "--camera", "fov=20", "--quiet"]) == 0
    cams = [c.to("cpu") for c in used]
    assert all(torch.allclose(c.fov, torch.full((len(c),), 20.0)) for c in cams)   # --camera still wins
    assert all(_looks_at(c, look_at) for c in cams)
    assert all(np.allclose(c.look_at.numpy(), look_at.numpy(), atol=1e-5) for c in cams)
    used.clear()
    assert main(["render", str(epigraf), "--out", str(tmp_path / "c"), "--seeds", "0", "--resolution", "16",
                 "--quiet"]) == 0
    cam = used[-1].to("cpu")
    assert torch.equal(cam.look_at, torch.zeros(1, 3)) and float(cam.fov[0]) == epigraf_cfg.model.camera.fov
    assert float(cam.yaw[0]) == epigraf_cfg.model.camera.mean_pose[0]
    capsys.readouterr()
