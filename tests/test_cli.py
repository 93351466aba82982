"""The `trigan` command line: help, info, one-line errors."""

import json
import subprocess
import sys

import pytest

from trigan.cli.main import main
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.training.config import load_config


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_info_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "info" in out and "examples:" in out


def test_info_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "--preset" in out


def test_info_of_a_preset(capsys):
    code, out, _ = run(capsys, "info", "--preset", "epigraf_ffhq512")
    assert code == 0
    assert "512x512" in out and "3 x 32 channels at 512x512" in out and "28.46M" in out and "fov 12 deg" in out
    assert "decoder MLP 32 -> 64 -> 4 (raw colours)" in out
    _, out, _ = run(capsys, "info", "--preset", "demo")
    assert "decoder MLP 16 -> 32 -> 4 (sigmoid colours)" in out


def test_info_of_a_preset_with_overrides_as_json(capsys):
    code, out, _ = run(capsys, "info", "--preset", "demo", "model.c_dim=9", "--json")
    data = json.loads(out)
    assert code == 0 and data["classes"] == 9 and data["image_resolution"] == 64


def test_info_shows_the_fov_range_the_prior_draws_from(capsys):
    """A fov range needs both ends; with one of them the prior keeps the fixed fov, and so does info."""
    base = ("info", "--preset", "demo", "model.camera.dist=uniform", "model.camera.yaw_std=0.5", "model.camera.fov=30")
    code, out, _ = run(capsys, *base, "model.camera.fov_min=10")
    assert code == 0 and "camera prior uniform, yaw -0.500..0.500, pitch 1.571..1.571, fov 30 deg (" in out
    code, out, _ = run(capsys, *base, "model.camera.fov_min=10", "model.camera.fov_max=45", "--json")
    assert code == 0 and json.loads(out)["camera"]["prior"]["fov_range_deg"] == [10.0, 45.0]


def test_info_of_a_checkpoint_shows_progress_and_metrics(tmp_path, capsys):
    cfg = load_config("demo")
    path = save_checkpoint(tmp_path / "d.ckpt", cfg, Generator(cfg.model), progress={"kimg": 40.0},
                           metrics={"fid2k": 55.25})
    code, out, _ = run(capsys, "info", str(path))
    assert code == 0
    assert "trigan checkpoint" in out and "40 kimg" in out and "fid2k 55.250" in out and "4 classes" in out
    data = json.loads(run(capsys, "info", str(path), "--json")[1])
    assert data["parameters"]["total"] == sum(p.numel() for p in Generator(cfg.model).parameters())


@pytest.mark.parametrize("argv, fragment", [
    (["info", "/no/such.ckpt"], "/no/such.ckpt: no such file"),
    (["info", "--preset", "nope"], "'nope': no such preset"),
    (["info", "--preset", "demo", "model.triplane.resolution=abc"], "model.triplane.resolution=abc"),
    (["info", "--preset", "demo", "model.nokey=1"], "nokey"),
    (["info"], "give either a checkpoint path or --preset"),
])
def test_bad_input_gives_one_line_and_exit_code_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("trigan: error: ") and fragment in err and err.count("\n") == 1


def test_console_script_runs(tmp_path):
    """The installed entry point, as a user types it, with no traceback on bad input."""
    proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", "info", str(tmp_path / "x.ckpt")],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "x.ckpt: no such file" in proc.stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    """`trigan info X | head -1`: the reader goes away before trigan writes (here: before trigan has
    even started, so the very first write meets the closed pipe); trigan ends quietly with 0."""
    proc = subprocess.Popen([sys.executable, "-m", "trigan.cli.main", "info", "--preset", "demo", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
