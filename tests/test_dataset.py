"""Datasets: the format (zip or folder, dataset.json, depth maps, mirroring), validation, and the
`trigan dataset check | resize | pack` tools."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trigan.cli.main import main
from trigan.training.dataset import DatasetError, ImageDataset, open_dataset, validate_dataset
from trigan.training.dataset_tools import pack_dataset, resize_dataset

RES = 16


# ----------------------------------------------------------------------------------------------
# helpers

def _encode(value, rel: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode()
    image = value if isinstance(value, Image.Image) else Image.fromarray(value)
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}.get(Path(rel).suffix.lower(), "PNG")
    image.save(buf, format=fmt)
    return buf.getvalue()


def write_dataset(path: Path, files: dict) -> Path:
    """A dataset at `path` (a zip when it ends in .zip, else a folder) from {relative path: content}:
    numpy arrays and Pillow images become images (by extension), dicts and lists JSON, bytes as is."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for rel, value in files.items():
                zf.writestr(rel, _encode(value, rel))
    else:
        for rel, value in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(_encode(value, rel))
    return path


def rgb(seed: int, res: int = RES, width: int | None = None) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (res, width or res, 3), dtype=np.uint8)


def depth16(seed: int, res: int = RES) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 65536, (res, res), dtype=np.uint16)


def angles(n: int):
    return [[-2.0 + 0.9 * i, 1.2 + 0.1 * i, 0.0] for i in range(n)]


def standard_files(n: int = 3, label_form: str = "dict") -> dict:
    names = [f"img{i}.png" for i in range(n)]
    files = {name: rgb(i) for i, name in enumerate(names)}
    files.update({f"img{i}_depth.png": depth16(i) for i in range(n)})
    labels = {name: i % 2 for i, name in enumerate(names)}
    files["dataset.json"] = {
        "camera_angles": {name: a for name, a in zip(names, angles(n), strict=True)},
        "labels": labels if label_form == "dict" else [[k, v] for k, v in labels.items()],
        "class_names": ["a", "b"],
    }
    return files


def items(ds):
    return [ds[i] for i in range(len(ds))]


def assert_same_items(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


# ----------------------------------------------------------------------------------------------
# reading

def test_zip_and_folder_give_the_same_items(tmp_path):
    files = standard_files()
    folder = open_dataset(write_dataset(tmp_path / "data", files))
    zipped = open_dataset(write_dataset(tmp_path / "data.zip", files))
    assert folder.names == zipped.names == ["img0.png", "img1.png", "img2.png"]
    assert_same_items(items(folder), items(zipped))
    item = zipped[1]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, RES, RES)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), rgb(1))
    assert item["camera_angles"].dtype == torch.float32
    np.testing.assert_allclose(item["camera_angles"].numpy(), angles(3)[1], rtol=1e-6)
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0 and int(item["label"]) == 1
    assert item["index"].dtype == torch.int64 and int(item["index"]) == 1
    assert item["depth"].dtype == torch.float32 and item["depth"].shape == (1, RES, RES)
    np.testing.assert_array_equal(item["depth"][0].numpy(), depth16(1).astype(np.float32))
    assert zipped.resolution == RES and zipped.num_classes == 2 and zipped.has_labels and zipped.has_depth
    assert zipped.has_camera_angles and zipped.meta == {"class_names": ["a", "b"]}
    assert zipped.labels.dtype == np.int64 and zipped.labels.tolist() == [0, 1, 0]
    assert zipped.camera_angles.shape == (3, 3)


def test_dict_and_list_label_forms_agree(tmp_path):
    a = open_dataset(write_dataset(tmp_path / "a", standard_files(label_form="dict")))
    b = open_dataset(write_dataset(tmp_path / "b", standard_files(label_form="list")))
    assert a.labels.tolist() == b.labels.tolist() == [0, 1, 0]


@pytest.mark.parametrize("key", ["img1.png", "img1", "img1.jpg", "keys/img1.png", "keys/img1"])
def test_json_keys_match_with_or_without_extension_and_zip_name(tmp_path, key):
    files = {"img0.png": rgb(0), "img1.png": rgb(1), "dataset.json": {
        "camera_angles": {"img0": [0.5, 1.0, 0.0], key: [-0.25, 1.5, 0.0]}, "labels": [["img0.png", 3], [key, 4]]}}
    ds = open_dataset(write_dataset(tmp_path / "keys.zip", files))
    assert ds.labels.tolist() == [3, 4] and ds.num_classes == 5
    np.testing.assert_allclose(ds.camera_angles[1], [-0.25, 1.5, 0.0])


def test_images_inside_a_folder_named_like_the_zip(tmp_path):
    files = {"pics/a.png": rgb(0), "pics/b.png": rgb(1), "pics/dataset.json": {"labels": {"a.png": 0, "pics/b": 1}}}
    ds = open_dataset(write_dataset(tmp_path / "pics.zip", files))
    assert ds.names == ["pics/a.png", "pics/b.png"] and ds.labels.tolist() == [0, 1]


def test_mirror_flips_image_and_depth_and_negates_yaw_only(tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "m.zip", standard_files()), mirror=True)
    assert len(ds) == 6 and ds.mirror
    for i in range(3):
        plain, flipped = ds[i], ds[i + 3]
        assert torch.equal(flipped["image"], plain["image"].flip(-1))
        assert not torch.equal(flipped["image"], plain["image"])
        assert torch.equal(flipped["depth"], plain["depth"].flip(-1))
        assert float(flipped["camera_angles"][0]) == -float(plain["camera_angles"][0])
        assert torch.equal(flipped["camera_angles"][1:], plain["camera_angles"][1:])
        assert int(flipped["label"]) == int(plain["label"]) and int(flipped["index"]) == i + 3
    with pytest.raises(IndexError):
        ds[6]


def test_mean_camera_pose(tmp_path):
    path = write_dataset(tmp_path / "p", standard_files())
    a = np.array(angles(3))
    np.testing.assert_allclose(open_dataset(path).mean_camera_pose(), a.mean(0), atol=1e-6)
    mirrored = open_dataset(path, mirror=True).mean_camera_pose()
    np.testing.assert_allclose(mirrored, [0.0, a[:, 1].mean(), 0.0], atol=1e-6)


def test_depth_maps_are_not_images_and_8_bit_depth_is_scaled(tmp_path):
    d8 = np.arange(RES * RES, dtype=np.uint8).reshape(RES, RES)
    two_channel = np.stack([d8, 255 - d8, d8], axis=-1)                 # 3-D: channel 0 is the depth
    files = {"a.png": rgb(0), "a_depth.png": d8, "b.png": rgb(1), "b_depth.png": two_channel}
    ds = open_dataset(write_dataset(tmp_path / "d", files))
    assert ds.names == ["a.png", "b.png"] and ds.has_depth
    for i in range(2):
        np.testing.assert_array_equal(ds[i]["depth"][0].numpy(), d8.astype(np.float32) * 256)
    assert "depth" not in open_dataset(tmp_path / "d", load_depth=False)[0]


def test_modes_are_converted_to_rgb(tmp_path):
    gray = np.random.default_rng(1).integers(0, 255, (RES, RES), dtype=np.uint8)
    rgba = np.concatenate([rgb(2), np.random.default_rng(3).integers(0, 256, (RES, RES, 1), dtype=np.uint8)], -1)
    palette = Image.fromarray(rgb(4)).convert("P", palette=Image.ADAPTIVE, colors=16)
    files = {"0gray.png": gray, "1rgba.png": rgba, "2pal.png": palette, "3cmyk.jpg": Image.new("CMYK", (RES, RES), (0, 255, 255, 0)),
             "4gray16.png": (gray.astype(np.uint16) * 257)}
    ds = open_dataset(write_dataset(tmp_path / "modes", files))
    out = [ds[i]["image"].permute(1, 2, 0).numpy().astype(int) for i in range(5)]
    assert all(o.shape == (RES, RES, 3) for o in out)
    np.testing.assert_array_equal(out[0], np.repeat(gray[..., None], 3, -1))
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)                 # composited on white
    assert np.abs(out[1] - expected).max() <= 1
    np.testing.assert_array_equal(out[2], np.asarray(palette.convert("RGB")))
    assert abs(out[3][..., 0].mean() - 255) < 3 and out[3][..., 1:].mean() < 3   # CMYK (0, 1, 1, 0) is red
    np.testing.assert_array_equal(out[4], np.repeat(gray[..., None], 3, -1))


def test_without_json_angles_are_zero_and_labels_minus_one(tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "plain", {"x.png": rgb(0), "notes.txt": b"hello"}))
    assert ds.names == ["x.png"] and not ds.has_labels and not ds.has_camera_angles and not ds.has_depth
    assert ds.num_classes == 0 and ds.labels is None and ds.meta == {}
    item = ds[0]
    assert int(item["label"]) == -1 and item["camera_angles"].tolist() == [0, 0, 0] and "depth" not in item
    unlabelled = open_dataset(write_dataset(tmp_path / "l", standard_files()), use_labels=False)
    assert int(unlabelled[0]["label"]) == -1 and unlabelled.num_classes == 0 and not unlabelled.has_labels


def test_max_size_keeps_a_fixed_subset_in_order(tmp_path):
    files = {f"i{k:02d}.png": rgb(k, 8) for k in range(10)}
    a = open_dataset(write_dataset(tmp_path / "s", files), max_size=4)
    b = open_dataset(tmp_path / "s", max_size=4, mirror=True)
    assert len(a) == 4 and len(b) == 8 and a.names == b.names == sorted(a.names)
    assert len(open_dataset(tmp_path / "s", max_size=50)) == 10


def test_zip_works_with_dataloader_workers(tmp_path):
    ds = open_dataset(write_dataset(tmp_path / "w.zip", standard_files(4)), mirror=True)
    ds[0]                                      # the parent has opened its own handle already
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (8, 3, RES, RES)
    assert torch.equal(images, torch.stack([ds[i]["image"] for i in range(8)]))
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(8))


# ----------------------------------------------------------------------------------------------
# validation: each bad input names its file; index-level ones stop ImageDataset

def _good(n=3):
    files = standard_files(n)
    return files


def _json(files):
    return files["dataset.json"]


def case_corrupt(f):
    f["img1.png"] = b"certainly not a png"
    return "img1.png", "cannot read image", False


def case_non_square(f):
    f["img1.png"] = rgb(1, RES, RES + 4)
    f["img1_depth.png"] = np.zeros((RES, RES + 4), np.uint16)
    return "img1.png", "not square", False


def case_mixed_sizes(f):
    f["img2.png"] = rgb(2, 8)
    f["img2_depth.png"] = np.zeros((8, 8), np.uint16)
    return "img2.png", f"8x8 differs from the first image ({RES}x{RES})", False


def case_bad_json(f):
    f["dataset.json"] = b'{"labels": {"img0.png": 1,}'
    return "dataset.json", "not valid JSON", True


def case_missing_angles(f):
    del _json(f)["camera_angles"]["img2.png"]
    return "img2.png", "no camera_angles entry", True


def case_missing_labels(f):
    del _json(f)["labels"]["img0.png"]
    return "img0.png", "no labels entry", True


def case_yaw_out_of_range(f):
    _json(f)["camera_angles"]["img1.png"] = [4.0, 1.0, 0.0]
    return "dataset.json", "yaw 4 is outside [-pi, pi]", True


def case_pitch_out_of_range(f):
    _json(f)["camera_angles"]["img1.png"] = [0.5, -0.5, 0.0]
    return "dataset.json", "pitch -0.5 is outside [0, pi]", True


def case_all_zero_yaw(f):
    for a in _json(f)["camera_angles"].values():
        a[0] = 0.0
    return "dataset.json", "every yaw is zero", True


def case_all_zero_pitch(f):
    for a in _json(f)["camera_angles"].values():
        a[1] = 0.0
    return "dataset.json", "every pitch is zero", True


def case_angles_not_triples(f):
    _json(f)["camera_angles"]["img1.png"] = [0.5, 1.0]
    return "dataset.json", "expected [yaw, pitch, roll]", True


def case_float_label(f):
    _json(f)["labels"]["img1.png"] = 1.5
    return "dataset.json", "expected an integer class index, got 1.5", True


def case_bool_label(f):
    _json(f)["labels"]["img1.png"] = True
    return "dataset.json", "expected an integer class index, got true", True


def case_string_label(f):
    _json(f)["labels"]["img1.png"] = "cat"
    return "dataset.json", "expected an integer class index", True


def case_negative_label(f):
    _json(f)["labels"]["img1.png"] = -2
    return "dataset.json", "class -2 is negative", True


def case_depth_wrong_size(f):
    f["img1_depth.png"] = np.zeros((8, 8), np.uint16)
    return "img1_depth.png", f"depth map is 8x8 but its image is {RES}x{RES}", False


def case_depth_unreadable(f):
    f["img1_depth.png"] = b"garbage"
    return "img1_depth.png", "cannot read depth map", False


def case_depth_missing_for_one(f):
    del f["img2_depth.png"]
    return "img2.png", "no depth map img2_depth.png", True


def case_two_json(f):
    f["sub/dataset.json"] = {"labels": {}}
    return "sub/dataset.json", "a second dataset.json", True


def case_duplicate_names(f):
    f["img1.jpg"] = rgb(7)
    return "img1.png", "same name as img1.jpg apart from the extension", True


def case_duplicate_json_keys(f):
    _json(f)["labels"]["img1"] = 0
    return "dataset.json", "name the same image", True


CASES = [case_corrupt, case_non_square, case_mixed_sizes, case_bad_json, case_missing_angles, case_missing_labels,
         case_yaw_out_of_range, case_pitch_out_of_range, case_all_zero_yaw, case_all_zero_pitch,
         case_angles_not_triples, case_float_label, case_bool_label, case_string_label, case_negative_label,
         case_depth_wrong_size, case_depth_unreadable, case_depth_missing_for_one, case_two_json,
         case_duplicate_names, case_duplicate_json_keys]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_each_bad_input_is_a_problem_naming_its_file(tmp_path, case):
    files = _good()
    path, fragment, index_level = case(files)
    root = write_dataset(tmp_path / "bad", files)
    problems = validate_dataset(root)
    errors = [p for p in problems if p.severity == "error"]
    assert any(p.path == path and fragment in p.message for p in errors), problems
    assert all("\n" not in p.message for p in problems)
    if index_level:
        with pytest.raises(DatasetError) as exc:
            ImageDataset(root)
        assert str(exc.value).startswith(f"{root}/{path}: ") and fragment in str(exc.value)
        assert "\n" not in str(exc.value)
    else:
        ds = ImageDataset(root)        # opens; the problem surfaces when that file is read
        raw = ds.names.index(path.replace("_depth.png", ".png"))
        with pytest.raises(DatasetError) as exc:
            ds[raw]
        assert f"{root}/{path}: " in str(exc.value)


def test_a_good_dataset_has_no_problems_and_integral_floats_are_labels(tmp_path):
    files = _good()
    _json(files)["labels"]["img2.png"] = 2.0
    root = write_dataset(tmp_path / "good", files)
    assert validate_dataset(root) == []
    assert open_dataset(root).labels.tolist() == [0, 1, 2]


def test_notes_for_conversions_extra_entries_and_stray_files(tmp_path):
    files = _good()
    files["img1.png"] = np.zeros((RES, RES), np.uint8)
    _json(files)["labels"]["ghost.png"] = 1
    files["readme.txt"] = b"hi"
    files["lonely_depth.png"] = np.zeros((RES, RES), np.uint16)
    root = write_dataset(tmp_path / "notes", files)
    problems = validate_dataset(root)
    assert all(p.severity == "note" for p in problems)
    found = {(p.path, p.message.split(" ")[0]) for p in problems}
    assert ("img1.png", "grayscale") in found
    assert any(p.path == "dataset.json" and "'ghost.png' has no image" in p.message for p in problems)
    assert any(p.path == "readme.txt" for p in problems) and any(p.path == "lonely_depth.png" for p in problems)
    assert len(open_dataset(root)) == 3          # notes never stop a dataset


def test_require_camera_angles(tmp_path):
    files = _good()
    del _json(files)["camera_angles"]
    root = write_dataset(tmp_path / "noangles", files)
    assert validate_dataset(root) == []
    assert any("no camera_angles" in p.message for p in validate_dataset(root, require_camera_angles=True))
    assert not open_dataset(root).has_camera_angles
    with pytest.raises(DatasetError, match="no camera_angles in dataset.json"):
        open_dataset(root, require_camera_angles=True)


def test_partial_depth_only_matters_when_depth_is_loaded(tmp_path):
    files = _good()
    del files["img0_depth.png"]
    root = write_dataset(tmp_path / "partial", files)
    with pytest.raises(DatasetError, match="img0.png: no depth map"):
        open_dataset(root)
    assert not open_dataset(root, load_depth=False).has_depth


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p / "missing.zip", "no such file or folder"),
    (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "not a zip or a folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
    (lambda p: zipfile.ZipFile(p / "empty.zip", "w").close() or p / "empty.zip", "no images found"),
    (lambda p: write_dataset(p / "only_json", {"dataset.json": {}}), "no images found"),
])
def test_unusable_paths(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(DatasetError) as exc:
        open_dataset(path)
    assert str(exc.value) == f"{path}: {fragment}"
    if fragment == "no images found":
        assert [(p.path, p.message) for p in validate_dataset(path)][:1] == [(str(path), fragment)]
    else:
        with pytest.raises(DatasetError):
            validate_dataset(path)


# ----------------------------------------------------------------------------------------------
# trigan dataset check

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_exit_status_and_output(tmp_path, capsys):
    good = write_dataset(tmp_path / "good.zip", _good())
    code, out, _ = run(capsys, "dataset", "check", str(good))
    assert code == 0
    lines = out.strip().splitlines()        # the pose distribution's lines, then the summary line
    assert lines[-1] == f"{good}: 3 images, {RES}x{RES}, 2 classes, depth yes, camera angles yes: 0 errors, 0 notes"
    assert lines[:-1] and all(line.startswith("poses: ") for line in lines[:-1])
    files = _good()
    case_corrupt(files)
    case_negative_label(files)
    files["img2.png"] = np.zeros((RES, RES), np.uint8)
    bad = write_dataset(tmp_path / "bad", files)
    code, out, _ = run(capsys, "dataset", "check", str(bad))
    lines = out.strip().splitlines()
    assert code == 1
    assert "img1.png: error: cannot read image" in out and "dataset.json: error: labels['img1.png']: class -2" in out
    assert "img2.png: note: grayscale" in out
    assert lines[-1].endswith("2 errors, 1 note") and "Traceback" not in out


def test_check_of_a_missing_path_is_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "dataset", "check", str(tmp_path / "nope.zip"))
    assert code == 2 and out == "" and err == f"trigan: error: {tmp_path / 'nope.zip'}: no such file or folder\n"


# ----------------------------------------------------------------------------------------------
# trigan dataset resize

def test_resize_crops_the_centre_converts_and_keeps_16_bit_depth(tmp_path):
    wide = np.zeros((32, 48, 4), np.uint8)
    wide[..., 3] = 255
    wide[:, :8, 0] = 255                          # red strips left and right: cropped away
    wide[:, 40:, 0] = 255
    wide[:, 8:40, 1] = 200                        # the green centre stays
    wide[:4, 8:40, 3] = 0                         # a transparent top band: white after compositing
    depth = np.full((32, 48), 50000, np.uint16)
    depth[:, 24:] = 60000
    depth8 = np.full((32, 48), 100, np.uint8)
    files = {"a.png": wide, "a_depth.png": depth, "b.bmp": rgb(3, 20), "b_depth.png": depth8[:20, :20],
             "dataset.json": {"labels": {"a.png": 0, "b.bmp": 1}}, "notes.txt": b"x"}
    src = write_dataset(tmp_path / "src", files)
    info = resize_dataset(src, tmp_path / "out.zip", 16, progress=False)
    assert info == {"path": str(tmp_path / "out.zip"), "resolution": 16, "images": 2, "depth": 2, "skipped": 1}
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert sorted(zf.namelist()) == ["a.png", "a_depth.png", "b.png", "b_depth.png", "dataset.json"]
        a = np.asarray(Image.open(io.BytesIO(zf.read("a.png"))))
        ad = np.asarray(Image.open(io.BytesIO(zf.read("a_depth.png"))))
        bd = np.asarray(Image.open(io.BytesIO(zf.read("b_depth.png"))))
        assert json.loads(zf.read("dataset.json")) == files["dataset.json"]
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    assert a[4:, :, 0].max() <= 3 and abs(int(a[8, 8, 1]) - 200) <= 3            # no red: the centre crop
    assert (a[0, :] >= 250).all()                                                # transparent -> white
    assert ad.dtype == np.uint16 and ad.shape == (16, 16)
    assert ad[:, :7].tolist() == [[50000] * 7] * 16 and ad[:, 9:].tolist() == [[60000] * 7] * 16
    assert bd.dtype == np.uint16 and (bd == 25600).all()                         # 8-bit x 256
    ds = open_dataset(tmp_path / "out.zip")
    assert ds.resolution == 16 and ds.labels.tolist() == [0, 1] and ds.has_depth


def test_resize_into_a_folder_with_png_and_refusals(tmp_path, capsys):
    src = write_dataset(tmp_path / "src.zip", {"x.jpg": rgb(0, 24), "y.png": rgb(1, 24)})
    dst = tmp_path / "small"
    code, out, _ = run(capsys, "dataset", "resize", str(src), str(dst), "--resolution", "8", "--png")
    assert code == 0 and "wrote" in out and sorted(p.name for p in dst.iterdir()) == ["x.png", "y.png"]
    code, _, err = run(capsys, "dataset", "resize", str(src), str(dst), "--resolution", "8")
    assert code == 2 and err == f"trigan: error: {dst}: already exists (use --force to overwrite)\n"
    code, _, err = run(capsys, "dataset", "resize", str(tmp_path / "none"), str(tmp_path / "o.zip"), "--resolution", "8")
    assert code == 2 and "none: no such file or folder" in err and err.count("\n") == 1
    assert run(capsys, "dataset", "resize", str(src), str(dst), "--resolution", "4", "--force")[0] == 0
    assert Image.open(dst / "x.jpg").size == (4, 4)                            # JPEG stays JPEG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small", "src.zip"]


def test_resize_stops_on_a_broken_image_and_leaves_nothing(tmp_path, capsys):
    src = write_dataset(tmp_path / "src", {"a.png": rgb(0), "b.png": b"broken"})
    code, _, err = run(capsys, "dataset", "resize", str(src), str(tmp_path / "o.zip"), "--resolution", "8")
    assert code == 2 and "b.png: cannot read image" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# ----------------------------------------------------------------------------------------------
# trigan dataset pack

def test_pack_round_trips_and_is_reproducible(tmp_path, capsys):
    files = _good()
    files["sub/img9.png"] = rgb(9)
    files["sub/img9_depth.png"] = depth16(9)
    _json(files)["camera_angles"]["sub/img9.png"] = [0.1, 1.0, 0.0]
    _json(files)["labels"]["sub/img9"] = 1
    files["extra.txt"] = b"not packed"
    folder = write_dataset(tmp_path / "data", files)
    code, out, _ = run(capsys, "dataset", "pack", str(folder), str(tmp_path / "data.zip"))
    assert code == 0 and "4 images, 4 depth maps, dataset.json, 1 other files left out" in out
    assert_same_items(items(open_dataset(folder, mirror=True)), items(open_dataset(tmp_path / "data.zip", mirror=True)))
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        names = zf.namelist()
    assert names == sorted(names) and "extra.txt" not in names
    pack_dataset(folder, tmp_path / "again.zip", progress=False)
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "data.zip").read_bytes()


def test_pack_refuses_index_errors_unless_no_check(tmp_path, capsys):
    files = _good()
    case_negative_label(files)
    folder = write_dataset(tmp_path / "bad", files)
    code, _, err = run(capsys, "dataset", "pack", str(folder), str(tmp_path / "bad.zip"))
    assert code == 2 and err.count("\n") == 1 and "class -2 is negative" in err and not (tmp_path / "bad.zip").exists()
    assert run(capsys, "dataset", "pack", str(folder), str(tmp_path / "bad.zip"), "--no-check")[0] == 0
    code, _, err = run(capsys, "dataset", "pack", str(folder), str(tmp_path / "bad.zip"), "--no-check")
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "dataset", "pack", str(tmp_path / "bad.zip"), str(tmp_path / "x.zip"))
    assert code == 2 and "already a zip" in err
    code, _, err = run(capsys, "dataset", "pack", str(tmp_path / "missing"), str(tmp_path / "x.zip"))
    assert code == 2 and "missing: no such file or folder" in err and "Traceback" not in err


def test_dataset_help_has_examples(capsys):
    for argv in (["dataset", "--help"], ["dataset", "synth", "--help"], ["dataset", "check", "--help"],
                 ["dataset", "resize", "--help"], ["dataset", "pack", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0 and "examples:" in capsys.readouterr().out
