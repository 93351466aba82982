"""`trigan invert` end to end on a tiny model (in-process, few steps): every output, one line per image,
the tuned checkpoint round-tripping through `trigan render --latent` / `trigan mesh --latent`,
Ctrl-C keeping the best so far, and bad input stopping in one line before anything is written."""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from conftest import tiny_config
from trigan.cli.invert import HELP_PTI_HOLD, HELP_PTI_STEPS, HELP_STEPS, StopFlag
from trigan.cli.main import main
from trigan.core.cameras import Pose
from trigan.core.checkpoint import load_checkpoint, save_checkpoint
from trigan.core.generator import Generator
from trigan.core.images import save_png, to_uint8
from trigan.core.limits import MAX_TUNE_HOLD
from trigan.core.model_io import open_model
from trigan.core.rendering import field_renderer
from trigan.training import inversion
from trigan.training.inversion import InversionError, InversionSettings
from trigan.training.inversion_inputs import load_target, model_backdrop
from trigan.training.inversion_outputs import FIGURE_PAD, load_inversion

RES = 16
YAW, PITCH = 0.5, 1.4
FAST = ["--steps", "4", "--pti-steps", "2", "--quiet"]
LINE = re.compile(r"^(\w+): PSNR (\d+\.\d) dB, SSIM (\d\.\d{3}) \(latent (\d+\.\d) dB(?:; tuning not kept)?\) class (\d+), "
                  r"yaw (-?\d+\.\d{3}) pitch (\d+\.\d{3}) \((given|estimated)\)(, stopped early)?$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny 4-class model, and two views of one of its latents (seed 1001, class 1) as PNG files."""
    folder = tmp_path_factory.mktemp("invert")
    torch.manual_seed(1)
    cfg = tiny_config()
    G = Generator(cfg.model).eval()
    ckpt = save_checkpoint(folder / "model.ckpt", cfg, G)
    opts = G.render_options(deterministic=True, density_noise_std=0.0)
    with torch.no_grad():
        field = G.field_from_ws(G.map_latents(G.latents([1001]), G.labels([1], 1)))
        for name, yaw in (("front", YAW), ("side", YAW + 0.8)):
            pose = Pose.for_generator(G).with_values(yaw=yaw, pitch=PITCH)
            out = field_renderer("accelerated", field, opts).render(pose.to_camera(), RES)
            save_png(to_uint8(out.rgb)[0], folder / f"{name}.png")
    return {"ckpt": ckpt, "front": folder / "front.png", "side": folder / "side.png", "folder": folder}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def listing(folder):
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir()) if folder.is_dir() else None


def test_invert_prints_one_line_per_image_and_writes_its_outputs(setup, tmp_path, capsys):
    out = tmp_path / "inv"
    code, stdout, err = run(capsys, "invert", setup["ckpt"], setup["front"], setup["side"], "--out", out,
                            "--class", "1", "--camera", f"yaw={YAW},pitch={PITCH}", "--no-video", "--no-mesh", *FAST)
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("front", "side"), strict=True):
        match = LINE.match(line)
        assert match and match.group(1) == name, line
        record = load_inversion(out / f"{name}.inversion.npz")
        # The line reports the record's own numbers, the class and camera given.
        assert float(match.group(2)) == pytest.approx(record.metrics["psnr"], abs=0.05)
        assert float(match.group(4)) == pytest.approx(record.metrics["psnr_latent"], abs=0.05)
        assert match.group(5) == "1" and match.group(8) == "given" and record.pose_given
        assert (record.pose.yaw, record.pose.pitch) == (YAW, PITCH)
        assert sorted(p.name for p in out.glob(f"{name}*")) == [f"{name}{suffix}" for suffix in
                                                                  (".inversion.npz", ".png", ".pti.ckpt")]
    assert png(out / "front.png").shape == (RES, 6 * RES + 5 * FIGURE_PAD, 3)
    # The input cell is the image as the fit saw it (keyed and composited over the model's backdrop).
    G = open_model(setup["ckpt"]).G
    target = load_target(setup["front"], RES, backdrop=model_backdrop(G))
    assert np.array_equal(png(out / "front.png")[:, :RES], to_uint8(target.image[None])[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]               # no temporaries left


def test_tuned_checkpoint_round_trips_through_render_and_mesh(setup, tmp_path, capsys):
    out = tmp_path / "inv"
    code, _, err = run(capsys, "invert", setup["ckpt"], setup["front"], "--out", out, "--class", "1",
                       "--camera", f"yaw={YAW},pitch={PITCH}", "--mesh-resolution", "24", "--pti-hold", "0.5", *FAST)
    assert code == 0, err
    for suffix in (".inversion.npz", ".pti.ckpt", ".png", "-orbit.mp4", ".ply"):    # every output
        assert (out / f"front{suffix}").is_file(), suffix
    assert len(trimesh.load(out / "front.ply", process=False).faces) > 0
    ckpt = load_checkpoint(out / "front.pti.ckpt")        # a trigan checkpoint, weights_only
    assert ckpt.config.model.img_resolution == RES
    record = load_inversion(out / "front.inversion.npz")
    assert record.settings["tune_hold"] == 0.5 and record.metrics["tuning_kept_step"] in range(0, 3)
    code, stdout, err = run(capsys, "render", out / "front.pti.ckpt", "--latent", out / "front.inversion.npz",
                            "--out", tmp_path / "r", "--quiet")
    assert code == 0, err and stdout.strip() == str(tmp_path / "r" / "front-latent.png")
    rendered = png(tmp_path / "r" / "front-latent.png").astype(int)
    # The record's reconstruction is the optimiser's final render: the exact (accelerated) path with
    # deterministic options at the found pose, on the tuned weights and found noise. `trigan render
    # --latent` renders the same latent on the same weights (bit-exact through the checkpoint) with
    # the same path and options from the same pose, so only the uint8 rounding of the two PNG writes
    # may differ: at most one level.
    assert np.abs(rendered - record.reconstruction.astype(int)).max() <= 1
    figure_cell = png(out / "front.png")[:, RES + FIGURE_PAD:2 * RES + FIGURE_PAD].astype(int)
    assert np.abs(rendered - figure_cell).max() <= 1
    # On the original model (not tuned) the same latent renders as the latent-only fit.
    code, _, err = run(capsys, "render", setup["ckpt"], "--latent", out / "front.inversion.npz",
                       "--out", tmp_path / "r0", "--quiet")
    assert code == 0, err
    assert np.abs(png(tmp_path / "r0" / "front-latent.png").astype(int)
                  - record.reconstruction_latent.astype(int)).max() <= 1
    code, stdout, err = run(capsys, "mesh", out / "front.pti.ckpt", "--latent", out / "front.inversion.npz",
                            "--out", tmp_path / "m", "--resolution", "24", "--quiet")
    assert code == 0, err
    assert len(trimesh.load(tmp_path / "m" / "front-latent.ply", process=False).faces) > 0


def test_render_latent_refuses_what_does_not_fit(setup, tmp_path, capsys):
    out = tmp_path / "inv"
    assert run(capsys, "invert", setup["ckpt"], setup["front"], "--out", out, "--class", "1", "--camera",
               f"yaw={YAW},pitch={PITCH}", "--no-video", "--no-mesh", "--pti-steps", "0", "--steps", "2",
               "--quiet")[0] == 0
    assert not (out / "front.pti.ckpt").exists()          # no tuning, no tuned checkpoint
    other_cfg = tiny_config(**{"model.c_dim": 0})
    other = save_checkpoint(tmp_path / "other.ckpt", other_cfg, Generator(other_cfg.model))
    npz = out / "front.inversion.npz"
    for argv, fragment in [(["render", other, "--latent", npz], "unconditional"),
                           (["render", setup["ckpt"], "--latent", npz, "--vis", "interp"], "--latent renders one"),
                           (["render", setup["ckpt"], "--latent", npz, "--classes", "1"], "--classes"),
                           (["mesh", setup["ckpt"], "--latent", npz, "--classes", "1"], "--classes")]:
        code, _, err = run(capsys, *argv, "--out", tmp_path / "r")
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_first_ctrl_c_keeps_the_best_so_far_and_writes_it(setup, tmp_path, capsys, monkeypatch):
    """SIGINT arrives as the first image's fit starts: that fit stops at once, its outputs are still
    written and marked, the second image is skipped, and the exit status says it was interrupted."""
    real = inversion.invert

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(inversion, "invert", interrupted)
    out = tmp_path / "inv"
    handler = signal.getsignal(signal.SIGINT)
    code, stdout, err = run(capsys, "invert", setup["ckpt"], setup["front"], setup["side"], "--out", out,
                            "--class", "1", "--camera", f"yaw={YAW},pitch={PITCH}", "--no-video", "--no-mesh",
                            "--steps", "50", "--quiet")
    assert code == 130
    assert stdout.splitlines()[0].endswith(", stopped early") and len(stdout.splitlines()) == 1
    record = load_inversion(out / "front.inversion.npz")
    assert record.metrics["interrupted"] is True and record.metrics["steps_done"] < 50
    assert not list(out.glob("side*"))
    assert "1 image(s) not inverted" in err
    assert signal.getsignal(signal.SIGINT) == handler    # the previous handler is back


def test_help_states_the_optimisers_defaults():
    # the command line's help writes the defaults out (its parser loads no torch), and so does the
    # viewer's Invert tab; the hold's bound (core.limits) holds in the settings check as in the flag
    from trigan.viewer.panels.invert import (  # noqa: PLC0415 (needs DearPyGui)
        DEFAULT_PTI_HOLD,
        DEFAULT_PTI_STEPS,
        DEFAULT_STEPS,
    )
    defaults = (InversionSettings().steps, InversionSettings().pti_steps, InversionSettings().tune_hold)
    assert (HELP_STEPS, HELP_PTI_STEPS, HELP_PTI_HOLD) == defaults
    assert (DEFAULT_STEPS, DEFAULT_PTI_STEPS, DEFAULT_PTI_HOLD) == defaults
    InversionSettings(tune_hold=MAX_TUNE_HOLD).check()
    with pytest.raises(InversionError, match="tune_hold"):
        InversionSettings(tune_hold=MAX_TUNE_HOLD * 1.5).check()


def test_second_ctrl_c_aborts():
    flag = StopFlag()
    flag.handle(signal.SIGINT, None)
    assert flag()
    with pytest.raises(KeyboardInterrupt):
        flag.handle(signal.SIGINT, None)


# --------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written

def bad_inputs(setup, tmp):
    """(argv after the model, fragment of the error) for each mistake."""
    bad_image = tmp / "broken.png"
    bad_image.write_bytes(b"this is not an image")
    small_mask = tmp / "small-mask.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(small_mask)
    a_file = tmp / "a-file"
    a_file.write_text("in the way")
    front = setup["front"]
    hidden = tmp / ".hidden.png"
    hidden.write_bytes(front.read_bytes())
    return {
        "bad image": ([bad_image], "broken.png"),
        "bad mask": ([front, "--mask", small_mask], "small-mask.png"),
        "class out of range": ([front, "--class", "7"], "--class 7"),
        "missing vgg": ([front, "--vgg", tmp / "vgg16-397923af.pth"], "vgg16-397923af.pth"),
        "out is a file": ([front, "--out", a_file], "not a folder"),
        "camera twice": ([front, "--camera", "yaw=0", "--pose-from", tmp / "dataset.json"], "--pose-from"),
        "masks miscounted": ([front, setup["side"], "--mask", small_mask], "one mask per IMAGE"),
        "bad camera": ([front, "--camera", "yaw=sideways"], "yaw"),
        "bad steps": ([front, "--steps", "0"], "--steps 0"),
        "bad hold": ([front, "--pti-hold", "-1"], "--pti-hold -1"),
        "hidden name": ([hidden], "file name"),
    }


@pytest.mark.parametrize("case", ["bad image", "bad mask", "class out of range", "missing vgg", "out is a file",
                                  "camera twice", "masks miscounted", "bad camera", "bad steps", "bad hold",
                                  "hidden name"])
def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, capsys, case):
    argv, fragment = bad_inputs(setup, tmp_path)[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before, files_before = listing(out), listing(tmp_path)
    if "--out" not in argv:
        argv = [*argv, "--out", out]
    code, stdout, err = run(capsys, "invert", setup["ckpt"], *argv, "--quiet")
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trigan: error:") and fragment in lines[0], err
    assert listing(out) == before and listing(tmp_path) == files_before


def test_a_missing_out_folder_is_not_created_when_the_input_is_bad(setup, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"GIF89a nonsense")
    code, _, err = run(capsys, "invert", setup["ckpt"], bad, "--out", tmp_path / "new", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "new").exists()


def test_existing_outputs_of_any_image_are_refused_before_the_first_fit(setup, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "side-orbit.mp4").write_bytes(b"earlier")
    code, stdout, err = run(capsys, "invert", setup["ckpt"], setup["front"], setup["side"], "--out", out,
                            "--class", "1", *FAST)
    assert code == 2 and stdout == "" and "side-orbit.mp4: already exists" in err
    assert listing(out) == [("side-orbit.mp4", 7)]


def test_unconditional_model_refuses_a_class(setup, tmp_path, capsys):
    cfg = tiny_config(**{"model.c_dim": 0})
    ckpt = save_checkpoint(tmp_path / "u.ckpt", cfg, Generator(cfg.model))
    code, _, err = run(capsys, "invert", ckpt, setup["front"], "--out", tmp_path / "o", "--class", "0", "--quiet")
    assert code == 2 and "unconditional" in err and not (tmp_path / "o").exists()
