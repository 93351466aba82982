"""Instance selection: the Gaussian against scipy, planted outliers, per-class and per-folder
fractions, the embedders, and `trigan dataset select` (valid output with the kept entries, atomic,
no overwrite without --force, one-line errors)."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import multivariate_normal

from trigan.cli.main import main
from trigan.training import dataset_tools
from trigan.training.dataset import open_dataset, validate_dataset
from trigan.training.instance_selection import (
    SelectionError,
    TinyEmbedder,
    embed_dataset,
    fit_gaussian,
    gaussian_log_density,
    keep_count,
    load_embedder,
    select_dataset,
    select_indices,
)

# ---------------------------------------------------------------------------------------------------
# The density model

@pytest.mark.parametrize("reg", [0.0, 1e-3])
def test_log_density_matches_scipy_with_the_maximum_likelihood_covariance(reg):
    rng = np.random.RandomState(0)
    x = rng.randn(40, 4) @ rng.randn(4, 4) + rng.randn(4)
    cov = np.cov(x.T, bias=True) + reg * np.eye(4)          # MLE (divided by N), like GaussianMixture
    expected = multivariate_normal(mean=x.mean(axis=0), cov=cov).logpdf(x)
    np.testing.assert_allclose(gaussian_log_density(x, reg_covar=reg), expected, rtol=1e-10)
    # ... and at points that were not fitted.
    y = rng.randn(5, 4) * 3
    np.testing.assert_allclose(fit_gaussian(x, reg).log_density(y),
                               multivariate_normal(mean=x.mean(axis=0), cov=cov).logpdf(y), rtol=1e-10)


def test_a_singular_covariance_asks_for_regularisation():
    x = np.random.RandomState(1).randn(3, 6)                 # 3 points in 6-d span a plane
    with pytest.raises(SelectionError, match="--reg-covar"):
        gaussian_log_density(x, reg_covar=0.0)
    assert np.isfinite(gaussian_log_density(x, reg_covar=1e-5)).all()


def test_planted_outliers_are_dropped_first():
    rng = np.random.RandomState(2)
    cluster = rng.randn(60, 5)
    outliers = 10 * np.eye(5)[:4] + rng.randn(4, 5) * 0.1    # far from the cluster, each in its own direction
    emb = np.concatenate([cluster[:30], outliers, cluster[30:]])
    planted = np.arange(30, 34)
    kept, scores = select_indices(emb, num=60)
    assert np.array_equal(kept, np.setdiff1d(np.arange(64), planted))
    assert set(np.argsort(scores)[:4]) == set(planted)
    kept, _ = select_indices(emb, keep_ratio=0.5)
    assert len(kept) == 32 and not set(kept) & set(planted)


def test_per_class_selection_keeps_the_fraction_of_each_class_by_its_own_gaussian():
    rng = np.random.RandomState(3)
    sizes = {0: 10, 1: 21, 2: 7}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    rng.shuffle(labels)
    emb = rng.randn(len(labels), 3) + labels[:, None] * 4.0
    kept, scores = select_indices(emb, keep_ratio=0.5, groups=labels, reg_covar=0.0)
    for c, n in sizes.items():
        members = np.flatnonzero(labels == c)
        assert np.sum(labels[kept] == c) == int(n * 0.5)
        ref = multivariate_normal(emb[members].mean(axis=0), np.cov(emb[members].T, bias=True)).logpdf(emb[members])
        np.testing.assert_allclose(scores[members], ref, rtol=1e-10)
        top = members[np.argsort(-ref)[: int(n * 0.5)]]
        assert set(top) == set(kept[labels[kept] == c])
    kept, _ = select_indices(emb, num=8, groups=labels)           # --num is per group, capped at its size
    assert [int(np.sum(labels[kept] == c)) for c in sizes] == [8, 8, 7]


def test_keep_count():
    assert keep_count(1300, keep_ratio=1 / 3) == 433                 # int(), as upstream
    assert keep_count(2, keep_ratio=0.1) == 1                         # never a whole group dropped
    assert keep_count(5, num=9) == 5 and keep_count(5, keep_ratio=1.0) == 5
    for kwargs, match in (({"keep_ratio": 0.0}, "keep-ratio"), ({"keep_ratio": 1.5}, "keep-ratio"),
                          ({"num": 0}, "--num"), ({}, "exactly one"), ({"keep_ratio": 0.5, "num": 3}, "exactly one")):
        with pytest.raises(SelectionError, match=match):
            keep_count(10, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Embedders

def test_the_tiny_embedder_is_the_block_mean_thumbnail():
    images = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    emb = TinyEmbedder(8)(images)
    blocks = images.double().numpy().reshape(2, 3, 8, 4, 8, 4).mean(axis=(3, 5)) / 255
    np.testing.assert_allclose(emb.numpy(), blocks.reshape(2, -1), rtol=1e-12)
    assert load_embedder("tiny").feature_dim == 192 and load_embedder("tiny:4").feature_dim == 48
    with pytest.raises(SelectionError, match="tiny:N"):
        load_embedder("tiny:x")


class _StandInNetwork(torch.nn.Module):
    """A TorchScript feature network with the Inception detector's calling convention."""

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 2).flatten(1)


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "standin.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_StandInNetwork()), str(path))
    return path


# ---------------------------------------------------------------------------------------------------
# Datasets and the command

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "shapes.zip"
    assert main(["dataset", "synth", str(out), "--num", "20", "--resolution", "16", "--classes", "2"]) == 0
    return out


def _json(path: Path) -> dict:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("dataset.json"))
    return json.loads((path / "dataset.json").read_text())


def _read(path: Path, rel: str) -> bytes:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            return zf.read(rel)
    return (path / rel).read_bytes()


@pytest.mark.parametrize("out_name", ["selected.zip", "selected_folder"])
def test_select_writes_a_valid_dataset_with_the_kept_entries(shapes, tmp_path, out_name, capsys):
    dst = tmp_path / out_name
    assert main(["dataset", "select", str(shapes), str(dst), "--keep-ratio", "0.5", "--per-class"]) == 0
    assert "kept 10 of 20 images and 10 depth maps in 2 class groups" in capsys.readouterr().out
    assert [p for p in validate_dataset(dst) if p.severity == "error"] == []
    src_ds, out_ds = open_dataset(shapes), open_dataset(dst)
    assert len(out_ds) == 10 and out_ds.has_depth and out_ds.has_camera_angles
    assert sorted(np.bincount(out_ds.labels).tolist()) == [5, 5]          # half of each class
    # The kept images are the ones the library picks from the same embeddings.
    kept, _ = select_indices(embed_dataset(src_ds, TinyEmbedder()), keep_ratio=0.5, groups=src_ds.labels)
    assert out_ds.names == [src_ds.names[i] for i in kept]
    src_json, out_json = _json(shapes), _json(dst)
    src_labels = dict(src_json["labels"])
    assert out_json["labels"] == [[name, src_labels[name]] for name in out_ds.names]   # list form kept
    assert out_json["camera_angles"] == {name: src_json["camera_angles"][name] for name in out_ds.names}
    for key in ("class_names", "depth_range", "camera"):
        assert out_json[key] == src_json[key]
    assert out_json["instance_selection"]["kept"] == 10 and out_json["instance_selection"]["per"] == "class"
    for name in out_ds.names:                                                # files copied byte for byte
        depth = name[:-4] + "_depth.png"
        assert _read(dst, name) == _read(shapes, name) and _read(dst, depth) == _read(shapes, depth)


def test_select_refuses_to_overwrite_without_force_and_is_atomic(shapes, tmp_path, monkeypatch, capsys):
    dst = tmp_path / "sel.zip"
    assert main(["dataset", "select", str(shapes), str(dst), "--num", "4"]) == 0
    capsys.readouterr()
    before = dst.read_bytes()
    assert main(["dataset", "select", str(shapes), str(dst), "--num", "6"]) == 2
    err = capsys.readouterr().err
    assert "already exists (use --force" in err and len(err.strip().splitlines()) == 1
    assert dst.read_bytes() == before
    # A failure while writing leaves the old output as it was and no temporary files.

    def broken(self, rel, data):
        raise OSError("disk full")
    monkeypatch.setattr(dataset_tools.OutputWriter, "write", broken)
    with pytest.raises(OSError):
        select_dataset(shapes, dst, num=6, force=True, progress=False)
    assert dst.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["sel.zip"]
    monkeypatch.undo()
    assert main(["dataset", "select", str(shapes), str(dst), "--num", "6", "--force"]) == 0
    assert len(open_dataset(dst)) == 6


def test_per_folder_selection_and_a_feature_network_embedder(tmp_path, network_file):
    src = tmp_path / "folders"
    rng = np.random.RandomState(4)
    labels = {}
    for folder, count in (("cats", 9), ("dogs", 4)):
        (src / folder).mkdir(parents=True)
        for i in range(count):
            img = np.full((8, 8, 3), 100, np.uint8) + rng.randint(0, 20, (8, 8, 3)).astype(np.uint8)
            if folder == "cats" and i == 3:
                img[:] = 255                                                    # the odd one out
            Image.fromarray(img).save(src / folder / f"{i}.png")
            labels[f"{folder}/{i}.png"] = int(folder == "dogs")
    (src / "dataset.json").write_text(json.dumps({"labels": labels}))
    info = select_dataset(src, tmp_path / "out", keep_ratio=0.5, per="folder", embedder=str(network_file),
                          reg_covar=1e-3, progress=False)
    assert info["groups"] == {"cats": (4, 9), "dogs": (2, 4)}
    assert "cats/3.png" not in info["kept_images"]
    out = open_dataset(tmp_path / "out")
    assert out.names == info["kept_images"] and out.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert _json(tmp_path / "out")["labels"] == {name: labels[name] for name in out.names}   # dict form kept


def test_select_errors_are_one_line(shapes, tmp_path, capsys):
    def error(*argv) -> str:
        assert main(["dataset", "select", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("trigan: error: ")
        return err
    assert "no such file or folder" in error(str(tmp_path / "missing.zip"), str(tmp_path / "o.zip"), "--num", "2")
    assert "--keep-ratio 1.5" in error(str(shapes), str(tmp_path / "o.zip"), "--keep-ratio", "1.5")
    unlabelled = tmp_path / "plain"
    unlabelled.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(unlabelled / f"{i}.png")
    assert "needs labels" in error(str(unlabelled), str(tmp_path / "o.zip"), "--num", "1", "--per-class")
    assert "inside the input" in error(str(unlabelled), str(unlabelled / "sub"), "--num", "1")
    assert "no such file" in error(str(shapes), str(tmp_path / "o.zip"), "--num", "2", "--embedder", "nope.pt")
    assert not (tmp_path / "o.zip").exists()
    with pytest.raises(SystemExit):                                          # exactly one of --num/--keep-ratio
        main(["dataset", "select", str(shapes), str(tmp_path / "o.zip")])


def test_select_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["dataset", "select", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--per-class" in out and "--embedder" in out
