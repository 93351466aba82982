"""`trigan dataset poses`: every pose format round-trips through trigan's own Camera.

Synthetic cameras of known angles (seeded) are written in each source format from trigan's
Camera (positions and cam2world frames), converted back, and compared: float64 throughout, so
1e-6 rad is far above rounding (about 1e-15) and far below any convention slip (>= 0.1 rad).
"""

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from trigan.cli.main import main
from trigan.core.cameras import Camera
from trigan.training.dataset import open_dataset
from trigan.training.pose_import import (
    MAX_POSE_FILE_BYTES,
    PoseImportError,
    import_poses,
    read_poses,
    yaw_center,
)

TOL = 1e-6
N = 40


def known_angles(seed=0, n=N, yaw_spread=math.pi - 1e-3, with_roll=True):
    """Seeded trigan angles: yaw (front = 0), pitch in (0.3, pi - 0.3), roll in (-0.4, 0.4)."""
    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-yaw_spread, yaw_spread, n)
    pitch = rng.uniform(0.3, math.pi - 0.3, n)
    roll = rng.uniform(-0.4, 0.4, n) if with_roll else np.zeros(n)
    return yaw, pitch, roll


def angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + math.pi) % (2 * math.pi) - math.pi)


def rotate(v, axis, angle):
    """Rodrigues' rotation of vectors v [N, 3] about unit axes [N, 3] by angles [N]."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * c + np.cross(axis, v) * s + axis * (axis * v).sum(-1, keepdims=True) * (1 - c)


def eg3d_labels(yaw, pitch, roll, radius, fov, front_axis="+z"):
    """EG3D labels of cameras built by trigan's Camera in a world whose front is on `front_axis`:
    OpenCV columns (right, down, forward, position), rolled by `roll` about the view axis."""
    offset = math.pi / 2 if front_axis == "+z" else 0.0
    cam = Camera.from_angles(torch.tensor(yaw + offset), torch.tensor(pitch), radius=torch.tensor(radius),
                             fov=torch.tensor(fov), look_at=(0.0, 0.0, 0.2), dtype=torch.float64)
    c2w = cam.cam2world().numpy()
    right, up, forward = c2w[:, :3, 0], c2w[:, :3, 1], -c2w[:, :3, 2]
    # positive roll turns the camera counter-clockwise seen from behind: up tilts toward -right
    right_r, up_r = rotate(right, -forward, roll), rotate(up, -forward, roll)
    out = np.zeros((len(yaw), 4, 4))
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2], out[:, :3, 3] = right_r, -up_r, forward, c2w[:, :3, 3]
    out[:, 3, 3] = 1
    fx = 1 / (2 * np.tan(np.radians(fov) / 2))
    labels = []
    for i in range(len(yaw)):
        k = [fx[i], 0, 0.5, 0, fx[i], 0.5, 0, 0, 1]
        labels.append([f"00000/img{i:08d}.png", out[i].reshape(-1).tolist() + [float(x) for x in k]])
    return labels


def as_arrays(table, names):
    return np.array([table.angles[n] for n in names]).T


# ----------------------------------------------------------------------------------------------
# Round trips

@pytest.mark.parametrize("front_axis", ["+z", "+x"])
def test_eg3d_round_trip(tmp_path, front_axis):
    yaw, pitch, roll = known_angles(1)
    radius = np.random.default_rng(2).uniform(2.0, 3.0, N)
    fov = np.full(N, 18.0)
    labels = eg3d_labels(yaw, pitch, roll, radius, fov, front_axis)
    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": labels}))
    table = read_poses(src, "eg3d", yaw_zero=front_axis)
    y, p, r = as_arrays(table, [name for name, _ in labels])
    assert angle_diff(y, yaw).max() < TOL
    assert np.abs(p - pitch).max() < TOL
    assert angle_diff(r, roll).max() < TOL
    assert np.abs(table.fov - 18.0).max() < TOL
    assert np.abs(table.radius - radius).max() < TOL


def test_eg3d_frontal_label_is_yaw_zero(tmp_path):
    """EG3D's own frontal FFHQ camera (identity with y, z flipped, at z = 2.7, fx 4.2647) is the front."""
    label = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]
    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": [["img.png", label]]}))
    table = read_poses(src, "eg3d")
    yaw, pitch, roll = table.angles["img.png"]
    assert abs(yaw) < TOL and abs(pitch - math.pi / 2) < TOL and abs(roll) < TOL
    # fov = 2 atan(1 / (2 fx)): 13.37 degrees horizontal for EG3D's FFHQ intrinsics
    assert abs(table.fov[0] - math.degrees(2 * math.atan(1 / (2 * 4.2647)))) < 1e-9


def test_eg3d_fov_spread_is_warned(tmp_path, capsys):
    yaw, pitch, roll = known_angles(3, n=4)
    labels = eg3d_labels(yaw, pitch, roll, np.full(4, 2.7), np.array([18.0, 18.0, 18.0, 25.0]))
    src = tmp_path / "dataset.json"
    src.write_text(json.dumps({"labels": labels}))
    out = tmp_path / "poses.json"
    assert main(["dataset", "poses", str(src), "--format", "eg3d", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fov 19.75 degrees (min 18, max 25" in text
    assert "warning: the fov differs between images by 7 degrees" in text


def gram_cameras(yaw, pitch):
    """GRAM's camera position for trigan angles (front on +Z), by GRAM's own formula."""
    theta, phi = yaw + math.pi / 2, pitch
    return np.stack([np.sin(phi) * np.cos(theta), np.cos(phi), np.sin(phi) * np.sin(theta)], -1)


def test_gram_mat_round_trip(tmp_path):
    yaw, pitch, _ = known_angles(4, yaw_spread=1.2)
    # GRAM's and trigan's camera formulas agree (independent check of the shared convention)
    trigan_pos = Camera.from_angles(torch.tensor(yaw + math.pi / 2), torch.tensor(pitch),
                                    dtype=torch.float64).origins().numpy()
    assert np.abs(trigan_pos - gram_cameras(yaw, pitch)).max() < 1e-12
    poses = tmp_path / "poses"
    poses.mkdir()
    for i in range(N):
        # Deep3DFaceRecon angles that GRAM turns into phi = pitch, theta = yaw + pi/2
        angle = np.array([[math.pi / 2 + 0.1 - pitch[i], yaw[i], 0.05]])
        scipy.io.savemat(poses / f"{i:05d}.mat", {"angle": angle, "trans": np.zeros((1, 3)), "id": np.ones((1, 80))})
    table = read_poses(poses, "gram")
    y, p, r = as_arrays(table, [f"{i:05d}" for i in range(N)])
    assert angle_diff(y, yaw).max() < TOL and np.abs(p - pitch).max() < TOL and np.all(r == 0)


def test_gram_cats_npy_round_trip(tmp_path):
    yaw, pitch, _ = known_angles(5, yaw_spread=1.0)
    poses = tmp_path / "poses"
    poses.mkdir()
    for i in range(N):
        np.save(poses / f"cat{i}_pose.npy", np.array([pitch[i] - 0.14, yaw[i] + math.pi / 2]))
    table = read_poses(poses, "gram")
    y, p, _ = as_arrays(table, [f"cat{i}" for i in range(N)])
    assert angle_diff(y, yaw).max() < TOL and np.abs(p - pitch).max() < TOL


def test_angles_csv_degrees_and_json_radians(tmp_path):
    yaw, pitch, roll = known_angles(6)
    # CSV in degrees, azimuth measured from +X with the front on +Z, elevation pitch
    lines = ["name,yaw,pitch,roll"] + [
        f"img{i}.png,{math.degrees(yaw[i] + math.pi / 2)!r},{math.degrees(math.pi / 2 - pitch[i])!r},"
        f"{math.degrees(roll[i])!r}" for i in range(N)]
    csv_path = tmp_path / "angles.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    table = read_poses(csv_path, "angles", yaw_zero="+z", degrees=True, elevation=True)
    y, p, r = as_arrays(table, [f"img{i}.png" for i in range(N)])
    assert angle_diff(y, yaw).max() < TOL and np.abs(p - pitch).max() < TOL and angle_diff(r, roll).max() < TOL
    # JSON in radians, already trigan's convention: kept as given
    json_path = tmp_path / "angles.json"
    json_path.write_text(json.dumps({f"img{i}": [yaw[i], pitch[i]] for i in range(N)}))
    table = read_poses(json_path, "angles")
    y, p, r = as_arrays(table, [f"img{i}" for i in range(N)])
    assert angle_diff(y, yaw).max() < TOL and np.abs(p - pitch).max() < TOL and np.all(r == 0)


# ----------------------------------------------------------------------------------------------
# Centring

def test_yaw_center_is_circular_across_the_seam():
    yaws = np.array([math.pi - 0.1, -math.pi + 0.1, math.pi - 0.05, -math.pi + 0.05])
    # the arithmetic mean is 0, the circular mean is pi (the seam): wrapped into [-pi, pi)
    assert angle_diff(yaw_center(yaws), math.pi) < 1e-12
    assert abs(yaw_center({"a": [0.2, 1.5, 0], "b": [0.4, 1.5, 0]}) - 0.3) < 1e-12
    assert yaw_center(np.zeros((0, 3))) == 0.0


def test_center_flag_zero_centres_yaw(tmp_path, capsys):
    rng = np.random.default_rng(7)
    yaw = np.pi - 0.2 + rng.normal(0, 0.1, N)      # a front near the seam
    src = tmp_path / "a.json"
    src.write_text(json.dumps({f"i{k}": [float(y), 1.5, 0.0] for k, y in enumerate(yaw)}))
    out = tmp_path / "dataset.json"
    assert main(["dataset", "poses", str(src), "--format", "angles", "--center", "--out", str(out)]) == 0
    assert "centred: subtracted the mean yaw" in capsys.readouterr().out
    written = json.loads(out.read_text())["camera_angles"]
    centred = np.array([v[0] for v in written.values()])
    assert abs(yaw_center(centred)) < 1e-9
    expected = angle_diff(yaw, yaw_center(yaw))   # |yaw - mean|, the spread survives
    assert np.abs(np.abs(centred) - expected).max() < 1e-9


# ----------------------------------------------------------------------------------------------
# Writing into datasets

def png(seed):
    arr = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def make_folder(root: Path, n: int, meta=None) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        (root / "sub" / f"img{i:03d}.png").write_bytes(png(i))
    if meta is not None:
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def plain_source(tmp_path, n, yaw, pitch, extra=()):
    src = tmp_path / "src.json"
    table = {f"sub/img{i:03d}.jpg": [float(yaw[i]), float(pitch[i]), 0.0] for i in range(n)}
    table.update({name: [0.5, 1.5, 0.0] for name in extra})
    src.write_text(json.dumps(table))
    return src


def test_folder_keeps_labels_and_opens(tmp_path, capsys):
    n = 6
    yaw, pitch, _ = known_angles(8, n=n)
    data = make_folder(tmp_path / "faces", n, {"labels": [[f"sub/img{i:03d}.png", i % 2] for i in range(n)],
                                               "class_names": ["a", "b"]})
    src = plain_source(tmp_path, n, yaw, pitch, extra=["other/x.png"])
    assert main(["dataset", "poses", str(src), "--format", "angles", "--out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "note: 1 poses have no image" in out and "camera_angles for 6 images" in out
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["class_names"] == ["a", "b"] and len(meta["labels"]) == n
    with open_dataset(data) as ds:
        assert ds.has_camera_angles and ds.num_classes == 2
        assert np.abs(ds.camera_angles[:, 0] - yaw).max() < 1e-6     # float32 storage in the loader
        assert np.abs(ds.camera_angles[:, 1] - pitch).max() < 1e-6


def test_existing_angles_need_force_and_missing_poses_refused(tmp_path):
    n = 4
    yaw, pitch, _ = known_angles(9, n=n)
    data = make_folder(tmp_path / "d", n, {"camera_angles": {f"sub/img{i:03d}": [0.5, 1.5, 0] for i in range(n)}})
    before = (data / "dataset.json").read_bytes()
    src = plain_source(tmp_path, n, yaw, pitch)
    table = read_poses(src, "angles")
    with pytest.raises(PoseImportError, match="already has camera_angles .*--force"):
        import_poses(table, data)
    assert (data / "dataset.json").read_bytes() == before
    import_poses(table, data, force=True)
    assert json.loads((data / "dataset.json").read_text())["camera_angles"]["sub/img000.png"][0] == pytest.approx(yaw[0])
    # one image too many: refused with the count and the name, nothing written
    (data / "sub" / "img999.png").write_bytes(png(99))
    after = (data / "dataset.json").read_bytes()
    with pytest.raises(PoseImportError, match=r"1 of 5 images have no pose .*'sub/img999.png'"):
        import_poses(table, data, force=True)
    assert (data / "dataset.json").read_bytes() == after


def test_zip_is_rewritten_with_entries_unchanged(tmp_path):
    n = 5
    yaw, pitch, _ = known_angles(10, n=n)
    zpath = tmp_path / "faces.zip"
    entries = {f"faces/sub/img{i:03d}.png": png(i) for i in range(n)}
    with zipfile.ZipFile(zpath, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        z.writestr("faces/dataset.json", json.dumps({"labels": {f"sub/img{i:03d}": 0 for i in range(n)}}))
    src = tmp_path / "src.json"
    src.write_text(json.dumps({f"sub/img{i:03d}": [float(yaw[i]), float(pitch[i])] for i in range(n)}))
    import_poses(read_poses(src, "angles"), zpath)
    with zipfile.ZipFile(zpath) as z:
        assert sorted(z.namelist()) == sorted([*entries, "faces/dataset.json"])
        assert all(z.read(name) == data for name, data in entries.items())
        assert "labels" in json.loads(z.read("faces/dataset.json"))
    with open_dataset(zpath) as ds:
        assert np.abs(ds.camera_angles[:, 0] - yaw).max() < 1e-6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary left


# ----------------------------------------------------------------------------------------------
# Hostile sources: one line each, nothing written

def eg3d_file(tmp_path, labels):
    path = tmp_path / "eg3d.json"
    path.write_text(json.dumps({"labels": labels}))
    return path


GOOD = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1]


@pytest.mark.parametrize("labels, message", [
    ([["a.png", GOOD[:24]]], "expected 25 numbers .* got 24"),
    ([["a.png", GOOD[:11] + [float("nan")] + GOOD[12:]]], "nan is not a finite number"),
    ([["a.png", [2] + GOOD[1:]]], "not orthonormal"),
    ([["a.png", GOOD[:11] + [0] + GOOD[12:]]], "sits at the origin"),
    ([["a.png", GOOD[:16] + [-1] + GOOD[17:]]], "fx -1: expected a positive"),
    ([["../escape.png", GOOD]], "'../escape.png' .*relative paths"),
    ([["a.png", GOOD], ["a.png", GOOD]], "appears twice"),
    ({"a.png": "text"}, "expected 25 numbers"),
    ([], "no poses"),
])
def test_hostile_eg3d_is_one_line(tmp_path, labels, message):
    with pytest.raises(PoseImportError, match=message) as info:
        read_poses(eg3d_file(tmp_path, labels), "eg3d")
    assert "\n" not in str(info.value)


def test_hostile_files_are_one_line(tmp_path, capsys):
    huge = tmp_path / "huge.mat"
    with open(huge, "wb") as f:      # sparse: claims more than the bound, nothing is read
        f.truncate(MAX_POSE_FILE_BYTES + 1)
    folder = tmp_path / "poses"
    folder.mkdir()
    huge.rename(folder / "huge.mat")
    with pytest.raises(PoseImportError, match="more than the limit"):
        read_poses(folder, "gram")
    (folder / "huge.mat").unlink()
    scipy.io.savemat(folder / "bad.mat", {"angle": np.zeros((4, 4))})
    with pytest.raises(PoseImportError, match=r"shape \(4, 4\); expected 1x3"):
        read_poses(folder, "gram")
    (folder / "bad.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(PoseImportError, match="not a readable .mat file"):
        read_poses(folder, "gram")
    (folder / "bad.mat").unlink()
    np.save(folder / "x_pose.npy", np.array([object()]), allow_pickle=True)
    with pytest.raises(PoseImportError, match="not a readable .npy file"):
        read_poses(folder, "gram")
    (folder / "x_pose.npy").unlink()
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("a.png,1,2\nb.png,inf,1\n")
    with pytest.raises(PoseImportError, match="inf is not a finite number"):
        read_poses(csv_path, "angles")
    csv_path.write_text("a.png,1\n")
    with pytest.raises(PoseImportError, match="line 1: expected name, yaw, pitch"):
        read_poses(csv_path, "angles")
    csv_path.write_text("a.png,0,200\n")
    with pytest.raises(PoseImportError, match=r"pitch 3.49066 rad \(200 degrees\) is outside"):
        read_poses(csv_path, "angles", degrees=True)
    # the CLI prints one line and exits 2, writing nothing
    out = tmp_path / "dataset.json"
    assert main(["dataset", "poses", str(csv_path), "--format", "angles", "--degrees", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pitch" in err and not out.exists()
    assert main(["dataset", "poses", str(csv_path), "--format", "eg3d", "--degrees", "--out", str(out)]) == 2
    assert "--degrees applies to --format angles only" in capsys.readouterr().err


def test_zip_with_escaping_entry_is_refused(tmp_path):
    zpath = tmp_path / "d.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("img000.png", png(0))
        z.writestr("../evil.png", png(1))
    before = zpath.read_bytes()
    src = tmp_path / "src.json"
    src.write_text(json.dumps({"img000": [0.1, 1.5, 0.0]}))
    with pytest.raises(PoseImportError, match="'../evil.png'"):
        import_poses(read_poses(src, "angles"), zpath)
    assert zpath.read_bytes() == before


def test_help_lists_poses(capsys):
    with pytest.raises(SystemExit):
        main(["dataset", "poses", "--help"])
    text = capsys.readouterr().out
    assert "--yaw-zero" in text and "--center" in text and "eg3d" in text


def test_eg3d_cameras_left_in_the_target_are_refused(tmp_path):
    """EG3D keeps its cameras under "labels": converting into EG3D's own folder would keep them, and
    trigan would then refuse the dataset (labels must be classes). Refused in one line, nothing written."""
    n = 3
    yaw, pitch, roll = known_angles(11, n=n)
    labels = eg3d_labels(yaw, pitch, roll, np.full(n, 2.7), np.full(n, 18.0))
    data = make_folder(tmp_path / "eg3d", n, {"labels": [[f"sub/img{i:03d}.png", labels[i][1]] for i in range(n)]})
    before = (data / "dataset.json").read_bytes()
    src = tmp_path / "eg3d_labels.json"
    src.write_text(json.dumps({"labels": [[f"sub/img{i:03d}.png", labels[i][1]] for i in range(n)]}))
    table = read_poses(src, "eg3d")
    with pytest.raises(PoseImportError, match=r"labels\" are EG3D's cameras .*move that dataset.json aside"):
        import_poses(table, data, force=True)
    assert (data / "dataset.json").read_bytes() == before
