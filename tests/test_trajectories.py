"""Camera trajectories: upstream's formulas, loop closure, the full orbit, the dolly zoom's constant
framing, keyframe splines (through the keyframes, C1 in between), keyframe file errors, --camera."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trigan.core.cameras import Pose, cameras_from_poses
from trigan.core.errors import TriganError
from trigan.core.trajectories import (
    MAX_FRAMES,
    NAMED,
    Trajectory,
    apply_camera_values,
    front_circle,
    hermite_spline,
    line,
    load_keyframes,
    make_trajectory,
    orbit,
    parse_camera,
    points,
    wiggle,
    zoom,
)

HORIZON = Pose(yaw=0.0, pitch=math.pi / 2, fov=12.0, radius=1.0)
TILTED = Pose(yaw=0.4, pitch=1.2, fov=30.0, radius=1.3)
PANNED = Pose(yaw=0.4, pitch=1.2, fov=30.0, radius=1.3, look_at=(0.1, -0.05, 0.2), pivot=(0.1, -0.05, 0.25))


def values(pose: Pose) -> list:
    """A pose as one flat list of numbers (for pytest.approx)."""
    return [pose.yaw, pose.pitch, pose.radius, pose.fov, *pose.look_at, *pose.pivot]


def test_front_circle_matches_epigraf_and_closes():
    tr = front_circle(HORIZON)
    assert len(tr) == 64
    t = np.linspace(0, 1, 64)
    np.testing.assert_allclose(tr.yaw, 0.3 * np.sin(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(tr.pitch, np.pi / 2 + 0.2 * np.cos(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(tr.fov, 12.0 + np.sin(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(tr.radius, 1.0)
    for tr in (front_circle(HORIZON), front_circle(TILTED, frames=17)):
        assert values(tr.pose(0)) == pytest.approx(values(tr.pose(len(tr) - 1)), abs=1e-12)   # starts and ends at one camera
    assert front_circle(TILTED).yaw[0] == pytest.approx(0.4) and front_circle(TILTED).pitch[0] == pytest.approx(1.4)


def test_upstream_points_wiggle_line():
    p = points(HORIZON)
    assert p.yaw.tolist() == [0.0, -0.3, 0.3] and np.allclose(p.pitch, np.pi / 2)
    w = wiggle(HORIZON)
    assert len(w) == 16 and w.yaw[0] == pytest.approx(-1.57) and w.yaw[-1] == pytest.approx(1.57)
    np.testing.assert_allclose(w.pitch, np.pi / 2 + 0.5 * np.cos(2 * np.pi * np.linspace(0, 1, 16)))
    ln = line(HORIZON)
    assert len(ln) == 16 and np.allclose(ln.pitch, 0.835) and np.allclose(np.diff(ln.yaw), 3.14 / 15)
    assert np.allclose(ln.fov, 12.0)
    # Relative to another base pose: offsets move with it.
    assert np.allclose(points(TILTED).yaw, [0.4, 0.1, 0.7]) and np.allclose(line(TILTED).pitch, 1.2 + 0.835 - np.pi / 2)


def test_orbit_covers_a_full_turn_without_a_repeated_frame():
    for frames in (64, 7, 1):
        tr = orbit(TILTED, frames)
        assert len(tr) == frames
        steps = np.diff(np.append(tr.yaw, tr.yaw[0] + 2 * np.pi))     # the step back to the start closes it
        np.testing.assert_allclose(steps, 2 * np.pi / frames)
        assert steps.sum() == pytest.approx(2 * np.pi)
        assert np.allclose(tr.pitch, 1.2) and np.allclose(tr.radius, 1.3) and np.allclose(tr.fov, 30.0)
    # The camera positions go once around the vertical axis.
    cams = orbit(HORIZON, 64).cameras()
    pos = cams.origins()
    angles = np.unwrap(np.arctan2(pos[:, 2].numpy(), pos[:, 0].numpy()))
    assert angles[-1] - angles[0] + 2 * np.pi / 64 == pytest.approx(2 * np.pi, abs=1e-5)


def test_zoom_keeps_the_object_size():
    tr = zoom(TILTED, frames=48, factor=2.0)
    half_width = tr.radius * np.tan(np.radians(tr.fov) / 2)
    np.testing.assert_allclose(half_width, 1.3 * math.tan(math.radians(15.0)), rtol=1e-12)
    assert tr.radius.min() == pytest.approx(1.3) and tr.radius.max() == pytest.approx(2.6)
    assert tr.fov.max() == pytest.approx(30.0) and tr.fov.min() < 16.0
    assert values(tr.pose(0)) == pytest.approx(values(TILTED))


def test_hermite_spline_passes_through_keyframes_and_is_c1():
    times = np.array([0.0, 0.7, 1.0, 2.5, 3.0])
    values = np.array([[0.0, 1.0], [1.0, -2.0], [0.5, 0.0], [2.0, 4.0], [-1.0, 1.0]])
    np.testing.assert_allclose(hermite_spline(times, values, times), values, atol=1e-12)

    def slope(t, side, h=1e-6):
        a, b = (t - h, t) if side < 0 else (t, t + h)
        return (hermite_spline(times, values, [b]) - hermite_spline(times, values, [a]))[0] / h

    for t in times[1:-1]:            # first derivative continuous across every inner keyframe
        np.testing.assert_allclose(slope(t, -1), slope(t, +1), atol=1e-4)
        # ... and equal to the Catmull-Rom tangent there
        k = list(times).index(t)
        np.testing.assert_allclose(slope(t, +1), (values[k + 1] - values[k - 1]) / (times[k + 1] - times[k - 1]),
                                   atol=1e-4)
    # Smooth in between: no jumps on a fine grid.
    q = np.linspace(0, 3, 3001)
    assert np.abs(np.diff(hermite_spline(times, values, q), axis=0)).max() < 0.02
    # Two keyframes: a straight line; one: a constant; queries outside clamp.
    np.testing.assert_allclose(hermite_spline([0, 2], [[0.0], [4.0]], [0.5, 1.0, 3.0])[:, 0], [1.0, 2.0, 4.0])
    np.testing.assert_allclose(hermite_spline([1.0], [[3.0, 4.0]], [0, 5]), [[3, 4], [3, 4]])


def test_keyframe_file(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps([{"yaw": 0.0, "time": 0}, {"yaw": 1.0, "pitch": 1.2, "time": 1},
                                {"yaw": 0.5, "fov": 20, "radius": 1.5, "time": 2}]))
    tr = load_keyframes(path, HORIZON, fps=10)
    assert len(tr) == 21 and tr.name == "path"
    # Frames at the keyframe times reproduce them; missing values repeat the previous keyframe's.
    assert values(tr.pose(0)) == pytest.approx(values(HORIZON))
    assert values(tr.pose(10)) == pytest.approx(values(Pose(yaw=1.0, pitch=1.2, fov=12.0, radius=1.0)))
    assert values(tr.pose(20)) == pytest.approx(values(Pose(yaw=0.5, pitch=1.2, fov=20.0, radius=1.5)))
    assert len(load_keyframes(path, HORIZON, frames=5)) == 5
    # Without times the keyframes are one second apart; {"keyframes": [...]} is accepted too.
    path.write_text(json.dumps({"keyframes": [{"yaw": 0}, {"yaw": 1}, {"yaw": 3}]}))
    tr = make_trajectory(str(path), HORIZON, fps=4)
    assert len(tr) == 9 and tr.yaw[4] == pytest.approx(1.0) and tr.yaw[8] == pytest.approx(3.0)


@pytest.mark.parametrize("content, message", [
    ("[{\"yaw\": 0,}]", "not valid JSON"),
    ("{\"yaw\": 1}", "expected a list of keyframes"),
    ("[]", "no keyframes"),
    ("[{\"yaw\": 0}, {\"yawn\": 1}]", "keyframe 1: unknown field 'yawn'"),
    ("[{\"yaw\": \"left\"}]", "keyframe 0: 'yaw' must be a finite number"),
    ("[{\"yaw\": 0, \"time\": 0}, {\"yaw\": 1}]", "keyframe 1: no 'time'"),
    ("[{\"time\": 1}, {\"time\": 1}]", "keyframe 1: 'time' 1 does not come after 1"),
    ("[{\"fov\": 0}]", "'fov' must be between 0 and 180"),
    ("[{\"radius\": -1}]", "'radius' must be positive"),
    ("[3]", "keyframe 0: expected an object"),
])
def test_keyframe_file_errors_name_file_and_field(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TriganError, match=message) as info:
        load_keyframes(path, HORIZON)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_keyframe_times_cannot_ask_for_more_frames_than_the_bound(tmp_path):
    # A 'time' of 1e9 s at 30 fps would be 3e10 frames: refused before any array is made.
    path = tmp_path / "long.json"
    path.write_text(json.dumps([{"yaw": 0, "time": 0}, {"yaw": 1, "time": 1e9}]))
    with pytest.raises(TriganError, match=f"at most {MAX_FRAMES}") as info:
        load_keyframes(path, HORIZON)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # The bound itself is reachable, and --frames overrides the file's length within it.
    path.write_text(json.dumps([{"yaw": 0, "time": 0}, {"yaw": 1, "time": (MAX_FRAMES - 1) / 30}]))
    assert len(load_keyframes(path, HORIZON, fps=30)) == MAX_FRAMES
    path.write_text(json.dumps([{"yaw": 0, "time": 0}, {"yaw": 1, "time": 1e9}]))
    assert len(load_keyframes(path, HORIZON, frames=3)) == 3
    with pytest.raises(TriganError, match="--frames"):
        load_keyframes(path, HORIZON, frames=MAX_FRAMES + 1)


def test_a_keyframe_file_nested_past_the_stack_or_with_a_huge_number_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    for content in ("[" * 100_000 + "]" * 100_000, "[{\"yaw\": 1" + "0" * 5000 + "}]"):
        path.write_text(content)
        with pytest.raises(TriganError, match="not a usable keyframe file") as info:
            load_keyframes(path, HORIZON)
        assert str(path) in str(info.value)


def test_make_trajectory_names_and_errors(tmp_path):
    for name in NAMED:
        tr = make_trajectory(name, HORIZON)
        assert isinstance(tr, Trajectory) and len(tr) >= 1
        assert len(tr.cameras()) == len(tr)
    assert len(make_trajectory("orbit", HORIZON, frames=10)) == 10
    with pytest.raises(TriganError, match="unknown trajectory"):
        make_trajectory("spiral", HORIZON)
    with pytest.raises(TriganError, match="no such keyframe file"):
        make_trajectory(str(tmp_path / "missing.json"), HORIZON)
    with pytest.raises(TriganError, match="at least one frame"):
        make_trajectory("orbit", HORIZON, frames=0)


def test_trajectory_cameras_follow_the_conventions():
    cams = points(HORIZON).cameras()
    pos = cams.origins()
    assert torch.allclose(pos[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)       # yaw 0 on +X, at the horizon
    assert pos[2, 2] > 0 > pos[1, 2]                                                 # +yaw moves toward +Z
    assert torch.allclose(cams.fov, torch.tensor(12.0))


def test_parse_camera():
    assert parse_camera("yaw=0.3,pitch=1.4") == {"yaw": 0.3, "pitch": 1.4}
    got = parse_camera(" yaw = -pi/4 , pitch=pi/2-0.2, fov=18, radius=1.5 ")
    assert got == pytest.approx({"yaw": -math.pi / 4, "pitch": math.pi / 2 - 0.2, "fov": 18.0, "radius": 1.5})
    for text, message in [("yawn=1", "unknown key 'yawn'"), ("yaw", "not key=value"), ("yaw=abc", "not a number"),
                          ("yaw=__import__('os')", "not a number"), ("fov=0", "fov must be between"),
                          ("radius=-2", "radius must be positive"), ("yaw=1,yaw=2", "given twice"),
                          ("yaw=1/0", "not a number"), ("look_at=0.1", "only look_at=0"),
                          ("look_at=0,look_at_y=0.1", "given twice")]:
        with pytest.raises(TriganError, match=message):
            parse_camera(text)
    # the point looked at: each coordinate, or look_at=0 for the origin
    assert parse_camera("look_at=0") == {"look_at_x": 0.0, "look_at_y": 0.0, "look_at_z": 0.0}
    assert parse_camera("look_at_y=0.05,yaw=1") == {"look_at_y": 0.05, "yaw": 1.0}


def test_apply_camera_values_sets_single_look_at_coordinates_and_keeps_the_pivot():
    pose = apply_camera_values(PANNED, parse_camera("look_at_y=0.5,yaw=1,fov=18"))
    assert pose == Pose(yaw=1.0, pitch=1.2, fov=18.0, radius=1.3, look_at=(0.1, 0.5, 0.2), pivot=PANNED.pivot)
    assert apply_camera_values(PANNED, parse_camera("look_at=0")).look_at == (0.0, 0.0, 0.0)
    assert apply_camera_values(PANNED, {}) == PANNED


def test_a_trajectory_is_a_sequence_of_core_poses_around_its_base():
    """Every named trajectory and keyframe path keeps the base pose's look-at point and pivot (a panned
    view's export orbits what the viewer shows), and its frames are core Poses."""
    for name in NAMED:
        tr = make_trajectory(name, PANNED, frames=5)
        assert (tr.look_at, tr.pivot) == (PANNED.look_at, PANNED.pivot)
        assert all(isinstance(tr.pose(i), Pose) and tr.pose(i).pivot == PANNED.pivot for i in range(len(tr)))
    # the first frame of a trajectory that starts at its base is the base pose itself
    assert orbit(PANNED, 4).pose(0) == PANNED and points(PANNED).pose(0) == PANNED
    assert Trajectory.from_poses("view", [PANNED]).pose(0) == PANNED


def test_keyframes_keep_the_base_look_at_and_pivot(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps([{"yaw": 0.0}, {"yaw": 1.0}]))
    tr = load_keyframes(path, PANNED, frames=3)
    assert tr.pose(2) == PANNED.with_values(yaw=1.0)


def test_trajectory_cameras_equal_the_cameras_of_its_poses():
    """The vectorised build and cameras_from_poses (one pose at a time) give the same tensors, bit for bit:
    both round the same float64 values to float32."""
    for tr in (front_circle(PANNED, frames=9), zoom(TILTED, frames=7)):
        batch, each = tr.cameras(), cameras_from_poses([tr.pose(i) for i in range(len(tr))])
        for key in ("angles", "radius", "fov", "look_at", "pivot"):
            assert torch.equal(getattr(batch, key), getattr(each, key)), key
        assert torch.equal(batch.cam2world(), each.cam2world())
        assert torch.equal(tr.cameras([3, 1]).angles, batch.angles[[3, 1]])


def test_from_poses_needs_one_shared_look_at_and_pivot():
    assert len(Trajectory.from_poses("two", [TILTED, HORIZON])) == 2
    with pytest.raises(ValueError, match="different"):
        Trajectory.from_poses("mixed", [TILTED, PANNED])
    with pytest.raises(ValueError, match="no frames"):
        Trajectory.from_poses("none", [])


# -- keyframe files with their own look-at point and pivot (issue 34: the viewer's Camera path tab) --

def test_a_keyframe_file_sets_the_base_look_at_and_pivot(tmp_path):
    """{"look_at": .., "pivot": .., "keyframes": [..]} replaces the base pose's two points, so the
    file renders the same panned view whatever base the CLI or the viewer reads it with."""
    path = tmp_path / "panned.json"
    path.write_text(json.dumps({"look_at": [0.1, -0.05, 0.2], "pivot": [0.1, -0.05, 0.25],
                                "keyframes": [{"yaw": 0.0, "time": 0}, {"yaw": 1.0, "time": 2}]}))
    for base in (HORIZON, TILTED):
        tr = make_trajectory(str(path), base, fps=2)
        assert (tr.look_at, tr.pivot) == (PANNED.look_at, PANNED.pivot)
        assert len(tr) == 5 and tr.yaw[0] == 0.0 and tr.yaw[-1] == 1.0
    # only one of the two: the other stays the base pose's
    path.write_text(json.dumps({"pivot": [0, 1, 0], "keyframes": [{"yaw": 0.0}, {"yaw": 1.0}]}))
    tr = load_keyframes(path, PANNED, frames=3)
    assert (tr.look_at, tr.pivot) == (PANNED.look_at, (0.0, 1.0, 0.0))


@pytest.mark.parametrize("doc, match", [
    ({"look_at": [0, 0], "keyframes": [{"yaw": 0}]}, "'look_at' must be three finite numbers"),
    ({"pivot": "origin", "keyframes": [{"yaw": 0}]}, "'pivot' must be three finite numbers"),
    ({"pivot": [0, True, 0], "keyframes": [{"yaw": 0}]}, "'pivot' must be three finite numbers"),
    ({"look_at": [0, 0, 1e400], "keyframes": [{"yaw": 0}]}, "'look_at' must be three finite numbers"),
    ({"centre": [0, 0, 0], "keyframes": [{"yaw": 0}]}, "found key 'centre'"),
])
def test_bad_look_at_or_pivot_is_one_line(tmp_path, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc).replace("Infinity", "1e400"))
    with pytest.raises(TriganError, match=match) as err:
        load_keyframes(path, HORIZON)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
