"""Camera conventions against hand-derived answers (docs/architecture.md, EpiGRAF 3.1), and the plain-float
Pose against the batched Camera it turns into."""

import math
import random

import pytest
import torch
from scipy.stats import truncnorm

from trigan.core.cameras import (
    Camera,
    PatchParams,
    Pose,
    cameras_from_poses,
    clamp_polar,
    sample_camera_prior,
    spherical_to_cartesian,
)
from trigan.core.config import CameraConfig
from trigan.core.errors import TriganError

EPS32 = torch.finfo(torch.float32).eps


def close(a, b, atol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=atol)


def test_yaw0_horizon_camera_sits_on_plus_x_and_looks_down_minus_x():
    cam = Camera.from_angles(0.0, math.pi / 2, radius=1.0, fov=12.0)
    assert close(cam.origins()[0], [1, 0, 0])
    origins, dirs = cam.rays(3)  # the centre pixel of a 3x3 grid is the centre ray
    assert close(dirs[0, 4], [-1, 0, 0])
    assert close(origins[0, 4], [1, 0, 0])


def test_image_right_is_minus_z_and_image_up_is_plus_y():
    cam = Camera.from_angles(0.0, math.pi / 2, fov=90.0)
    c2w = cam.cam2world()[0]
    assert close(c2w[:3, 0], [0, 0, -1])   # camera x (image right)
    assert close(c2w[:3, 1], [0, 1, 0])    # camera y (image up)
    _, dirs = cam.rays(3)
    # Row 0 is the top, column 0 the left: the top-left ray leans up (+Y) and left (+Z).
    top_left = dirs[0, 0]
    assert top_left[1] > 0 and top_left[2] > 0
    bottom_right = dirs[0, 8]
    assert bottom_right[1] < 0 and bottom_right[2] < 0


def test_increasing_yaw_moves_camera_toward_plus_z():
    cam = Camera.from_angles([0.0, 0.3, math.pi / 2], math.pi / 2)
    o = cam.origins()
    assert o[1, 2] > 0 and o[1, 2] < o[2, 2]
    assert close(o[2], [0, 0, 1])
    assert close(cam.origins()[:, 1], [0, 0, 0])   # on the horizon


def test_pitch_is_polar_angle_from_plus_y():
    cam = Camera.from_angles(0.0, [0.3, math.pi - 0.3], radius=2.0)
    o = cam.origins()
    assert close(o[0, 1], 2 * math.cos(0.3)) and close(o[1, 1], -2 * math.cos(0.3))


def test_fov_is_the_full_angle_between_the_outermost_pixels():
    cam = Camera.from_angles(0.0, math.pi / 2, fov=40.0)
    _, dirs = cam.rays(5)
    row = dirs[0].reshape(5, 5, 3)[2]                    # middle row, left to right
    angle = torch.acos((row[0] * row[-1]).sum()).item()
    assert math.isclose(math.degrees(angle), 40.0, abs_tol=1e-3)


def test_rays_are_unit_length_and_start_at_the_camera():
    cam = Camera.from_angles([0.1, -2.0], [1.0, 2.2], radius=[1.0, 1.5], fov=[10.0, 50.0])
    origins, dirs = cam.rays((4, 6))
    assert dirs.shape == (2, 24, 3)
    assert close(dirs.norm(dim=-1), torch.ones(2, 24), atol=1e-5)
    assert close(origins, cam.origins()[:, None].expand(-1, 24, -1))


def test_cam2world_rotation_is_orthonormal_and_right_handed():
    cam = Camera.from_angles(torch.linspace(-3, 3, 7), torch.linspace(0.2, 2.9, 7), fov=30.0)
    r = cam.cam2world()[:, :3, :3]
    assert close(r.transpose(1, 2) @ r, torch.eye(3).expand(7, 3, 3), atol=1e-5)
    assert close(torch.linalg.det(r), torch.ones(7), atol=1e-5)


def test_look_at_point_is_hit_by_the_centre_ray():
    target = torch.tensor([0.1, -0.05, 0.08])
    cam = Camera.from_angles(0.7, 1.2, radius=1.3, fov=20.0, look_at=target)
    origins, dirs = cam.rays(3)
    o, d = origins[0, 4], dirs[0, 4]
    to_target = torch.nn.functional.normalize(target - o, dim=0)
    assert close(d, to_target, atol=1e-6)


def test_pivot_moves_the_orbit_centre():
    cam = Camera.from_angles(0.0, math.pi / 2, radius=1.0, pivot=(0.2, 0.1, 0.0), look_at=(0.2, 0.1, 0.0))
    assert close(cam.origins()[0], [1.2, 0.1, 0.0])
    _, dirs = cam.rays(3)
    assert close(dirs[0, 4], [-1, 0, 0])


@pytest.mark.parametrize("scale, offset, full", [(0.5, (0.0, 0.0), 9), (0.5, (0.25, 0.5), 9), (1 / 3, (1 / 3, 0.0), 7)])
def test_patch_rays_equal_the_matching_subgrid_of_the_full_image(scale, offset, full):
    patch_res = round(scale * (full - 1)) + 1
    cam = Camera.from_angles(0.4, 1.3, fov=25.0)
    _, full_dirs = cam.rays(full)
    full_dirs = full_dirs[0].reshape(full, full, 3)
    patch = PatchParams(torch.tensor([scale]), torch.tensor([offset]))
    _, patch_dirs = cam.rays(patch_res, patch)
    patch_dirs = patch_dirs[0].reshape(patch_res, patch_res, 3)
    # Offsets are measured from the bottom-left; rows of the full grid count from the top.
    col0 = round(offset[0] * (full - 1))
    row_bottom = full - 1 - round(offset[1] * (full - 1))
    sub = full_dirs[row_bottom - patch_res + 1: row_bottom + 1, col0: col0 + patch_res]
    assert close(patch_dirs, sub, atol=1e-6)


def test_prior_samples_respect_their_ranges():
    gen = torch.Generator().manual_seed(1)
    cfg = CameraConfig(dist="uniform", yaw_mean=0.0, yaw_std=1.57, pitch_mean=math.pi / 2, pitch_std=math.pi / 4,
                       fov_min=10.0, fov_max=45.0, look_at_radius_max=0.2)
    cam = sample_camera_prior(cfg, 4000, generator=gen)
    assert cam.yaw.abs().max() <= 1.57 and cam.yaw.abs().max() > 1.5
    assert ((cam.pitch >= math.pi / 4) & (cam.pitch <= 3 * math.pi / 4)).all()
    assert ((cam.fov >= 10) & (cam.fov <= 45)).all() and cam.fov.std() > 5
    assert (cam.look_at.norm(dim=1) <= 0.2 + 1e-6).all() and cam.look_at.norm(dim=1).max() > 0.15


def test_spherical_uniform_prior_is_uniform_on_the_sphere():
    gen = torch.Generator().manual_seed(2)
    cfg = CameraConfig(dist="spherical_uniform", yaw_std=math.pi)
    cam = sample_camera_prior(cfg, 20000, generator=gen)
    y = cam.origins()[:, 1]
    # Archimedes: the height of a uniform point on the unit sphere is uniform on [-1, 1].
    hist = torch.histc(y, bins=4, min=-1, max=1) / len(y)
    assert close(hist, torch.full((4,), 0.25), atol=0.02)


def test_spherical_to_cartesian_radius():
    p = spherical_to_cartesian(torch.tensor([0.3]), torch.tensor([1.1]), torch.tensor([2.5]))
    assert close(p.norm(dim=-1), [2.5])


def test_truncated_normal_prior_stays_in_its_range_with_the_normals_shape():
    """truncnorm (3DGP's base prior): N(mean, std) cut to the range; the mean and spread of the
    samples match those of the truncated distribution (computed by scipy)."""
    gen = torch.Generator().manual_seed(3)
    cfg = CameraConfig(dist="truncnorm", yaw_mean=0.2, yaw_std=0.4, yaw_range=[-0.5, 1.0],
                       pitch_mean=1.57, pitch_std=0.2, pitch_range=[0.392699082, 2.74889357])
    cam = sample_camera_prior(cfg, 20000, generator=gen)
    yaw = cam.yaw.double()
    assert float(yaw.min()) >= -0.5 and float(yaw.max()) <= 1.0
    a, b = (-0.5 - 0.2) / 0.4, (1.0 - 0.2) / 0.4
    expected = truncnorm(a, b, loc=0.2, scale=0.4)
    n = len(yaw)
    assert abs(float(yaw.mean()) - expected.mean()) < 5 * expected.std() / math.sqrt(n)
    assert abs(float(yaw.std()) - expected.std()) < 0.02 * expected.std()
    assert abs(float(cam.pitch.mean()) - 1.57) < 0.01


def test_spherical_uniform_over_a_pitch_band_and_a_look_at_shell():
    """Upstream's spherical_uniform over [pitch_min, pitch_max]: v = U(range) / pi, pitch = arccos(1 - 2v),
    so cos(pitch) is uniform between 1 - 2 min/pi and 1 - 2 max/pi; look-at radius uniform in its range."""
    gen = torch.Generator().manual_seed(4)
    cfg = CameraConfig(dist="spherical_uniform", yaw_range=[0.0, 1.0], pitch_range=[math.pi / 4, math.pi / 2],
                       look_at_radius_min=0.05, look_at_radius_max=0.1, look_at_yaw_range=[0.0, math.pi / 2],
                       look_at_pitch_range=[0.0, math.pi / 2])
    cam = sample_camera_prior(cfg, 20000, generator=gen)
    cos = torch.cos(cam.pitch)
    assert float(cos.min()) >= -1e-5 and float(cos.max()) <= 0.5 + 1e-5
    hist = torch.histc(cos, bins=4, min=0.0, max=0.5) / len(cos)
    assert close(hist, torch.full((4,), 0.25), atol=0.02)
    assert float(cam.yaw.min()) >= 0 and float(cam.yaw.max()) <= 1
    r = cam.look_at.norm(dim=1)
    assert float(r.min()) >= 0.05 - 1e-6 and float(r.max()) <= 0.1 + 1e-6
    assert (cam.look_at[:, [0, 1, 2]] >= -1e-6).all()          # a quarter turn of the upper half: x, y, z >= 0


# -------------------------------------------------------------------------------------------------
# Pose: the plain-float camera

def random_poses(n: int, seed: int):
    """Seeded poses all over the sphere (yaw over two turns, pitch pole to pole), panned and looking
    off-centre."""
    rng = random.Random(seed)
    point = lambda r: tuple(rng.uniform(-r, r) for _ in range(3))
    return [Pose(yaw=rng.uniform(-2 * math.pi, 2 * math.pi), pitch=rng.uniform(0.0, math.pi),
                 radius=rng.uniform(0.5, 3.0), fov=rng.uniform(1.0, 170.0), look_at=point(0.2), pivot=point(0.5))
            for _ in range(n)]


@pytest.mark.parametrize("values, message", [
    ({"radius": 0.0}, "radius 0: expected a positive"), ({"radius": -1}, "radius -1"),
    ({"fov": 0}, "fov 0: expected 0..180"), ({"fov": 180}, "fov 180"), ({"yaw": math.nan}, "yaw nan: expected a finite"),
    ({"pitch": math.inf}, "pitch inf"), ({"yaw": "left"}, "yaw 'left': expected a number"),
    ({"look_at": (0, 1)}, "look_at .*three finite"), ({"pivot": (0, math.nan, 0)}, "pivot .*three finite"),
    ({"look_at": 3}, "look_at 3: expected three numbers"),
])
def test_pose_refuses_invalid_values_in_one_line(values, message):
    with pytest.raises(TriganError, match=message) as info:
        Pose(**values)
    assert "\n" not in str(info.value)
    with pytest.raises(TriganError, match="unknown value 'roll'"):
        Pose().with_values(roll=0.1)


def test_pose_values_are_plain_floats_and_hashable():
    pose = Pose(yaw=1, pitch=1.2, radius=2, fov=30, look_at=[0, 0.1, 0], pivot=(1, 2, 3))
    assert isinstance(pose.yaw, float) and pose.look_at == (0.0, 0.1, 0.0) and pose.pivot == (1.0, 2.0, 3.0)
    assert {pose: 1}[Pose(yaw=1.0, pitch=1.2, radius=2.0, fov=30.0, look_at=(0, 0.1, 0), pivot=(1, 2, 3))] == 1
    with pytest.raises(TypeError):
        Pose(0.1, 1.2)                      # keyword-only: radius and fov cannot be swapped by position


def test_pose_origin_is_the_camera_origin():
    """Pose.origin (floats) and Camera.origins (float32 tensors) use the one formula. The float32 side
    rounds yaw (|yaw| <= 2 pi: an error of up to pi * eps radians, i.e. pi * eps * radius in position),
    then a sin, a cos and two products (eps / 2 relative each) and the pivot sum: under
    6 * eps * (radius + |pivot|) per coordinate. In float64 the two agree to float64 rounding."""
    poses = random_poses(500, seed=0)
    origins32 = cameras_from_poses(poses).origins().double()
    origins64 = cameras_from_poses(poses, dtype=torch.float64).origins()
    for pose, o32, o64 in zip(poses, origins32, origins64, strict=True):
        expected = torch.tensor(pose.origin(), dtype=torch.float64)
        scale = pose.radius + max(abs(v) for v in pose.pivot)
        assert torch.allclose(o32, expected, rtol=0, atol=6 * EPS32 * scale)
        assert torch.allclose(o64, expected, rtol=0, atol=1e-14)
    # The pitch is kept off the poles on both sides.
    pole = Pose(pitch=0.0, radius=2.0)
    assert pole.origin() == pytest.approx(spherical_to_cartesian(0.0, clamp_polar(0.0), 2.0))
    assert torch.allclose(pole.to_camera(dtype=torch.float64).origins()[0], torch.tensor(pole.origin(), dtype=torch.float64))


def test_spherical_to_cartesian_gives_the_same_point_for_floats_and_tensors():
    for yaw, pitch, radius in [(0.3, 1.1, 2.5), (-2.0, 0.05, 0.7), (4.0, 3.0, 1.0)]:
        floats = spherical_to_cartesian(yaw, pitch, radius)
        tensor = spherical_to_cartesian(*(torch.tensor([v], dtype=torch.float64) for v in (yaw, pitch, radius)))
        assert isinstance(floats, tuple) and torch.allclose(tensor[0], torch.tensor(floats, dtype=torch.float64),
                                                            rtol=0, atol=1e-15)


def test_pose_frame_is_orthonormal_and_the_columns_of_cam2world():
    for pose in random_poses(50, seed=1):
        right, up, forward = (torch.tensor(v, dtype=torch.float64) for v in pose.frame())
        frame = torch.stack([right, up, forward], dim=1)
        assert torch.allclose(frame.T @ frame, torch.eye(3, dtype=torch.float64), atol=1e-12)
        assert torch.linalg.det(frame) == pytest.approx(-1.0, abs=1e-12)   # (right, up, -forward) is right-handed
        to_target = torch.tensor(pose.look_at, dtype=torch.float64) - torch.tensor(pose.origin(), dtype=torch.float64)
        assert torch.allclose(forward, to_target / to_target.norm(), atol=1e-12)
        assert pose.distance() == pytest.approx(float(to_target.norm()), rel=1e-12)
        c2w = pose.to_camera().cam2world()[0].double()        # the renderer's float32 matrix
        assert torch.allclose(c2w[:3, 0], right, atol=1e-5) and torch.allclose(c2w[:3, 1], up, atol=1e-5)
        assert torch.allclose(c2w[:3, 2], -forward, atol=1e-5)


def test_pose_camera_pose_round_trip():
    poses = random_poses(20, seed=2)
    # float64 cameras hold a pose exactly; float32 ones round each value once (half an ulp)
    assert [Pose.from_camera(cameras_from_poses(poses, dtype=torch.float64), i) for i in range(20)] == poses
    batch32 = cameras_from_poses(poses)
    for i, pose in enumerate(poses):
        back = Pose.from_camera(batch32, i)
        flat = lambda p: [p.yaw, p.pitch, p.radius, p.fov, *p.look_at, *p.pivot]
        assert flat(back) == pytest.approx(flat(pose), rel=EPS32 / 2, abs=1e-45)
        assert Pose.from_camera(back.to_camera()) == back            # float32 values come back bit for bit
    with pytest.raises(ValueError, match="no poses"):
        cameras_from_poses([])
