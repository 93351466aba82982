"""`trigan metrics`: names, the feature-network requirement, caching, snapshots of a run, output
formats and metrics.jsonl, NFS of models, datasets and depth folders."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.cli.main import main
from trigan.cli.metrics import default_cache_dir, parse_names, snapshot_files
from trigan.core import metrics
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.core.metrics import INCEPTION_URL, FeatureExtractor, MetricError, compute_metric
from trigan.core.model_io import open_model
from trigan.core.nfs import dataset_nfs
from trigan.training.dataset import open_dataset
from trigan.training.evaluation import dataset_conditioning

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


class _StandInInception(torch.nn.Module):
    """A tiny TorchScript feature network with the detector's calling convention."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(48, 12, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1)
        return pooled @ self.proj


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A synthesized dataset, a stand-in detector and a run directory with three different snapshots."""
    root = tmp_path_factory.mktemp("metrics_cli")
    data = root / "shapes.zip"
    assert main(["dataset", "synth", str(data), "--num", "8", "--resolution", "16", "--classes", "4"]) == 0
    net = root / "standin.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_StandInInception()), str(net))
    cfg = tiny_config(**{"model.c_dim": 4})
    run = root / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "status.json").write_text("{}")
    for seed, name, nimg in ((1, "latest.ckpt", 3000), (2, "best.ckpt", 2000), (3, "snapshots/early.ckpt", 1000)):
        torch.manual_seed(seed)
        save_checkpoint(run / name, cfg, Generator(cfg.model), progress={"cur_nimg": nimg})
    return dict(root=root, data=data, net=net, run=run, cfg=cfg)


@pytest.fixture(autouse=True)
def _small_metrics(monkeypatch, tmp_path):
    monkeypatch.setitem(metrics.METRICS, "fid2k_full", dict(kind="fid", num_fake=12, max_real=None))
    monkeypatch.setitem(metrics.METRICS, "kid2k_full", dict(kind="kid", num_fake=12, max_real=None,
                                                            num_subsets=5, max_subset_size=8))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _fresh_run(files, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    return run


# ---------------------------------------------------------------------------------------------------
# Names and requirements

def test_metric_names_with_aliases_and_nfs():
    assert parse_names("fid2k,fid50k,kid,nfs") == (["fid2k_full", "fid50k", "kid50k_full"], {"nfs256": 256}, False)
    assert parse_names("FID, kid2k, nfs16, nfs_data, fid50k_full") == (
        ["fid50k_full", "kid2k_full"], {"nfs16": 16}, True)
    with pytest.raises(MetricError, match="unknown metric 'fdi'.*nfs_data"):
        parse_names("fdi")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["metrics", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--all-snapshots" in out and "nfs_data" in out


def test_fid_without_a_feature_network_says_where_to_get_it(files, capsys):
    code = main(["metrics", str(files["run"] / "best.ckpt"), "--data", str(files["data"]), "--metrics", "fid2k"])
    err = capsys.readouterr().err
    assert code == 2 and "--inception PATH" in err and INCEPTION_URL in err and len(err.strip().splitlines()) == 1
    code = main(["metrics", str(files["run"] / "best.ckpt"), "--data", str(files["data"]), "--metrics", "fid2k",
                 "--inception", str(files["root"] / "missing.pt")])
    assert code == 2 and "no such file" in capsys.readouterr().err


def test_bad_requests_are_one_line_errors(files, capsys):
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--metrics", "fid2k",
                 "--inception", str(files["net"])]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["metrics", "--metrics", "nfs"]) == 2
    assert "checkpoint or run directory" in capsys.readouterr().err
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--metrics", "fid1k"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["metrics", str(files["root"] / "nothing.ckpt"), "--metrics", "nfs8"]) == 2
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# FID / KID of one checkpoint

def test_fid_and_kid_of_a_checkpoint_match_the_core_metric_and_are_cached(files, tmp_path, capsys):
    ckpt = files["run"] / "best.ckpt"
    cache = tmp_path / "cache"
    args = ["metrics", str(ckpt), "--data", str(files["data"]), "--metrics", "fid2k,kid2k",
            "--inception", str(files["net"]), "--cache", str(cache), "--json", "--device", "cpu", "--no-log"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    (result,) = report["results"]
    assert result["snapshot"] == "best.ckpt" and result["kimg"] == pytest.approx(2.0)
    G = open_model(ckpt).G
    ds = open_dataset(files["data"])
    expected = compute_metric("fid2k_full", G, ds, FeatureExtractor.load(files["net"]),
                              conditioning=dataset_conditioning(G, ds), resolution=ds.resolution)
    assert result["metrics"]["fid2k_full"] == pytest.approx(expected, rel=1e-9)
    assert np.isfinite(result["metrics"]["kid2k_full"])
    cached = sorted(cache.glob("*.npz"))
    assert len(cached) == 2       # FID statistics and KID features of the reals
    # Again: the same numbers, read from the same cache files.
    stamps = [p.stat().st_mtime_ns for p in cached]
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)["results"][0]["metrics"]
    assert again == result["metrics"]
    assert [p.stat().st_mtime_ns for p in sorted(cache.glob("*.npz"))] == stamps
    # A mirrored dataset is another dataset: its statistics are cached separately.
    assert main(args + ["--mirror", "--metrics", "fid2k"]) == 0
    capsys.readouterr()
    assert len(list(cache.glob("*.npz"))) == 3


def test_the_default_cache_is_under_xdg_cache_home(files, tmp_path, capsys):
    assert default_cache_dir() == tmp_path / "xdg" / "trigan" / "metrics"
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--data", str(files["data"]), "--metrics", "fid2k",
                 "--inception", str(files["net"]), "--no-log", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "fid2k_full" in out.splitlines()[0] and "best.ckpt" in out
    assert len(list((tmp_path / "xdg" / "trigan" / "metrics").glob("*.npz"))) == 1


# ---------------------------------------------------------------------------------------------------
# Run directories

def test_snapshot_files_finds_every_checkpoint_but_temporaries(files, tmp_path):
    run = _fresh_run(files, tmp_path)
    (run / ".latest.ckpt.abc123.tmp").write_bytes(b"")
    (run / "snapshots" / ".x.ckpt").write_bytes(b"")
    names = [p.relative_to(run).as_posix() for p in snapshot_files(run)]
    assert names == ["latest.ckpt", "best.ckpt", "snapshots/early.ckpt"]


def test_all_snapshots_of_a_run_are_scored_logged_and_the_best_reported(files, tmp_path, capsys):
    run = _fresh_run(files, tmp_path)
    (run / "metrics.jsonl").write_text(json.dumps({"kimg": 1.0, "fid2k_full": 99.0}) + "\n")
    assert main(["metrics", str(run), "--all-snapshots", "--data", str(files["data"]), "--metrics", "fid2k,nfs8",
                 "--inception", str(files["net"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_name = {r["snapshot"]: r for r in report["results"]}
    assert set(by_name) == {"latest.ckpt", "best.ckpt", "snapshots/early.ckpt"}
    fids = {k: r["metrics"]["fid2k_full"] for k, r in by_name.items()}
    assert len(set(fids.values())) == 3                         # three different generators
    best = min(fids, key=fids.get)
    assert report["best"]["snapshot"] == best and report["best"]["metric"] == "fid2k_full"
    assert report["best"]["value"] == pytest.approx(fids[best])
    assert all(1.0 <= r["metrics"]["nfs8"] <= 64.0 for r in report["results"])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"kimg": 1.0, "fid2k_full": 99.0}          # appended, never rewritten
    logged = {x["snapshot"]: x for x in lines[1:]}
    assert set(logged) == set(by_name)
    assert logged["snapshots/early.ckpt"]["kimg"] == pytest.approx(1.0)
    assert logged["latest.ckpt"]["fid2k_full"] == pytest.approx(fids["latest.ckpt"])
    assert set(logged["best.ckpt"]) == {"kimg", "fid2k_full", "nfs8", "snapshot"}


def test_a_run_directory_means_best_else_latest(files, tmp_path, capsys):
    run = _fresh_run(files, tmp_path)
    common = ["--metrics", "nfs4", "--json", "--quiet"]
    assert main(["metrics", str(run)] + common) == 0
    assert [r["snapshot"] for r in json.loads(capsys.readouterr().out)["results"]] == ["best.ckpt"]
    assert main(["metrics", str(run), "--latest"] + common) == 0
    assert [r["snapshot"] for r in json.loads(capsys.readouterr().out)["results"]] == ["latest.ckpt"]
    (run / "best.ckpt").unlink()
    assert main(["metrics", str(run), "--no-log"] + common) == 0
    assert [r["snapshot"] for r in json.loads(capsys.readouterr().out)["results"]] == ["latest.ckpt"]
    logged = [json.loads(x)["snapshot"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == ["best.ckpt", "latest.ckpt"]                  # --no-log wrote nothing
    # A checkpoint file inside a run is logged to that run too.
    assert main(["metrics", str(run / "snapshots" / "early.ckpt")] + common) == 0
    capsys.readouterr()
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["snapshot"] == "snapshots/early.ckpt"


def test_all_snapshots_needs_a_run_directory(files, capsys):
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--all-snapshots", "--metrics", "nfs4"]) == 2
    assert "run directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# NFS

def test_nfs_of_a_model_needs_neither_dataset_nor_feature_network(files, capsys):
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--metrics", "nfs6", "--no-log", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["results"][0]["metrics"]["nfs6"]
    assert main(["metrics", str(files["run"] / "best.ckpt"), "--metrics", "nfs6", "--no-log", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["metrics"]["nfs6"] == first
    assert 1.0 <= first <= 64.0


def test_nfs_of_a_dataset(files, capsys):
    assert main(["metrics", "--data", str(files["data"]), "--metrics", "nfs_data", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["results"] == [] and report["data"]["nfs_data"] > 1.0
    assert report["data"]["nfs_data"] == pytest.approx(dataset_nfs(open_dataset(files["data"])))
    assert main(["metrics", "--data", str(files["data"]), "--metrics", "nfs_data"]) == 0
    assert "nfs_data" in capsys.readouterr().out


def _depth_folder(folder: Path) -> Path:
    """Two depth maps with known NFS (flat: 1, an even ramp over 0..65535: 64) and an image to skip."""
    folder.mkdir(parents=True)
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(folder / "a_depth.png")          # flat: 1
    ramp = np.round(np.linspace(0, 65535, 64 * 64)).astype(np.uint16).reshape(64, 64)
    (folder / "sub").mkdir()
    Image.fromarray(ramp).save(folder / "sub" / "b_depth.png")                                 # even: 64
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b.png")                      # an image: skipped
    return folder


def test_nfs_of_a_folder_of_depth_maps(tmp_path, capsys):
    folder = _depth_folder(tmp_path / "depth")
    for flag in ("--depth-maps", "--depth-folder"):            # --depth-folder: the older name, kept
        assert main(["metrics", flag, str(folder), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["data"]["nfs_data"] == pytest.approx((1 + 64) / 2, rel=1e-6)
    assert main(["metrics", "--depth-maps", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"nfs_data ({folder}): 32.5000"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["metrics", "--depth-maps", str(empty)]) == 2
    assert "no PNG depth maps" in capsys.readouterr().err


def test_nfs_of_the_depth_maps_in_a_zip_equals_the_folder_and_the_dataset(tmp_path, files, capsys):
    folder = _depth_folder(tmp_path / "depth")
    archive = tmp_path / "depth.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"depth/{f.relative_to(folder).as_posix()}")
        zf.writestr("__MACOSX/depth/._a_depth.png", b"not a png")               # skipped, like datasets
    assert main(["metrics", "--depth-maps", str(archive), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["nfs_data"] == pytest.approx(32.5, rel=1e-6)
    # A synthesized dataset zip scored as plain depth maps gives its nfs_data.
    assert main(["metrics", "--depth-maps", str(files["data"]), "--json"]) == 0
    via_maps = json.loads(capsys.readouterr().out)["data"]["nfs_data"]
    assert main(["metrics", "--data", str(files["data"]), "--metrics", "nfs_data", "--json"]) == 0
    assert via_maps == pytest.approx(json.loads(capsys.readouterr().out)["data"]["nfs_data"], rel=1e-12)


def test_bad_depth_maps_are_one_line_errors(tmp_path, capsys):
    def error(*argv) -> str:
        assert main(["metrics", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err
    assert "no such file or folder" in error("--depth-maps", str(tmp_path / "missing"))
    not_zip = tmp_path / "notes.txt"
    not_zip.write_text("hello")
    assert "expected a folder or a .zip" in error("--depth-maps", str(not_zip))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x_depth.png").write_bytes(b"\x89PNG but not really")
    assert f"{broken}/x_depth.png: cannot read depth map" in error("--depth-maps", str(broken), "--quiet")
    assert "nfs_data needs --data DATA" in error("--metrics", "nfs_data")
    assert "nfsN needs N in 1..100000" in error("--metrics", "nfs0", "--depth-maps", str(broken))
