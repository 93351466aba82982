"""The Camera path tab's keyframe model (viewer/camera_path.py): durations -> times, the JSON round
trip, the path through its keyframes, the same frames as `trigan render --trajectory FILE` reads
from the saved file, yaw unwrapping across the +-180 degree seam, one-line refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.core.trajectories import make_trajectory
from trigan.viewer.camera_path import MAX_KEYFRAMES, CameraPath, Keyframe, check_duration, unwrap_yaws

PANNED = dict(look_at=(0.1, -0.05, 0.2), pivot=(0.1, -0.05, 0.25))
POSES = [Pose(yaw=0.0, pitch=1.5, fov=12.0, radius=1.2, **PANNED),
         Pose(yaw=0.6, pitch=1.2, fov=15.0, radius=1.0, **PANNED),
         Pose(yaw=1.1, pitch=1.4, fov=10.0, radius=1.5, **PANNED),
         Pose(yaw=0.2, pitch=1.6, fov=12.0, radius=1.3, **PANNED)]


def make_path(durations=(0.5, 1.5, 1.0, 1.0)) -> CameraPath:
    path = CameraPath()
    for pose, seconds in zip(POSES, durations, strict=True):
        assert path.add(pose, seconds) is None
    return path


def test_durations_set_the_times():
    """Keyframe k's time is the sum of the durations before it; the last duration does not count."""
    path = make_path((0.5, 1.5, 0.25, 7.0))
    np.testing.assert_array_equal(path.times(), [0.0, 0.5, 2.0, 2.25])
    assert path.duration == 2.25
    path.set_duration(0, 1.0)
    np.testing.assert_array_equal(path.times(), [0.0, 1.0, 2.5, 2.75])


def test_the_path_passes_through_its_keyframes_and_is_the_clis():
    """pose_at(time of keyframe k) is keyframe k (the Hermite spline interpolates), and the frames of
    the saved file as `trigan render --trajectory FILE --fps 4` builds them (make_trajectory, from any
    base pose) are the path's own, bit for bit; the frames at keyframe times are the keyframes."""
    path = make_path((0.5, 1.5, 1.0, 1.0))
    for k, t in enumerate(path.times()):
        pose = path.pose_at(t)
        assert [pose.yaw, pose.pitch, pose.fov, pose.radius] == pytest.approx(Keyframe.of_pose(POSES[k]).values(),
                                                                              abs=1e-12)
        assert (pose.look_at, pose.pivot) == (PANNED["look_at"], PANNED["pivot"])
    own = path.trajectory(fps=4)
    assert len(own) == round(3.0 * 4) + 1


def test_saved_file_renders_the_same_frames_from_the_cli(tmp_path):
    path = make_path((0.5, 1.5, 1.0, 1.0))
    file = path.save(tmp_path / "move.json")
    own = path.trajectory(fps=4)
    for base in (Pose(), Pose(yaw=2.0, pitch=0.7, fov=30.0, radius=3.0, look_at=(1, 1, 1), pivot=(0, 1, 0))):
        cli = make_trajectory(str(file), base, None, 4.0)
        for key in ("yaw", "pitch", "fov", "radius"):
            np.testing.assert_array_equal(getattr(cli, key), getattr(own, key))
        assert (cli.look_at, cli.pivot) == (PANNED["look_at"], PANNED["pivot"])
    # frames 0, 2, 8, 12 sit at the keyframe times 0, 0.5, 2, 3 s
    for frame, k in ((0, 0), (2, 1), (8, 2), (12, 3)):
        got = [own.yaw[frame], own.pitch[frame], own.fov[frame], own.radius[frame]]
        assert got == pytest.approx(Keyframe.of_pose(POSES[k]).values(), abs=1e-12)


def test_json_round_trip(tmp_path):
    """Save then load gives the same keyframes (values exactly: JSON keeps a float's repr), the same
    durations (all but the last, which a file does not store: it comes back as the default) and the
    same look-at point and pivot, whatever pose loads it."""
    path = make_path((0.5, 1.5, 0.3, 2.0))
    file = path.save(tmp_path / "a.json")
    doc = json.loads(file.read_text())
    assert set(doc) == {"look_at", "pivot", "keyframes"}
    assert all(set(k) == {"yaw", "pitch", "fov", "radius", "time"} for k in doc["keyframes"])
    back = CameraPath.load(file, Pose(yaw=3.0, look_at=(5, 5, 5)))
    assert [k.values() for k in back.keyframes] == [k.values() for k in path.keyframes]
    assert [k.duration for k in back.keyframes[:-1]] == pytest.approx([0.5, 1.5, 0.3], abs=1e-12)
    assert back.keyframes[-1].duration == 1.0
    assert (back.look_at, back.pivot) == (PANNED["look_at"], PANNED["pivot"])
    # times come back as the running sum of the gaps: equal up to float64 rounding of the sums
    assert [k["time"] for k in back.to_json()["keyframes"]] == pytest.approx([k["time"] for k in doc["keyframes"]],
                                                                           abs=1e-12)


def test_a_file_without_points_takes_the_loading_pose(tmp_path):
    """An old keyframe file (a plain list, values left out) loads as trigan render reads it: missing
    values repeat the previous keyframe's, the first's come from the base, and so do the points."""
    file = tmp_path / "old.json"
    file.write_text(json.dumps([{"yaw": 0.1}, {"yaw": 0.4, "fov": 20}]))
    base = Pose(yaw=0.0, pitch=1.3, fov=14.0, radius=2.0, **PANNED)
    path = CameraPath.load(file, base)
    assert [k.values() for k in path.keyframes] == [[0.1, 1.3, 14.0, 2.0], [0.4, 1.3, 20.0, 2.0]]
    np.testing.assert_array_equal(path.times(), [0.0, 1.0])
    assert (path.look_at, path.pivot) == (PANNED["look_at"], PANNED["pivot"])


def test_reorder_and_delete():
    path = make_path()
    assert path.move(2, -1) == 1 and [k.yaw for k in path.keyframes] == [0.0, 1.1, 0.6, 0.2]
    assert path.move(0, -1) == 0                       # the first stays first
    assert path.move(3, 1) == 3
    path.delete(0)
    assert [k.yaw for k in path.keyframes] == [1.1, 0.6, 0.2]
    path.clear()
    assert len(path) == 0 and path.duration == 0.0


def test_yaw_crossing_the_seam_goes_the_short_way():
    """The orbit wraps yaw into [-pi, pi): keyframes at 170 and -170 degrees are 20 degrees apart, and
    the path between them passes 180, not 0."""
    path = CameraPath()
    path.add(Pose(yaw=math.radians(170)))
    path.add(Pose(yaw=math.radians(-170)))
    mid = path.pose_at(0.5).yaw
    assert math.degrees(mid) == pytest.approx(180.0, abs=1e-9)
    np.testing.assert_allclose(unwrap_yaws([3.0, -3.0, 3.0]), [3.0, 2 * math.pi - 3.0, 3.0])


def test_a_panned_keyframe_keeps_the_path_centre():
    path = CameraPath()
    assert path.add(POSES[0]) is None
    note = path.add(Pose(yaw=0.3, look_at=(1, 0, 0), pivot=(1, 0, 0)))
    assert "keyframe 1" in note and "\n" not in note
    assert (path.look_at, path.pivot) == (PANNED["look_at"], PANNED["pivot"]) and len(path) == 2


@pytest.mark.parametrize("value", [0, -1, "abc", float("nan"), 1e9, None])
def test_bad_durations_are_one_line(value):
    with pytest.raises(TriganError, match="duration") as err:
        check_duration(value)
    assert "\n" not in str(err.value)
    path = make_path()
    with pytest.raises(TriganError):
        path.set_duration(1, value)
    assert path.keyframes[1].duration == 1.5            # unchanged


def test_refusals(tmp_path):
    path = make_path()
    for call, match in ((lambda: path.move(9, 1), "keyframe 9"), (lambda: path.delete(-1), "keyframe -1"),
                        (lambda: CameraPath().trajectory(), "at least two"),
                        (lambda: CameraPath().pose_at(0), "no keyframes"),
                        (lambda: path.save(tmp_path / "a.txt"), "ends in .json"),
                        (lambda: CameraPath([Keyframe(0, 1, 12, 1)]).save(tmp_path / "b.json"), "at least two")):
        with pytest.raises(TriganError, match=match):
            call()
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.json").exists()
    full = CameraPath([Keyframe(0.0, 1.5, 12.0, 1.0)] * MAX_KEYFRAMES)
    with pytest.raises(TriganError, match=f"at most {MAX_KEYFRAMES}"):
        full.add(Pose())


@pytest.mark.parametrize("text, match", [
    ("{", "not valid JSON"),
    ('{"keyframes": [{"yaw": 0}], "look_at": [0, 0]}', "'look_at' must be three"),
    ('{"keyframes": [{"yaw": "left"}]}', "'yaw' must be a finite number"),
    ('[]', "no keyframes"),
])
def test_hostile_files_are_one_line(tmp_path, text, match):
    file = tmp_path / "k.json"
    file.write_text(text)
    with pytest.raises(TriganError, match=match) as err:
        CameraPath.load(file, Pose())
    assert "\n" not in str(err.value)
