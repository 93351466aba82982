"""The viewer's export jobs: a mesh and a video are valid files equal to what `trigan mesh` /
`trigan render` write; a cancelled job leaves nothing behind (and an older file intact); errors
end a job as failed with one line."""

from __future__ import annotations

import threading
import zipfile

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.core.trajectories import Trajectory
from trigan.viewer.jobs import Job, JobRunner, export_mesh, export_screenshot, export_video
from trigan.viewer.render_request import RenderRequest
from trigan.viewer.scene import Scene

WAIT = 300.0


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    path = tmp_path_factory.mktemp("jobs") / "tiny.ckpt"
    save_checkpoint(path, cfg, Generator(cfg.model))
    return str(path)


def video_frames(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader]
    return meta, frames


class GatedJob(Job):
    """A job that pauses at its first progress report until the test lets it go: the test can
    cancel it at a known point, whatever the machine's speed."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.reached = threading.Event()
        self.go = threading.Event()

    def report(self, fraction, message=None):
        super().report(fraction, message)
        if fraction > 0 and not self.reached.is_set():
            self.reached.set()
            self.go.wait(WAIT)


def gated_runner():
    runner = JobRunner(device="cpu")
    runner.job_class = GatedJob
    return runner


def test_mesh_job_writes_what_trigan_mesh_writes(tiny_ckpt, tmp_path):
    runner = JobRunner(device="cpu")
    job = runner.start_mesh(tiny_ckpt, 3, 1, 1.0, 24, "auto", "ply", True, tmp_path / "job" / "seed3")
    assert job.wait(WAIT) and job.state == "done", job.message
    assert job.output_path == tmp_path / "job" / "seed3.ply" and job.progress == 1.0
    assert "vertices" in job.message and str(job.output_path) in job.message
    mesh = trimesh.load(job.output_path, process=False)
    assert len(mesh.vertices) > 0 and len(mesh.faces) > 0
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert main(["mesh", tiny_ckpt, "--out", str(tmp_path / "cli"), "--seeds", "3", "--classes", "1",
                 "--resolution", "24", "--format", "ply", "--device", "cpu", "--quiet"]) == 0
    assert (tmp_path / "cli" / "class001_seed0003.ply").read_bytes() == job.output_path.read_bytes()


def test_video_job_grid_matches_trigan_render_and_mp4_is_valid(tiny_ckpt, tmp_path):
    # png frames: compare pixel for pixel with `trigan render --vis video_grid`
    frames_dir = export_video(tiny_ckpt, [0, 1], 2, 0.7, "orbit", 3, 30.0, 32, tmp_path / "job" / "grid",
                              fmt="png", device="cpu")
    assert main(["render", tiny_ckpt, "--out", str(tmp_path / "cli"), "--vis", "video_grid", "--seeds", "0-1",
                 "--classes", "2", "--trajectory", "orbit", "--frames", "3", "--resolution", "32",
                 "--format", "png", "--device", "cpu", "--quiet"]) == 0
    cli_dir = tmp_path / "cli" / "grid-class2-seed0-1-orbit"
    job_frames = sorted(frames_dir.iterdir())
    assert [p.name for p in job_frames] == sorted(p.name for p in cli_dir.iterdir()) and len(job_frames) == 3
    for p in job_frames:
        a, b = np.asarray(Image.open(p)), np.asarray(Image.open(cli_dir / p.name))
        assert a.shape == (32, 64, 3) and np.array_equal(a, b)
    # mp4 through the runner: a playable file with the requested frames and size
    runner = JobRunner(device="cpu")
    job = runner.start_video(tiny_ckpt, "0-1", 2, 0.7, "front_circle", 5, 12.0, 32, tmp_path / "job" / "orbit.mp4")
    assert job.wait(WAIT) and job.state == "done", job.message
    assert job.output_path == tmp_path / "job" / "orbit.mp4"
    meta, frames = video_frames(job.output_path)
    assert len(frames) == 5 and tuple(meta["size"]) == (64, 32) and meta["fps"] == pytest.approx(12.0)
    assert imageio_ffmpeg.count_frames_and_secs(str(job.output_path))[0] == 5


def test_single_seed_video_is_trigan_render_video(tiny_ckpt, tmp_path):
    base = Pose.for_generator(open_model(tiny_ckpt, device="cpu").G).with_values(yaw=0.3, fov=25.0)
    out = export_video(tiny_ckpt, 4, 0, 0.7, "wiggle", 2, 30.0, 32, tmp_path / "job" / "one", fmt="png",
                       device="cpu", base_pose=base)
    assert main(["render", tiny_ckpt, "--out", str(tmp_path / "cli"), "--vis", "video", "--seeds", "4",
                 "--classes", "0", "--trajectory", "wiggle", "--frames", "2", "--resolution", "32",
                 "--camera", "yaw=0.3,fov=25", "--format", "png", "--device", "cpu", "--quiet"]) == 0
    cli = tmp_path / "cli" / "class000-seed0004-wiggle"
    for p in sorted(out.iterdir()):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(cli / p.name)))


def test_a_video_around_a_panned_view_keeps_its_pivot_and_look_at(tiny_ckpt, tmp_path, monkeypatch):
    """The viewer hands its whole pose to the export: a panned camera's video orbits the panned pivot
    and looks at the panned point, as the viewer shows it."""
    used = []
    cameras = Trajectory.cameras
    monkeypatch.setattr(Trajectory, "cameras", lambda self, *a, **k: used.append(cameras(self, *a, **k)) or used[-1])
    panned = Pose(yaw=0.3, pitch=1.4, radius=1.2, fov=30.0, look_at=(0.1, 0.05, -0.02), pivot=(0.1, 0.05, 0.0))
    export_video(tiny_ckpt, 4, 0, 0.7, "orbit", 3, 30.0, 16, tmp_path / "panned", fmt="png", device="cpu",
                 base_pose=panned)
    assert sum(len(c) for c in used) == 3
    for cams in used:
        assert torch.equal(cams.pivot.cpu(), torch.tensor([panned.pivot] * len(cams)))
        assert torch.equal(cams.look_at.cpu(), torch.tensor([panned.look_at] * len(cams)))
    assert Pose.from_camera(used[0].to("cpu")) == Pose.from_camera(panned.to_camera())    # frame 0: the view itself


@pytest.mark.parametrize("fmt", ["mp4", "png"])
def test_cancelled_video_leaves_nothing_and_keeps_an_older_file(tiny_ckpt, tmp_path, fmt):
    runner = gated_runner()
    target = tmp_path / "out" / ("old.mp4" if fmt == "mp4" else "old")
    target.parent.mkdir()
    if fmt == "mp4":
        target.write_bytes(b"an older video")
    job = runner.start_video(tiny_ckpt, [0, 1, 2], 0, 0.7, "orbit", 16, 30.0, 64, target, fmt=fmt)
    assert job.reached.wait(WAIT), job.message
    assert not job.finished and 0 < job.progress < 1
    job.cancel()
    job.go.set()
    assert job.wait(WAIT) and job.state == "cancelled" and job.output_path is None
    assert "nothing written" in job.message
    left = sorted(p.name for p in target.parent.iterdir())
    if fmt == "mp4":
        assert left == ["old.mp4"] and target.read_bytes() == b"an older video"
    else:
        assert left == []


def test_cancelled_mesh_leaves_nothing(tiny_ckpt, tmp_path):
    runner = gated_runner()
    job = runner.start_mesh(tiny_ckpt, 0, 0, 1.0, 96, "auto", "glb", True, tmp_path / "out" / "m.glb", chunk=1 << 12)
    assert job.reached.wait(WAIT), job.message
    job.cancel()
    job.go.set()
    assert job.wait(WAIT) and job.state == "cancelled"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert runner.active == [] and runner.jobs == [job]


def test_screenshot_job_and_failures(tiny_ckpt, tmp_path):
    scene = Scene(device="cpu", use_preview_module=False)
    frame = scene.render(RenderRequest(tiny_ckpt, seed=2, class_index=1, pose=Pose(fov=30.0), resolution=64))
    runner = JobRunner(device="cpu")
    shot = runner.start_screenshot(frame, tmp_path / "shots" / "a.png")
    bad_model = runner.start_mesh(str(tmp_path / "missing.ckpt"), 0, 0, 1.0, 16, "auto", "ply", True,
                                  tmp_path / "m.ply")
    bad_class = runner.start_video(tiny_ckpt, [0], 7, 0.7, "orbit", 2, 30.0, 32, tmp_path / "v.mp4")
    error_frame = scene.render(RenderRequest(str(tmp_path / "missing.ckpt")))
    bad_shot = runner.start_screenshot(error_frame, tmp_path / "b.png")
    for job in (shot, bad_model, bad_class, bad_shot):
        assert job.wait(WAIT)
    assert shot.state == "done" and shot.output_path == tmp_path / "shots" / "a.png"
    assert np.array_equal(np.asarray(Image.open(shot.output_path)), frame.rgb_uint8())
    assert bad_model.state == "failed" and "missing.ckpt" in bad_model.message and "\n" not in bad_model.message
    assert bad_class.state == "failed" and "class 7" in bad_class.message
    assert bad_shot.state == "failed" and "error" in bad_shot.message
    assert not (tmp_path / "m.ply").exists() and not (tmp_path / "v.mp4").exists()
    with pytest.raises(Exception, match="PNG"):
        export_screenshot(frame, tmp_path / "a.jpg")
    with pytest.raises(Exception, match="format"):
        export_mesh(tiny_ckpt, 0, 0, 1.0, 16, "auto", "stl", True, tmp_path / "m.stl")
    assert len(runner.jobs) == 4 and runner.active == []
    runner.clear_finished()
    assert runner.jobs == []


def test_synth_dataset_job(tmp_path):
    runner = JobRunner()
    job = runner.synth_dataset(tmp_path / "shapes.zip", 6, 16, 2, seed=1)
    assert job.wait(WAIT) and job.state == "done", job.message
    assert job.output_path == tmp_path / "shapes.zip" and job.progress == 1.0
    with zipfile.ZipFile(job.output_path) as z:
        names = z.namelist()
    assert sum(n.endswith(".png") and "_depth" not in n for n in names) == 6 and "dataset.json" in names
    again = runner.synth_dataset(tmp_path / "shapes.zip", 6, 16, 2)          # refuses to overwrite
    bad = runner.synth_dataset(tmp_path / "bad.zip", 6, 16, 99)              # the CLI's own one-line error
    assert again.wait(WAIT) and again.state == "failed" and "already exists" in again.message
    assert bad.wait(WAIT) and bad.state == "failed" and "classes" in bad.message and "\n" not in bad.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes.zip"]


def test_cancelled_synth_dataset_leaves_nothing(tmp_path):
    runner = gated_runner()
    job = runner.synth_dataset(tmp_path / "big.zip", 3000, 64, 4)
    assert job.reached.wait(WAIT), job.message
    job.cancel()
    job.go.set()
    assert job.wait(WAIT) and job.state == "cancelled"
    assert list(tmp_path.iterdir()) == []
