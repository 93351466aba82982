"""`trigan render` end to end on a tiny model: decoded videos have the requested frame count, size and
fps; grids have the right layout (and their cells are the single images); names by class and seed;
run directories; formats; depth and normals pictures; one-line errors."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.exports import ViewRenderer
from trigan.core.generator import Generator
from trigan.core.images import depth_image, normals_image
from trigan.core.model_io import open_model
from trigan.core.trajectories import make_trajectory
from trigan.core.video import VideoWriter, write_video

RES = 16


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A tiny 4-class model and a tiny unconditional one, saved as checkpoints."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(1)
    cond_cfg = tiny_config()
    uncond_cfg = tiny_config(**{"model.c_dim": 0})
    return {"cond": save_checkpoint(folder / "cond.ckpt", cond_cfg, Generator(cond_cfg.model)),
            "uncond": save_checkpoint(folder / "uncond.ckpt", uncond_cfg, Generator(uncond_cfg.model))}


def render(capsys, *argv):
    code = main(["render", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return code, out, err


def decode(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    return meta, frames


def png(path):
    return np.asarray(Image.open(path).convert("RGB"))


# --------------------------------------------------------------------------------------------------
# Videos

def test_video_has_requested_frames_size_and_fps(ckpts, tmp_path, capsys):
    code, out, err = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "video", "--seeds", "3",
                            "--classes", "2", "--trajectory", "orbit", "--frames", "7", "--fps", "12",
                            "--resolution", "24", "--batch", "3")
    assert code == 0
    path = tmp_path / "class002-seed0003-orbit.mp4"
    assert out.strip() == str(path)
    meta, frames = decode(path)
    assert len(frames) == 7 and meta["size"] == (24, 24) and meta["fps"] == pytest.approx(12)
    assert "view" in err                            # the progress bar (stderr)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporaries left


def test_video_of_odd_size_is_padded_to_even(ckpts, tmp_path, capsys):
    code, _, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--vis", "video", "--seeds", "0",
                        "--frames", "3", "--resolution", "17", "--quiet")
    meta, frames = decode(tmp_path / "seed0000-front_circle.mp4")
    assert code == 0 and len(frames) == 3 and meta["size"] == (18, 18)


def test_video_grid_layout_and_gif_and_png_frames(ckpts, tmp_path, capsys):
    code, out, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "video_grid", "--seeds", "0-2",
                          "--classes", "0,3", "--frames", "4", "--fps", "8", "--quiet")
    assert code == 0
    meta, frames = decode(tmp_path / "grid-class0_3-seed0-2-front_circle.mp4")
    assert len(frames) == 4 and meta["size"] == (3 * RES, 2 * RES) and meta["fps"] == pytest.approx(8)

    code, _, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "video_grid", "--seeds", "0-2",
                        "--frames", "5", "--format", "gif", "--fps", "10", "--quiet")
    gif = Image.open(tmp_path / "grid-class0-seed0-2-front_circle.gif")
    assert code == 0 and gif.n_frames == 5 and gif.size == (3 * RES, RES) and gif.info["duration"] == 100

    code, _, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--vis", "video", "--seeds", "4",
                        "--trajectory", "wiggle", "--format", "png", "--quiet")
    folder = tmp_path / "seed0004-wiggle"
    assert code == 0 and sorted(p.name for p in folder.iterdir()) == [f"frame{i:06d}.png" for i in range(16)]
    # Rendering again is refused without --force; with it the frames folder is replaced, but a folder
    # with other files never is.
    again = ("--out", tmp_path, "--vis", "video", "--seeds", "4", "--trajectory", "wiggle", "--format", "png",
             "--frames", "2", "--quiet")
    code, _, err = render(capsys, ckpts["uncond"], *again)
    assert code == 2 and f"{folder}: already exists (use --force" in err and len(list(folder.iterdir())) == 16
    code, _, _ = render(capsys, ckpts["uncond"], *again, "--force")
    assert code == 0 and len(list(folder.iterdir())) == 2
    (folder / "notes.txt").write_text("mine")
    code, _, err = render(capsys, ckpts["uncond"], *again, "--force")
    assert code == 2 and "not replacing it" in err and (folder / "notes.txt").exists()


def test_video_frames_match_still_images(ckpts, tmp_path, capsys):
    """Frame 0 of `points` with --format png is the single --vis image view (batch 1, same camera)."""
    render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "video", "--seeds", "5", "--trajectory", "points",
           "--format", "png", "--batch", "1", "--quiet")
    render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "image", "--seeds", "5", "--batch", "1", "--quiet")
    frame0 = png(tmp_path / "class000-seed0005-points" / "frame000000.png")
    assert np.array_equal(frame0, png(tmp_path / "class000-seed0005.png"))


def test_accelerated_frames_match_a_many_sample_reference_and_ignore_the_batch(ckpts, tmp_path, capsys):
    """The default (accelerated exact path) renders what the plain path renders with many samples,
    within quadrature error, at least as closely as the model's own 6 + 6 plain samples do; and a
    view's pixels do not depend on which views shared its batch."""
    common = ["--vis", "video", "--seeds", "2", "--trajectory", "front_circle", "--frames", "4",
              "--format", "png", "--resolution", "32", "--quiet"]
    runs = {"fast1": ["--batch", "1"], "fast4": ["--batch", "4"], "plain": ["--plain"],
            "ref": ["--plain", "--num-steps", "256", "--batch", "1"]}
    for name, extra in runs.items():
        assert render(capsys, ckpts["cond"], "--out", tmp_path / name, *common, *extra)[0] == 0
    folder = "class000-seed0002-front_circle"

    def psnr(a, b):
        return 10 * np.log10(255.0 ** 2 / max(((a - b) ** 2).mean(), 1e-12))
    for i in range(4):
        fast1, fast4, plain, ref = (png(tmp_path / n / folder / f"frame{i:06d}.png").astype(np.float64)
                                    for n in runs)
        assert np.array_equal(fast1, fast4)
        assert psnr(fast1, ref) >= 35
        assert psnr(fast1, ref) >= psnr(plain, ref) - 1


def test_keyframe_video_and_interp_video(ckpts, tmp_path, capsys):
    keys = tmp_path / "path.json"
    keys.write_text(json.dumps([{"yaw": -0.5, "time": 0}, {"yaw": 0.5, "fov": 20, "radius": 1.2, "time": 0.5}]))
    code, _, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--vis", "video", "--seeds", "1",
                        "--trajectory", keys, "--fps", "10", "--quiet")
    meta, frames = decode(tmp_path / "seed0001-path.mp4")
    assert code == 0 and len(frames) == 6 and meta["fps"] == pytest.approx(10)

    code, _, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "interp_video", "--seeds", "0-2",
                        "--classes", "1", "--trajectory", "orbit", "--frames", "5", "--quiet")
    meta, frames = decode(tmp_path / "interp-class001-seed0000-0002-orbit.mp4")
    assert code == 0 and len(frames) == 5 and meta["size"] == (RES, RES)


# --------------------------------------------------------------------------------------------------
# Images and grids

def test_images_named_by_class_and_seed_and_grid_cells_are_those_images(ckpts, tmp_path, capsys):
    code, out, _ = render(capsys, ckpts["cond"], "--out", tmp_path / "new", "--seeds", "0-2,7", "--classes", "1-2",
                          "--quiet")
    names = [f"class{k:03d}-seed{s:04d}.png" for k in (1, 2) for s in (0, 1, 2, 7)]
    assert code == 0 and out.split() == [str(tmp_path / "new" / n) for n in names]
    code, out, _ = render(capsys, ckpts["cond"], "--out", tmp_path / "new", "--vis", "image_grid",
                          "--seeds", "0-2,7", "--classes", "1-2", "--quiet")
    grid = png(tmp_path / "new" / "grid-class1-2-seed0-2_7.png")
    assert code == 0 and grid.shape == (2 * RES, 4 * RES, 3)                 # rows = classes, columns = seeds
    for r, k in enumerate((1, 2)):
        for c, s in enumerate((0, 1, 2, 7)):
            cell = grid[r * RES:(r + 1) * RES, c * RES:(c + 1) * RES]
            assert np.array_equal(cell, png(tmp_path / "new" / f"class{k:03d}-seed{s:04d}.png")), (k, s)


def test_unconditional_names_and_grid(ckpts, tmp_path, capsys):
    code, out, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--seeds", "2", "--quiet")
    assert code == 0 and (tmp_path / "seed0002.png").is_file()
    code, _, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--vis", "image_grid", "--seeds", "0-6", "--quiet")
    assert code == 0 and png(tmp_path / "grid-seed0-6.png").shape == (2 * RES, 4 * RES, 3)   # 7 -> 2x4


def test_front_grid_and_interp_layout(ckpts, tmp_path, capsys):
    code, _, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "front_grid", "--seeds", "0",
                        "--resolution", "32", "--quiet")
    assert code == 0 and png(tmp_path / "front-class000-seed0000.png").shape == (32 + 16, 32, 3)
    code, _, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "interp", "--seeds", "3,5,9",
                        "--interp-steps", "4", "--batch", "4", "--quiet")
    assert code == 0
    render(capsys, ckpts["cond"], "--out", tmp_path, "--seeds", "3", "--quiet")
    for a, b in ((3, 5), (5, 9)):
        row = png(tmp_path / f"interp-class000-seed{a:04d}-{b:04d}.png")
        assert row.shape == (RES, 4 * RES, 3)
    # Step 0 is the first seed itself, but its w and tri-planes come from batches of 3 and 4 latents
    # where the image's come from batches of 1: other matrix shapes, which some CPUs' kernels round
    # differently in the last bits, so a value on a rounding edge may land one 8-bit level away.
    # Any other latent differs by tens of levels (checked against seed 5, the last step).
    first = png(tmp_path / "interp-class000-seed0003-0005.png")[:, :RES].astype(int)
    alone = png(tmp_path / "class000-seed0003.png").astype(int)
    assert np.abs(first - alone).max() <= 1
    last = png(tmp_path / "interp-class000-seed0003-0005.png")[:, -RES:].astype(int)
    assert np.abs(last - alone).max() > 10


def test_view_grid_rows_are_latents_and_columns_are_orbit_views(ckpts, tmp_path, capsys):
    code, out, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--vis", "view_grid", "--seeds", "4",
                          "--classes", "0,2", "--frames", "3", "--quiet")
    grid = png(tmp_path / "views-class0_2-seed4-orbit.png")
    assert code == 0 and grid.shape == (2 * RES, 3 * RES, 3)
    # Cell (class k, view j) is the single image from yaw = start yaw + 2 pi j / 3.
    base = Pose.for_generator(open_model(ckpts["cond"]).G)
    for r, k in enumerate((0, 2)):
        for j in range(3):
            yaw = base.yaw + 2 * np.pi * j / 3
            render(capsys, ckpts["cond"], "--out", tmp_path / "single", "--seeds", "4", "--classes", str(k),
                   "--camera", f"yaw={yaw!r}", "--quiet", "--force")
            single = png(tmp_path / "single" / f"class{k:03d}-seed0004.png")
            cell = grid[r * RES:(r + 1) * RES, j * RES:(j + 1) * RES].astype(int)
            assert np.abs(cell - single).max() <= 1, (k, j)
    # Eight views unless --frames says otherwise.
    code, _, _ = render(capsys, ckpts["uncond"], "--out", tmp_path, "--vis", "view_grid", "--seeds", "0", "--quiet")
    assert code == 0 and png(tmp_path / "views-seed0-orbit.png").shape == (RES, 8 * RES, 3)


def test_camera_depth_and_normals(ckpts, tmp_path, capsys):
    for output in ("depth", "normals"):
        code, out, _ = render(capsys, ckpts["cond"], "--out", tmp_path, "--seeds", "0", "--output", output,
                              "--camera", "yaw=0.3,pitch=pi/2-0.2,fov=25,radius=1.4", "--quiet")
        image = png(tmp_path / f"class000-seed0000-{output}.png")
        assert code == 0 and image.shape == (RES, RES, 3)
    depth = png(tmp_path / "class000-seed0000-depth.png")
    assert (depth[..., 0] == depth[..., 1]).all()                      # gray
    # A camera 3 units away still marches through the object: the ray interval (0.6..1.4 at radius 1)
    # moves with the camera, otherwise every ray would stop short of the box and the depth be empty.
    code, _, _ = render(capsys, ckpts["cond"], "--out", tmp_path / "far", "--seeds", "0", "--output", "depth",
                        "--camera", "radius=3", "--quiet")
    assert code == 0 and png(tmp_path / "far" / "class000-seed0000-depth.png").mean() > 20


def test_depth_and_normals_colouring():
    depth = torch.tensor([0.6, 1.0, 1.4, 0.5]).view(4, 1, 1, 1)
    opacity = torch.tensor([1.0, 1.0, 1.0, 0.5]).view(4, 1, 1, 1)
    img = depth_image(depth, opacity, near=0.6, far=1.4)               # 4th: distance 1.0 at half opacity
    assert img.shape == (4, 3, 1, 1)
    np.testing.assert_allclose(((img[:, 0, 0, 0] + 1) / 2).numpy(), [1.0, 0.5, 0.0, 0.25], atol=1e-6)
    n = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]).view(2, 3, 1, 1)
    col = normals_image(n, torch.tensor([1.0, 0.0]).view(2, 1, 1, 1), white_background=True)
    np.testing.assert_allclose(((col + 1) / 2)[:, :, 0, 0].numpy(), [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]])


def test_run_directory_best_or_latest(ckpts, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.ckpt").write_bytes(ckpts["cond"].read_bytes())
    (run_dir / "latest.ckpt").write_bytes(ckpts["cond"].read_bytes())
    code, _, err = render(capsys, run_dir, "--out", tmp_path / "o", "--seeds", "0", "--quiet")
    assert code == 0 and "best.ckpt" in err
    code, _, err = render(capsys, run_dir, "--latest", "--out", tmp_path / "o2", "--seeds", "0", "--quiet")
    assert code == 0 and "latest.ckpt" in err


# --------------------------------------------------------------------------------------------------
# Errors and help

@pytest.mark.parametrize("argv, fragment", [
    (["--classes", "4"], "--classes 4: class 4 is out of range: this model has 4 classes (0..3)"),
    (["--camera", "yaw=1,tilt=2"], "--camera yaw=1,tilt=2: unknown key 'tilt'"),
    (["--resolution", "8"], "--resolution 8: expected an integer in 16..2048 pixels"),
    (["--vis", "video", "--frames", "0"], "--frames 0: expected an integer in 1..10000"),
    (["--vis", "video", "--fps", "0"], "--fps 0: expected a number in (0, 240]"),
    (["--vis", "image", "--format", "mp4"], "--format mp4 is for videos"),
    (["--vis", "image_grid", "--trajectory", "orbit"], "--trajectory goes with"),
    (["--vis", "interp", "--seeds", "1"], "at least two"),
    (["--seeds", "3-1"], "--seeds 3-1: range 3-1 runs backwards"),
    (["--vis", "video", "--trajectory", "spiral"], "unknown trajectory"),
    (["--vis", "video", "--trajectory", "missing.json"], "missing.json: no such keyframe file"),
])
def test_bad_input_gives_one_line(ckpts, tmp_path, capsys, argv, fragment):
    code, out, err = render(capsys, ckpts["cond"], "--out", tmp_path, *argv)
    assert code == 2 and fragment in err and err.count("\n") == 1 and err.startswith("trigan: error:")
    assert not list(tmp_path.iterdir())


def test_unconditional_model_refuses_classes(ckpts, tmp_path, capsys):
    code, _, err = render(capsys, ckpts["uncond"], "--out", tmp_path, "--classes", "0")
    assert code == 2 and "unconditional" in err


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = render(capsys, tmp_path / "nope.ckpt", "--out", tmp_path / "o")
    assert code == 2 and "nope.ckpt: no such file" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["render", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "examples:" in out and "--trajectory" in out and "keyframe" in out


# --------------------------------------------------------------------------------------------------
# The writer on its own

def test_video_writer_is_atomic(tmp_path):
    frames = [np.full((10, 12, 3), 20 * i, np.uint8) for i in range(4)]
    path = write_video(frames, tmp_path / "a.mp4", fps=5)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, fps=5, overwrite=True) as video:
            video.append(frames[0])
            raise RuntimeError("boom")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    with pytest.raises(ValueError, match="frame 1 is 5x4"):
        with VideoWriter(tmp_path / "b.gif", fps=5) as video:
            video.append(frames[0])
            video.append(np.zeros((4, 5, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    meta, decoded = decode(path)
    assert len(decoded) == 4 and meta["size"] == (12, 10) and meta["fps"] == pytest.approx(5)
    assert abs(int(decoded[3].astype(int).mean()) - 60) <= 2             # quality 8 (crf 10) keeps the values


def test_view_renderer_serves_each_new_field_with_its_own_renderers(ckpts):
    """One ViewRenderer used for several fields in turn (trigan render's chunks of seeds) renders each
    as a fresh one would: per-latent renderers never outlive the field they were built for."""
    G = open_model(ckpts["cond"]).G.eval()
    traj = make_trajectory("front_circle", Pose.for_generator(G), 2, 30)
    shared = ViewRenderer(G, resolution=RES)
    with torch.inference_mode():
        for seed in (0, 1, 2):
            field = shared.field(shared.ws([(0, seed)]))
            got = list(shared.render(field, [0, 0], traj, [0, 1]))
            fresh = ViewRenderer(G, resolution=RES)
            want = list(fresh.render(fresh.field(fresh.ws([(0, seed)])), [0, 0], traj, [0, 1]))
            assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
