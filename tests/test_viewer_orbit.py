"""The viewer's camera controller: mouse, wheel, keys, presets and fields editing a core.cameras.Pose,
checked against the renderer's own camera (core.cameras.Camera) as the independent geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.core.generator import Generator
from trigan.viewer.orbit import (
    KEY_ORBIT_STEP,
    PITCH_MIN,
    RADIUS_MAX_FACTOR,
    RADIUS_MIN_FACTOR,
    ZOOM_STEP,
    OrbitController,
)
from trigan.viewer.render_request import LatentKey, RenderRequest

VIEW = (400, 300)          # a viewport wider than tall: the orbit rate follows the shorter side


def start_pose():
    return Pose(yaw=0.3, pitch=1.3, radius=1.2, fov=20.0)


def angle_diff(a, b):
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def project(pose: Pose, point, viewport=VIEW):
    """Pixel (x right, y down) of a world point, through core.cameras' camera-to-world matrix.
    The image spans NDC [-1, 1] over the viewport's width and height."""
    cam = pose.to_camera()
    c2w = cam.cam2world()[0].double().numpy()
    rel = np.asarray(point, dtype=np.float64) - c2w[:3, 3]
    x_cam = c2w[:3, :3].T @ rel                      # columns: right, up, backward
    focal = 1.0 / math.tan(math.radians(pose.fov) / 2)
    ndc_x, ndc_y = focal * x_cam[0] / -x_cam[2], focal * x_cam[1] / -x_cam[2]
    w, h = viewport
    return np.array([(ndc_x + 1) / 2 * w, (1 - ndc_y) / 2 * h])


def test_horizontal_drag_turns_yaw_by_documented_amount_and_not_pitch():
    ctl = OrbitController(start_pose())
    ctl.drag(50, 0, "left", VIEW)
    expected = 50 * math.pi / min(VIEW)
    assert angle_diff(ctl.pose.yaw, 0.3) == pytest.approx(expected, abs=1e-12)
    assert ctl.pose.pitch == 1.3 and ctl.pose.radius == 1.2 and ctl.pose.look_at == (0.0, 0.0, 0.0)


def test_vertical_drag_turns_pitch_only_and_camera_rises_when_dragging_down():
    ctl = OrbitController(start_pose())
    ctl.drag(0, 30, "left", VIEW)
    assert ctl.pose.yaw == pytest.approx(0.3)
    assert ctl.pose.pitch == pytest.approx(1.3 - 30 * math.pi / min(VIEW))
    # the camera's height (y of its origin, from core.cameras) went up
    assert ctl.pose.to_camera().origins()[0, 1] > start_pose().to_camera().origins()[0, 1]


def test_left_drag_moves_the_near_surface_with_the_cursor():
    """A point between the camera and the object's centre moves the way the cursor went."""
    s = start_pose()
    near = np.array(s.to_camera().origins()[0].tolist()) * 0.3 + np.array([0.0, 0.05, 0.0])
    ctl = OrbitController(s)
    ctl.drag(6, 0, "left", VIEW)
    du = project(ctl.pose, near) - project(s, near)
    assert du[0] > 0
    ctl = OrbitController(s)
    ctl.drag(0, -6, "left", VIEW)                   # drag up
    dv = project(ctl.pose, near) - project(s, near)
    assert dv[1] < 0                                 # the near point went up on screen


def test_pitch_clamps_short_of_the_poles():
    ctl = OrbitController(start_pose())
    ctl.drag(0, 10_000, "left", VIEW)
    assert ctl.pose.pitch == PITCH_MIN
    ctl.drag(0, -10_000, "left", VIEW)
    assert ctl.pose.pitch == pytest.approx(math.pi - PITCH_MIN)
    assert torch.isfinite(ctl.pose.to_camera().cam2world()).all()


@pytest.mark.parametrize("button", ["right", "middle"])
def test_pan_keeps_the_point_under_the_cursor_and_moves_in_the_image_plane(button):
    s = start_pose()
    ctl = OrbitController(s)
    right, up, forward = s.frame()
    # a point in the plane through look_at perpendicular to the view, off-centre
    point = np.add(np.add(s.look_at, np.multiply(right, 0.03)), np.multiply(up, -0.02))
    before = project(s, point)
    ctl.drag(17, -9, button, VIEW)
    after = project(ctl.pose, point)
    np.testing.assert_allclose(after - before, [17, -9], atol=1e-3)
    delta = np.subtract(ctl.pose.look_at, s.look_at)
    assert np.linalg.norm(delta) > 0
    assert abs(np.dot(delta, forward)) < 1e-9                # perpendicular to the view direction
    np.testing.assert_allclose(np.subtract(ctl.pose.pivot, s.pivot), delta, atol=1e-12)
    assert (ctl.pose.yaw, ctl.pose.pitch, ctl.pose.radius, ctl.pose.fov) == (s.yaw, s.pitch, s.radius, s.fov)
    # the view direction is unchanged: a pure translation
    np.testing.assert_allclose(ctl.pose.frame()[2], forward, atol=1e-12)


def test_wheel_zoom_is_multiplicative_reversible_and_clamped():
    ctl = OrbitController(start_pose())
    ctl.wheel(1)
    assert ctl.pose.radius == pytest.approx(1.2 / ZOOM_STEP)
    ctl.wheel(2)
    ctl.wheel(-3)
    assert ctl.pose.radius == pytest.approx(1.2, rel=1e-12)
    ctl.wheel(2.5)
    r = ctl.pose.radius
    ctl.wheel(0.5)
    assert ctl.pose.radius == pytest.approx(r / ZOOM_STEP ** 0.5)
    ctl.wheel(1000)
    assert ctl.pose.radius == pytest.approx(1.2 * RADIUS_MIN_FACTOR)
    ctl.wheel(-1000)
    assert ctl.pose.radius == pytest.approx(1.2 * RADIUS_MAX_FACTOR)


def test_keys():
    s = start_pose()
    ctl = OrbitController(s)
    ctl.key("left")
    assert angle_diff(ctl.pose.yaw, s.yaw) == pytest.approx(KEY_ORBIT_STEP)
    ctl.key("right")
    ctl.key("right")
    assert angle_diff(ctl.pose.yaw, s.yaw) == pytest.approx(-KEY_ORBIT_STEP)
    ctl.key("up")
    assert ctl.pose.pitch == pytest.approx(s.pitch - KEY_ORBIT_STEP)
    ctl.key("down")
    ctl.key("down")
    assert ctl.pose.pitch == pytest.approx(s.pitch + KEY_ORBIT_STEP)
    ctl.key("plus")
    assert ctl.pose.radius == pytest.approx(s.radius / ZOOM_STEP)
    ctl.key("minus")
    assert ctl.pose.radius == pytest.approx(s.radius)
    ctl.key("r")
    assert ctl.pose == s
    with pytest.raises(ValueError):
        ctl.key("q")


def test_presets_give_the_documented_angles():
    s = Pose(yaw=0.2, pitch=1.4, radius=1.5, fov=18.0, look_at=(0.0, 0.05, 0.0))
    ctl = OrbitController(s)
    ctl.drag(40, 40, "right", VIEW)
    ctl.wheel(2)
    expected = {"front": (0.2, math.pi / 2), "side": (0.2 + math.pi / 2, math.pi / 2),
                "back": (0.2 + math.pi, math.pi / 2), "top": (0.2, PITCH_MIN)}
    for name, (yaw, pitch) in expected.items():
        pose = ctl.preset(name)
        assert angle_diff(pose.yaw, yaw) == pytest.approx(0.0, abs=1e-12)
        assert pose.pitch == pytest.approx(pitch)
        assert pose.look_at == s.look_at and pose.pivot == s.pivot       # re-centred
        assert pose.radius == pytest.approx(1.5 / ZOOM_STEP ** 2) and pose.fov == 18.0   # kept
    # "back" looks at the model from the opposite side: the camera origins are mirrored through the pivot
    front = ctl.preset("front").to_camera().origins()[0]
    back = ctl.preset("back").to_camera().origins()[0]
    torch.testing.assert_close(front, -back, atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        ctl.preset("bottom")


def test_reset_restores_the_start_and_version_counts_changes():
    s = start_pose()
    ctl = OrbitController(s)
    assert ctl.version == 0
    ctl.drag(10, 5, "left", VIEW)
    ctl.drag(3, 4, "middle", VIEW)
    ctl.wheel(-2)
    ctl.set(fov=33.0)
    assert ctl.version == 4
    assert ctl.pose != s
    ctl.reset()
    assert ctl.pose == s and ctl.version == 5
    ctl.reset()                      # nothing changed: the GUI need not re-render
    assert ctl.version == 5
    ctl.drag(0, 0, "left", VIEW)
    assert ctl.version == 5


def test_numeric_fields_clamp_and_reject_garbage():
    ctl = OrbitController(start_pose())
    ctl.set(yaw=1.0, pitch=0.0, radius=100.0, fov=500 / 3)
    assert ctl.pose.yaw == 1.0 and ctl.pose.pitch == PITCH_MIN
    assert ctl.pose.radius == pytest.approx(1.2 * RADIUS_MAX_FACTOR) and ctl.pose.fov == 120.0
    before = ctl.pose
    for bad in ({"yaw": "left"}, {"radius": -1.0}, {"fov": 0.0}, {"look_at": (0.0, 1.0)}, {"zoom": 2}):
        with pytest.raises(TriganError):
            ctl.set(**bad)
    assert ctl.pose == before


def test_pose_matches_core_camera():
    s = Pose(yaw=-2.0, pitch=0.7, radius=2.0, fov=30.0, look_at=(0.1, -0.05, 0.02), pivot=(0.0, 0.1, 0.0))
    cam = s.to_camera()
    torch.testing.assert_close(torch.tensor(s.origin(), dtype=torch.float32), cam.origins()[0], atol=1e-6, rtol=0)
    c2w = cam.cam2world()[0]
    right, up, forward = s.frame()
    torch.testing.assert_close(torch.tensor(right, dtype=torch.float32), c2w[:3, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(up, dtype=torch.float32), c2w[:3, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(forward, dtype=torch.float32), -c2w[:3, 2], atol=1e-6, rtol=0)
    back = Pose.from_camera(cam)
    assert (back.yaw, back.pitch, back.radius, back.fov) == pytest.approx((-2.0, 0.7, 2.0, 30.0))
    assert back.look_at == pytest.approx(s.look_at) and back.pivot == pytest.approx(s.pivot)


def test_start_pose_for_epigraf_models_is_the_mean_pose(tiny_cfg):
    cfg = tiny_cfg.model
    cfg.camera.mean_pose = [0.4, 1.2, 0.0]
    cfg.camera.fov, cfg.camera.radius = 25.0, 1.3
    G = Generator(cfg).eval()
    assert Pose.for_generator(G) == Pose(yaw=0.4, pitch=1.2, radius=1.3, fov=25.0)
    assert Pose.for_generator(G, class_index=0) == Pose.for_generator(G)     # no camera generator: no class
    assert Pose.for_model(cfg.camera) == Pose.for_generator(G)


def test_start_pose_for_a_camera_generator_model_is_its_mean_posterior_camera():
    cfg = tiny_config(**{"model.c_dim": 3, "model.camera.dist": "uniform", "model.camera.yaw_std": 0.5,
                         "model.camera.pitch_std": 0.3, "model.camera.fov_min": 10.0, "model.camera.fov_max": 30.0,
                         "model.camera.look_at_radius_max": 0.1, "model.camera_generator.enabled": True})
    G = Generator(cfg.model).eval()
    pose = Pose.for_generator(G, class_index=2)
    mean = G.mean_camera(G.labels([2], 1))
    assert pose == Pose.from_camera(mean)
    assert pose.fov != cfg.model.camera.fov          # really the generator's camera, not the config's
    assert Pose.for_generator(G, class_index=0) != pose


def test_render_request_is_hashable_and_validates():
    a = RenderRequest("m.ckpt", seed=3, class_index=1, psi=0.7, pose=start_pose())
    b = RenderRequest("m.ckpt", seed=3, class_index=1, psi=0.7, pose=start_pose())
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.latent_key == LatentKey("m.ckpt", 3, 1, 0.7, "const")
    assert a.with_values(resolution=512).latent_key == a.latent_key
    assert a.with_values(seed=4) != a
    for bad in ({"resolution": 32}, {"resolution": 2048}, {"mode": "albedo"}, {"quality": "best"},
                {"background": "green"}, {"sample_multiplier": 0}, {"seed": -1}, {"psi": float("nan")},
                {"noise_mode": "loud"}, {"pose": (0, 1)}):
        with pytest.raises(TriganError):
            a.with_values(**bad)
