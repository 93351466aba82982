"""Issue 29 (items 4, 6, 7, 8) at the inference commands: bounded numeric flags, `trigan convert`
validating what it writes, non-finite weights refused at load, the overwrite rule of render and mesh,
one class rule, and unwritable output folders: each a one-line error, never a traceback."""

import errno

import numpy as np
import pytest
import torch

from conftest import tiny_config
from trigan.cli import flags
from trigan.cli.main import main
from trigan.cli.metrics import parse_names
from trigan.core import images, output_paths
from trigan.core.checkpoint import load_generator, save_checkpoint
from trigan.core.errors import TriganError
from trigan.core.exports import seed_mesh
from trigan.core.generator import Generator
from trigan.core.video import VideoWriter


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(3)
    cond, uncond = tiny_config(), tiny_config(**{"model.c_dim": 0})
    return {"cond": save_checkpoint(folder / "cond.ckpt", cond, Generator(cond.model)),
            "uncond": save_checkpoint(folder / "uncond.ckpt", uncond, Generator(uncond.model))}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, fragment):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("trigan: error: "), err
    assert fragment in lines[0], lines[0]


def tampered(src, dst, change):
    """A copy of checkpoint `src` whose payload went through change(payload)."""
    payload = torch.load(src, weights_only=True)
    change(payload)
    torch.save(payload, dst)
    return dst


def first_weight(payload):
    return next(k for k, v in payload["G_ema"].items() if v.is_floating_point() and v.numel() > 1)


# --------------------------------------------------------------------------------------------------
# Numeric flags

@pytest.mark.parametrize("argv, fragment", [
    (["render", "--vis", "video", "--frames", "1e9"], "--frames 1e9: expected an integer in 1..10000"),
    (["render", "--vis", "video", "--frames", "1000000000"], "--frames 1000000000: expected an integer in 1..10000"),
    (["render", "--num-steps", "100000000"], "--num-steps 100000000: expected an integer in 2..4096"),
    (["render", "--resolution", "100000"], "--resolution 100000: expected an integer in 16..2048 pixels"),
    (["render", "--psi", "nan"], "--psi nan: expected a number in [-10, 10]"),
    (["render", "--psi", "inf"], "--psi inf: expected a number in [-10, 10]"),
    (["render", "--seeds", "0-100000000"], "--seeds 0-100000000: more than 10000 values"),
    (["render", "--seeds", "4294967296"], "--seeds 4294967296: 4294967296 is out of range"),
    (["render", "--classes", "0-99999"], "--classes 0-99999: more than 10000 values"),
    (["render", "--batch", "0"], "--batch 0: expected an integer in 1..1024"),
    (["render", "--vis", "video", "--fps", "nan"], "--fps nan: expected a number in (0, 240]"),
    (["render", "--quality", "11"], "--quality 11: expected a number in [1, 10]"),
    (["render", "--vis", "interp", "--interp-steps", "1000000"], "--interp-steps 1000000: expected an integer in 2..1000"),
    (["mesh", "--psi", "nan"], "--psi nan: expected a number in [-10, 10]"),
    (["mesh", "--resolution", "100000"], "--resolution 100000: expected an integer in 8..1024"),
    (["mesh", "--chunk", "0"], "--chunk 0: expected an integer in 1..67108864"),
    (["mesh", "--seeds", "0-99999999999"], "--seeds 0-99999999999: more than 10000 values"),
    (["metrics", "--seed", "-1"], "--seed -1: expected an integer in 0..4294967295"),
    (["metrics", "--batch", "100000"], "--batch 100000: expected an integer in 1..1024"),
])
def test_numeric_flags_are_bounded_while_parsing(tmp_path, capsys, argv, fragment):
    """Refused before anything is read or created (the checkpoint does not even exist)."""
    command, *rest = argv
    code, _, err = cli(capsys, command, tmp_path / "missing.ckpt", "--out" if command != "metrics" else "--json",
                       *([tmp_path / "o"] if command != "metrics" else []), *rest)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "o").exists()


def test_metric_sample_counts_are_bounded():
    with pytest.raises(TriganError, match=r"nfsN needs N in 1..100000"):
        parse_names("nfs1000000")
    with pytest.raises(TriganError, match="unknown"):      # a 5000-digit count is a name, not an int()
        parse_names("nfs" + "9" * 5000)


def test_a_huge_seed_range_is_counted_before_any_list_is_built():
    with pytest.raises(TriganError, match="more than 10000 values"):
        flags.seeds("0-4294967295")
    assert flags.seeds("7,0-2,1") == [7, 0, 1, 2]


# --------------------------------------------------------------------------------------------------
# trigan convert validates what it writes; every loader refuses broken weights

@pytest.mark.parametrize("change, fragment", [
    (lambda p: p["G_ema"].__setitem__(first_weight(p), torch.zeros(3, 2)), "1 of the wrong shape"),
    (lambda p: p["G_ema"].pop(first_weight(p)), "1 missing"),
    (lambda p: p["G_ema"].__setitem__(first_weight(p), p["G_ema"][first_weight(p)].long()),
     "is int64: expected floating-point values"),
    (lambda p: p["G_ema"][first_weight(p)].view(-1).__setitem__(0, float("nan")), "non-finite values"),
    (lambda p: p["G_ema"][first_weight(p)].fill_(float("inf")), "non-finite values"),
    (lambda p: p["config"]["model"].__setitem__("img_resolution", 10 ** 9), "model.img_resolution=1000000000"),
    (lambda p: p["config"]["model"]["camera"].__setitem__("fov", float("nan")), "model.camera.fov=nan"),
])
def test_convert_refuses_a_checkpoint_that_would_not_load(models, tmp_path, capsys, change, fragment):
    bad = tampered(models["cond"], tmp_path / "bad.ckpt", change)
    code, _, err = cli(capsys, "convert", bad, tmp_path / "out.ckpt")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out.ckpt").exists()


@pytest.mark.parametrize("setting, fragment", [
    ("model.camera.fov=nan", "model.camera.fov=nan: expected a finite number in (0, 180)"),
    ("model.camera.radius=-1", "model.camera.radius=-1.0: expected a finite number in (0, 1000000]"),
    ("model.render.num_steps=0", "model.render.num_steps=0: expected an integer in [1, 4096]"),
    ("model.triplane.feat_dim=10000000", "model.triplane.feat_dim=10000000: expected an integer in [1, 1024]"),
])
def test_convert_set_refuses_values_that_break_rendering(models, tmp_path, capsys, setting, fragment):
    code, _, err = cli(capsys, "convert", models["cond"], tmp_path / "out.ckpt", "--set", setting)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "out.ckpt").exists()


def test_non_finite_weights_are_refused_at_load_by_every_command(models, tmp_path, capsys):
    """All-NaN weights rendered black images with exit 0; now every loader stops in one line."""
    def all_nan(payload):
        for value in payload["G_ema"].values():
            value.fill_(float("nan"))
    bad = tampered(models["uncond"], tmp_path / "nan.ckpt", all_nan)
    for argv in (["render", bad, "--out", tmp_path / "r", "--seeds", "0"],
                 ["mesh", bad, "--out", tmp_path / "m", "--resolution", "8"],
                 ["info", bad]):
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, "holds non-finite values (NaN or infinity)")
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()
    with pytest.raises(TriganError, match="non-finite"):
        load_generator(bad)


def test_convert_creates_a_missing_folder_and_says_so(models, tmp_path, capsys):
    dst = tmp_path / "new" / "deeper" / "out.ckpt"
    code, out, err = cli(capsys, "convert", models["cond"], dst)
    assert code == 0 and dst.is_file() and f"created folder {dst.parent}" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli(capsys, "convert", models["cond"], blocker / "out.ckpt")
    assert_one_line_error(code, err, f"DST {blocker}: the output folder exists and is not a folder")


# --------------------------------------------------------------------------------------------------
# Overwriting and the class rule

def test_render_refuses_to_overwrite_before_rendering_anything(models, tmp_path, capsys):
    base = ("render", models["uncond"], "--out", tmp_path, "--resolution", "16", "--quiet")
    code, _, err = cli(capsys, *base, "--seeds", "1")
    assert code == 0, err
    earlier = (tmp_path / "seed0001.png").read_bytes()
    (tmp_path / "seed0001.png").write_bytes(b"mine")
    # Seeds 0 and 1: seed 1 exists, so nothing is rendered, not even seed 0 (checked up front).
    code, _, err = cli(capsys, *base, "--seeds", "0-1")
    assert_one_line_error(code, err, f"{tmp_path / 'seed0001.png'}: already exists (use --force to overwrite)")
    assert (tmp_path / "seed0001.png").read_bytes() == b"mine" and not (tmp_path / "seed0000.png").exists()
    code, _, err = cli(capsys, *base, "--seeds", "0-1", "--force")
    assert code == 0, err
    assert (tmp_path / "seed0001.png").read_bytes() == earlier and (tmp_path / "seed0000.png").is_file()


def test_mesh_refuses_to_overwrite_and_force_replaces(models, tmp_path, capsys):
    base = ("mesh", models["uncond"], "--out", tmp_path, "--resolution", "12", "--quiet", "--format", "npy")
    code, _, err = cli(capsys, *base)
    assert code == 0, err
    target = tmp_path / "seed0000.npy"
    earlier = target.read_bytes()
    target.write_bytes(b"mine")
    code, _, err = cli(capsys, *base)
    assert_one_line_error(code, err, f"{target}: already exists (use --force to overwrite)")
    assert target.read_bytes() == b"mine"
    code, _, err = cli(capsys, *base, "--force")
    assert code == 0 and target.read_bytes() == earlier


def test_exporters_follow_the_same_rule(models, tmp_path):
    """core.exports.seed_mesh and core.video.VideoWriter (the viewer's exports too) refuse an existing
    path unless overwrite=True."""
    G, _ = load_generator(models["uncond"])
    path = tmp_path / "m.npy"
    path.write_bytes(b"mine")
    with pytest.raises(TriganError, match="already exists"):
        seed_mesh(G, 0, None, path, "npy", resolution=8)
    assert path.read_bytes() == b"mine"
    seed_mesh(G, 0, None, path, "npy", resolution=8, overwrite=True)
    assert np.load(path).shape == (8, 8, 8)
    video = tmp_path / "v.gif"
    video.write_bytes(b"mine")
    with pytest.raises(TriganError, match="already exists"):
        VideoWriter(video, fps=5)
    assert video.read_bytes() == b"mine"


def test_render_and_mesh_share_the_class_rule(models, tmp_path, capsys):
    """Class 0 for a conditional model without --classes; --classes on an unconditional one is an error."""
    code, out, _ = cli(capsys, "render", models["cond"], "--out", tmp_path / "r", "--seeds", "2", "--resolution", 16,
                       "--quiet")
    assert code == 0 and out.strip() == str(tmp_path / "r" / "class000-seed0002.png")
    code, _, _ = cli(capsys, "mesh", models["cond"], "--out", tmp_path / "m", "--seeds", "2", "--resolution", 8,
                     "--format", "npy", "--quiet")
    assert code == 0 and (tmp_path / "m" / "class000_seed0002.npy").is_file()
    for command, extra in (("render", ()), ("mesh", ("--resolution", 8))):
        code, _, err = cli(capsys, command, models["uncond"], "--out", tmp_path / "u", "--classes", "1", *extra)
        assert_one_line_error(code, err, "--classes 1: this model is unconditional (it has no classes)")


# --------------------------------------------------------------------------------------------------
# Unwritable output (root-proof: a file in the way, or a simulated read-only disk)

@pytest.mark.parametrize("command", ["render", "mesh"])
def test_an_output_path_through_a_file_is_one_line(models, tmp_path, capsys, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli(capsys, command, models["uncond"], "--out", blocker / "sub", "--resolution", 16, "--quiet")
    assert_one_line_error(code, err, f"--out {blocker / 'sub'}: its parent {blocker} exists and is not a folder")


@pytest.mark.parametrize("command", ["render", "mesh"])
def test_a_read_only_output_folder_is_refused_up_front(models, tmp_path, capsys, monkeypatch, command):
    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))
    monkeypatch.setattr(output_paths.tempfile, "mkstemp", read_only)
    code, _, err = cli(capsys, command, models["uncond"], "--out", tmp_path, "--resolution", 16, "--quiet")
    assert_one_line_error(code, err, f"--out {tmp_path}: cannot write there (Read-only file system)")
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_later_is_one_line_naming_the_path(models, tmp_path, capsys, monkeypatch):
    """The last guard (cli/main.py): a disk that fills up while writing (after the progress line)."""
    def full(image, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(images, "save_png", full)
    code, _, err = cli(capsys, "render", models["uncond"], "--out", tmp_path, "--seeds", "0", "--resolution", 16,
                       "--quiet")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last == f"trigan: error: {tmp_path / 'seed0000.png'}: No space left on device", err
    assert "Traceback" not in err

    def bug(image, path):
        raise OSError(errno.EBADF, "Bad file descriptor")   # not the place's fault: keeps its traceback
    monkeypatch.setattr(images, "save_png", bug)
    with pytest.raises(OSError):
        main(["render", str(models["uncond"]), "--out", str(tmp_path / "b"), "--seeds", "0", "--resolution", "16",
              "--quiet"])
