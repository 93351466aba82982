"""The procedural synthetic dataset: determinism, balance, framing, depth and camera conventions."""

import io
import json
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

from trigan.cli.main import main
from trigan.core.cameras import Camera
from trigan.training import synth
from trigan.training.dataset import open_dataset, validate_dataset
from trigan.training.synth import Box, Frustum, Sphere, SynthSettings, write_synth_dataset


def _write(path, **kw):
    settings = dict(num=14, resolution=16, classes=7, seed=0)
    settings.update(kw)
    return write_synth_dataset(path, SynthSettings(**settings), progress=False)


def _zip_arrays(path):
    """{name: array} of every PNG in the zip, plus the parsed dataset.json."""
    with zipfile.ZipFile(path) as zf:
        arrays = {n: np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in zf.namelist() if n.endswith(".png")}
        meta = json.loads(zf.read("dataset.json"))
    return arrays, meta


def _one(value):
    return np.array([value], dtype=np.float64)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    _write(tmp_path / "a.zip", seed=3)
    _write(tmp_path / "b.zip", seed=3)
    _write(tmp_path / "c.zip", seed=4)
    a, b, c = [(tmp_path / f"{n}.zip").read_bytes() for n in "abc"]
    assert a == b
    assert a != c
    arrays_a, _ = _zip_arrays(tmp_path / "a.zip")
    arrays_c, _ = _zip_arrays(tmp_path / "c.zip")
    assert not np.array_equal(arrays_a["img000000.png"], arrays_c["img000000.png"])


def test_json_labels_balanced_and_angles_in_the_requested_ranges(tmp_path):
    _write(tmp_path / "d.zip", num=23, classes=5, seed=1, pitch_range=(1.0, 1.4), fov=35.0)
    _, meta = _zip_arrays(tmp_path / "d.zip")
    names = [f"img{i:06d}.png" for i in range(23)]
    assert [entry[0] for entry in meta["labels"]] == names             # StyleGAN's list form
    labels = np.array([entry[1] for entry in meta["labels"]])
    counts = np.bincount(labels, minlength=5)
    assert len(counts) == 5 and counts.max() - counts.min() <= 1
    angles = np.array([meta["camera_angles"][n] for n in names])
    assert np.all(angles[:, 0] >= -math.pi) and np.all(angles[:, 0] < math.pi)
    assert np.all(angles[:, 1] >= 1.0) and np.all(angles[:, 1] <= 1.4) and np.all(angles[:, 2] == 0)
    assert angles[:, 0].std() > 0.5                                      # yaw spread over the circle
    assert meta["class_names"] == synth.CLASS_NAMES[:5]
    assert meta["camera"] == {"fov": 35.0, "radius": 1.0} and meta["depth_range"] == [0.6, 1.4]
    assert meta["generator"] == "trigan dataset synth" and meta["seed"] == 1


def test_objects_fit_the_ball_and_are_centred():
    for c in range(len(synth.CLASS_NAMES)):
        prims = synth.make_objects(c, 40, np.random.default_rng(c))
        lo, hi = synth.scene_bounds(prims)
        corners = np.stack([np.where(np.array(bits)[None, :], hi, lo) for bits in np.ndindex(2, 2, 2)])
        assert np.linalg.norm(corners, axis=-1).max() <= synth.OBJECT_RADIUS_MAX + 1e-9
        assert np.abs((lo + hi) / 2).max() < 1e-9


def test_objects_in_frame_on_white_and_depth_background_exactly_where_white(tmp_path):
    _write(tmp_path / "f.zip", num=28, resolution=32, classes=7, seed=2)
    arrays, _ = _zip_arrays(tmp_path / "f.zip")
    for i in range(28):
        img, depth = arrays[f"img{i:06d}.png"], arrays[f"img{i:06d}_depth.png"]
        assert img.shape == (32, 32, 3) and depth.dtype == np.uint16
        white = (img == 255).all(axis=-1)
        border = np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]])
        assert border.all(), f"image {i}: the object touches the border"
        assert (~white).sum() > 20, f"image {i}: no object"
        np.testing.assert_array_equal(depth == 65535, white)


def test_classes_look_different(tmp_path):
    """Mean silhouettes of different classes differ more than those of two halves of one class."""
    _write(tmp_path / "g.zip", num=56, resolution=16, classes=7, seed=5)
    arrays, meta = _zip_arrays(tmp_path / "g.zip")
    labels = np.array([entry[1] for entry in meta["labels"]])
    masks = np.stack([(arrays[f"img{i:06d}.png"] < 255).any(-1) for i in range(56)]).astype(float)
    means = [masks[labels == c].mean(0) for c in range(7)]
    gaps = [np.abs(means[a] - means[b]).mean() for a in range(7) for b in range(a + 1, 7)]
    assert min(gaps) > 0.02


@pytest.mark.parametrize("yaw, pitch", [(0.0, math.pi / 2), (1.1, 1.2), (-2.5, 1.9)])
def test_depth_of_a_centred_sphere_matches_the_analytic_distance(yaw, pitch):
    sphere = [Sphere(np.zeros((1, 3)), _one(0.2), np.full((1, 3), 0.5))]
    cam = Camera.from_angles(yaw, pitch, 1.0, 30.0)
    _, dist = synth.render(sphere, cam, 33, supersample=1)
    # the centre ray goes through the origin: |origin| - radius
    decoded = synth.decode_depth(synth.encode_depth(dist, 0.6, 1.4), 0.6, 1.4)
    assert abs(decoded[0, 16, 16] - 0.8) <= 0.8 / 65535
    # every pixel against an independent ray-sphere formula on Camera's own rays
    origins, dirs = cam.rays(33)
    o, d = origins[0].double().numpy(), dirs[0].double().numpy()
    b = (o * d).sum(-1)
    disc = b ** 2 - ((o * o).sum(-1) - 0.04)
    expected = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf).reshape(33, 33)
    hit = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(dist[0]), hit)
    np.testing.assert_allclose(dist[0][hit], expected[hit], atol=1e-5)
    # with 2x2 supersampling the nearest sub-ray is a hair off-centre
    _, dist2 = synth.render(sphere, cam, 33, supersample=2)
    assert 0.8 <= dist2[0, 16, 16] <= 0.8 + 2e-4


@pytest.mark.parametrize("prim, expected", [
    (Box(np.full((1, 3), -0.1), np.full((1, 3), 0.1), np.full((1, 3), 0.5)), 0.9),
    (Frustum(1, np.array([[0.0, -0.1, 0.0]]), _one(0.2), _one(0.15), _one(0.15), np.full((1, 3), 0.5)), 0.85),
    # a cone along +X with its apex 0.2 from the origin, toward the camera
    (Frustum(0, np.array([[0.0, 0.0, 0.0]]), _one(0.2), _one(0.1), _one(0.0), np.full((1, 3), 0.5)), 0.8),
    # a ball cut at y = -0.05 seen from straight below: the flat disc, not the ball (0.8)
    (Sphere(np.zeros((1, 3)), _one(0.2), np.full((1, 3), 0.5), _one(-0.05)), 0.95),
])
def test_primitive_depth_through_the_image_centre(prim, expected):
    pitch = math.pi - 1e-4 if isinstance(prim, Sphere) else math.pi / 2   # from below, or from +X
    cam = Camera.from_angles(0.0, pitch, 1.0, 30.0)
    _, dist = synth.render([prim], cam, 17, supersample=1)
    assert abs(dist[0, 8, 8] - expected) < 1e-4


def _project(cam: Camera, point, resolution):
    """Pixel (row, col) of a world point, by hand from cam2world and the fov."""
    c2w = cam.cam2world()[0].double().numpy()
    local = c2w[:3, :3].T @ (np.asarray(point) - c2w[:3, 3])
    focal = 1 / math.tan(math.radians(float(cam.fov[0])) / 2)
    x, y = local[0] / -local[2] * focal, local[1] / -local[2] * focal
    return (1 - y) / 2 * (resolution - 1), (x + 1) / 2 * (resolution - 1)


@pytest.mark.parametrize("yaw, pitch", [(0.0, math.pi / 2), (math.pi / 2, math.pi / 2), (0.7, 1.1), (-2.0, 1.8),
                                        (math.pi, 1.3)])
def test_an_off_centre_marker_shows_where_the_camera_projects_it(yaw, pitch):
    marker = np.array([0.03, 0.1, 0.17])
    scene = [Sphere(marker[None], _one(0.03), np.array([[0.9, 0.05, 0.05]]))]
    cam = Camera.from_angles(yaw, pitch, 1.0, 30.0)
    res = 64
    img, _ = synth.render(scene, cam, res)
    reddish = (img[0, :, :, 0].astype(int) - img[0, :, :, 1] > 30)
    assert reddish.sum() > 5
    rows, cols = np.nonzero(reddish)
    row, col = _project(cam, marker, res)
    assert abs(rows.mean() - row) < 1.0 and abs(cols.mean() - col) < 1.0
    if (yaw, pitch) == (0.0, math.pi / 2):
        # core/cameras.py conventions: at yaw 0 the camera is on +X and image-right is world -Z, image-up is +Y
        assert cols.mean() < res / 2 and rows.mean() < res / 2


def test_synth_output_is_a_valid_dataset(tmp_path):
    _write(tmp_path / "v.zip", num=8, resolution=16, classes=4, seed=7)
    assert validate_dataset(tmp_path / "v.zip", require_camera_angles=True) == []
    ds = open_dataset(tmp_path / "v.zip", require_camera_angles=True)
    assert len(ds) == 8 and ds.resolution == 16 and ds.num_classes == 4 and ds.has_depth
    assert ds.meta["depth_range"] == [0.6, 1.4] and ds.meta["class_names"] == synth.CLASS_NAMES[:4]
    item = ds[0]
    assert item["depth"].shape == (1, 16, 16) and float(item["depth"].max()) == 65535.0


@pytest.mark.parametrize("argv, fragment", [
    (["--num", "0"], "--num 0"),
    (["--resolution", "4"], "--resolution 4"),
    (["--classes", "0"], "--classes 0"),
    (["--classes", "99"], "--classes 99"),
    (["--fov", "20"], "--fov 20"),
    (["--pitch-range", "2", "1"], "--pitch-range"),
    (["--near", "0.9"], "--near 0.9"),
])
def test_synth_rejects_bad_arguments_in_one_line(tmp_path, capsys, argv, fragment):
    out = tmp_path / "x.zip"
    code = main(["dataset", "synth", str(out), "--num", "4"] + argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("trigan: error: ") and fragment in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_synth_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "s.zip"
    assert main(["dataset", "synth", str(out), "--num", "3", "--resolution", "8"]) == 0
    assert "wrote" in capsys.readouterr().out
    first = out.read_bytes()
    code = main(["dataset", "synth", str(out), "--num", "3", "--resolution", "8", "--seed", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--force" in err and out.read_bytes() == first
    assert main(["dataset", "synth", str(out), "--num", "3", "--resolution", "8", "--seed", "1", "--force"]) == 0
    assert out.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zip"]           # no temporary leftovers


def test_synth_failure_leaves_no_partial_zip(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(synth, "_png", boom)
    with pytest.raises(RuntimeError):
        _write(tmp_path / "p.zip", num=3, resolution=8)
    assert list(tmp_path.iterdir()) == []
