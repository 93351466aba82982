"""Feature files for distillation: extraction with a pluggable extractor, the memmap + json index
round trip (3DGP's format), lookup by image name (mirrored items included), errors, and the
`trigan dataset features` command's one-line failures."""

import io
import json
import os
import shutil
import sys
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train_helpers import write_tiny_dataset
from trigan.cli.main import main
from trigan.training.dataset import open_dataset
from trigan.training.feature_extraction import (
    FeatureExtractionError,
    extract_dataset_features,
    read_state_dict,
    to_unit_tensor,
)
from trigan.training.feature_store import (
    DatasetFeatures,
    FeatureStore,
    FeatureStoreError,
    desc_path,
    write_feature_store,
)


def colour_stats(images: torch.Tensor) -> torch.Tensor:
    """The stand-in extractor: per-channel mean and standard deviation, [N, 6]."""
    return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def colour_stats_numpy(path: Path) -> np.ndarray:
    """The same features computed independently from the file with numpy."""
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return np.concatenate([x.mean(axis=(0, 1)), x.std(axis=(0, 1), ddof=1)])


@pytest.fixture()
def data(tmp_path):
    folder = write_tiny_dataset(tmp_path / "squares", num=7)
    # a sub-folder, so that keys are relative paths, not bare file names
    (folder / "more").mkdir()
    shutil.copy(folder / "img0000.png", folder / "more" / "extra.png")
    meta = json.loads((folder / "dataset.json").read_text())
    meta["camera_angles"]["more/extra.png"] = meta["camera_angles"]["img0000.png"]
    meta["labels"]["more/extra.png"] = 0
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def test_written_features_read_back_equal_the_extractor_output_keyed_by_image_name(tmp_path, data):
    out = tmp_path / "feats.memmap"
    info = extract_dataset_features(data, out, colour_stats, batch_size=3)
    assert info["images"] == 8 and info["dim"] == 6 and Path(info["index"]) == tmp_path / "feats_desc.json"
    store = FeatureStore(out)
    ds = open_dataset(data)
    assert sorted(store.index) == sorted(ds.names) and "more/extra.png" in store.index
    for name in ds.names:
        np.testing.assert_allclose(store.read([store.row(name)])[0], colour_stats_numpy(data / name), atol=1e-5)
    # the index is 3DGP's desc json: shape and filepath_to_idx
    desc = json.loads((tmp_path / "feats_desc.json").read_text())
    assert desc["shape"] == [8, 6] and desc["filepath_to_idx"] == {n: i for i, n in enumerate(ds.names)}
    assert out.stat().st_size == 8 * 6 * 4                                  # raw float32, nothing else


def left_right_means(images: torch.Tensor) -> torch.Tensor:
    """A stand-in extractor that a left-right flip changes: mean colour of the left and right halves."""
    w = images.shape[-1] // 2
    return torch.cat([images[..., :w].mean(dim=(2, 3)), images[..., w:].mean(dim=(2, 3))], dim=1)


def test_mirrored_items_get_the_features_of_their_source_image(tmp_path, data):
    out = tmp_path / "f.memmap"
    extract_dataset_features(data, out, left_right_means)
    ds = open_dataset(data, mirror=True)
    feats = DatasetFeatures(FeatureStore(out), ds)
    n = len(ds.names)
    got = feats(np.arange(2 * n))
    differs = 0
    for i in range(2 * n):
        item = ds[i]
        source = ds.load_image(i % n)                                       # the unflipped image
        want = left_right_means(torch.from_numpy(source.transpose(2, 0, 1)[None].copy()).float() / 255)[0]
        np.testing.assert_allclose(got[i], want.numpy(), atol=1e-5)
        shown = left_right_means(item["image"][None].float() / 255)[0]     # what the item itself shows
        differs += i >= n and not np.allclose(got[i], shown.numpy(), atol=1e-4)
    assert differs > 0                                                      # flipped items really differ


def test_a_folder_s_features_serve_the_zip_packed_from_it_and_renamed_extensions(tmp_path, data):
    out = tmp_path / "f.memmap"
    extract_dataset_features(data, out, colour_stats)
    # a zip whose entries carry the dataset's name as a root folder
    zpath = tmp_path / "squares.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(data.rglob("*")):
            if p.is_file():
                z.write(p, "squares/" + p.relative_to(data).as_posix())
    ds = open_dataset(zpath)
    assert ds.names[0].startswith("squares/")
    rows = FeatureStore(out).rows_for_dataset(ds)
    store = FeatureStore(out)
    assert [store.index[n[len("squares/"):]] for n in ds.names] == rows.tolist()
    # .png -> .jpg (e.g. after a resize) still finds the row by the name without its extension
    assert store.rows_for(["more/extra.jpg"]).tolist() == [store.index["more/extra.png"]]


def test_files_in_3dgps_format_are_read(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    mm = np.memmap(tmp_path / "emb.memmap", dtype=np.float32, mode="w+", shape=(3, 4))
    mm[:] = rows
    mm.flush()
    del mm
    (tmp_path / "emb_desc.json").write_text(json.dumps({"shape": [3, 4], "filepath_to_idx":
                                                        {"n01/a.JPEG": 2, "n01/b.JPEG": 0, "n02/c.JPEG": 1}}))
    store = FeatureStore(tmp_path / "emb.memmap")
    np.testing.assert_array_equal(store.read(store.rows_for(["n01/a.JPEG", "n02/c.JPEG"])), rows[[2, 1]])


def test_write_then_read_round_trip_and_atomic_replacement(tmp_path):
    gen = np.random.RandomState(0)
    feats = gen.randn(5, 3).astype(np.float32)
    names = [f"a/{i}.png" for i in range(5)]
    write_feature_store(tmp_path / "x.memmap", names, feats)
    np.testing.assert_array_equal(FeatureStore(tmp_path / "x.memmap").read(range(5)), feats)
    assert desc_path(tmp_path / "x.memmap") == tmp_path / "x_desc.json"
    assert desc_path(tmp_path / "x.bin") == tmp_path / "x.bin_desc.json"

    def failing(images):
        raise RuntimeError("extractor broke")

    data = write_tiny_dataset(tmp_path / "d", num=4)
    with pytest.raises(RuntimeError, match="extractor broke"):
        extract_dataset_features(data, tmp_path / "x.memmap", failing, force=True)
    # the earlier file is intact, and no temporary file is left behind
    np.testing.assert_array_equal(FeatureStore(tmp_path / "x.memmap").read(range(5)), feats)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["x.memmap", "x_desc.json"]


def test_bad_files_and_missing_images_give_one_line_errors(tmp_path, data):
    out = tmp_path / "f.memmap"
    extract_dataset_features(data, out, colour_stats)
    with pytest.raises(FeatureExtractionError, match="exists.*--force"):
        extract_dataset_features(data, out, colour_stats)
    with pytest.raises(FeatureExtractionError, match=r"returned \[4\] for"):
        extract_dataset_features(data, tmp_path / "g.memmap", lambda x: x.mean(dim=(1, 2, 3)), batch_size=4)
    other = write_tiny_dataset(tmp_path / "other", num=9)               # img0007, img0008 are new
    with pytest.raises(FeatureStoreError, match=r"no features for image 'img0007.png' \(and 1 more\)") as err:
        FeatureStore(out).rows_for_dataset(open_dataset(other))
    assert "\n" not in str(err.value)
    with open(out, "r+b") as f:                                             # truncate the rows
        f.truncate(10)
    with pytest.raises(FeatureStoreError, match="10 bytes.*8 x 6"):
        FeatureStore(out)
    (tmp_path / "f_desc.json").unlink()
    with pytest.raises(FeatureStoreError, match="f_desc.json: missing"):
        FeatureStore(out)
    with pytest.raises(FeatureStoreError, match="no such features file"):
        FeatureStore(tmp_path / "nothing.memmap")


def test_default_transform_and_state_dict_reading(tmp_path):
    img = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    np.testing.assert_allclose(to_unit_tensor(img).flatten().numpy(), [0.0, 1.0, 0.2], atol=1e-7)
    torch.save({"state_dict": {"module.conv1.weight": torch.ones(2), "fc.bias": torch.zeros(1)}}, tmp_path / "w.pth")
    state = read_state_dict(tmp_path / "w.pth")
    assert set(state) == {"conv1.weight", "fc.bias"} and torch.equal(state["conv1.weight"], torch.ones(2))
    # torch's legacy format (before 1.6; older torchvision weights files) reads the same.
    torch.save({"model": {"conv1.weight": torch.ones(2)}}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(read_state_dict(tmp_path / "old.pth")["conv1.weight"], torch.ones(2))



def test_a_weights_file_is_read_within_the_checkpoint_budgets(tmp_path):
    # torch.save keeps shared lists shared: 40 levels of [x, x] is a 1 KB file whose tree has 2^40
    # leaves. A walk of the loaded data would never end; the reader's budget refuses it in one line.
    laughs = [0]
    for _ in range(40):
        laughs = [laughs, laughs]
    torch.save({"state_dict": {"conv1.weight": torch.ones(2)}, "extra": laughs}, tmp_path / "bomb.pth")
    with pytest.raises(FeatureExtractionError, match="refuses to load") as info:
        read_state_dict(tmp_path / "bomb.pth")
    assert "--weights" in str(info.value) and "bomb.pth" in str(info.value) and "\n" not in str(info.value)
    # A named pipe is refused without blocking on it.
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.pth")
        with pytest.raises(FeatureExtractionError, match="not a regular file"):
            read_state_dict(tmp_path / "pipe.pth")


# ---------------------------------------------------------------------------------------------
# The command line

def _cli(*args):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["dataset", *args])
    return code, err.getvalue()


def test_features_command_without_weights_or_timm_fails_in_one_line(tmp_path, data, monkeypatch):
    out = tmp_path / "f.memmap"
    code, err = _cli("features", str(data), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and "--weights PATH is required" in err
    code, err = _cli("features", str(data), "--out", str(out), "--weights", str(tmp_path / "missing.pth"))
    assert code == 2 and err.count("\n") == 1 and "missing.pth: no such file" in err
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "timm", None)                         # as if timm were not installed
    code, err = _cli("features", str(data), "--out", str(out), "--weights", str(tmp_path / "w.pth"))
    assert code == 2 and err.count("\n") == 1 and "cannot import timm" in err and "pip install timm" in err
    assert not out.exists()


def test_features_command_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "features", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "trigan dataset features" in text and "--weights" in text


def test_an_unwritable_features_file_is_one_line_naming_it_and_keeps_the_old_one(tmp_path, monkeypatch):
    names = ["a.png", "b.png"]
    # A folder that cannot exist (its parent is a regular file): refused at once, root or not.
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "features.memmap"
    with pytest.raises(FeatureStoreError, match="cannot write") as info:
        write_feature_store(target, names, np.ones((2, 3)))
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    # A full disk while flushing the rows: the earlier file and its index stay as they were.
    good = write_feature_store(tmp_path / "f.memmap", names, np.ones((2, 3)))
    before = (good.read_bytes(), desc_path(good).read_text())

    def full_disk(self):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np.memmap, "flush", full_disk)
    with pytest.raises(FeatureStoreError, match="No space left") as info:
        write_feature_store(good, names, np.zeros((2, 3)))
    assert str(good) in str(info.value)
    monkeypatch.undo()
    assert (good.read_bytes(), desc_path(good).read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.memmap", desc_path(good).name, "file"]
