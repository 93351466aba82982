"""The viewer's Invert tab without a window: an inverted latent file shown through a RenderRequest
renders what its ws and noise maps render when put into the model by hand, the inversion job reports
its stages, previews and result and can be cancelled (writing nothing), bad input is one line, and
the panel's small conversions (camera in degrees, classes, thumbnails) are right."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.cli.main import main
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.errors import TriganError
from trigan.core.generator import Generator
from trigan.core.images import save_png, to_uint8
from trigan.core.model_io import open_model
from trigan.core.rendering import field_renderer
from trigan.core.trajectories import apply_camera_values, parse_camera
from trigan.core.views import LatentMapper, options_at_distance, picture
from trigan.viewer.jobs import Job, JobRunner, export_video, invert_images
from trigan.viewer.panels.invert import camera_spec, class_choices, class_of, split_images, thumbnail
from trigan.viewer.render_request import LatentKey, RenderRequest
from trigan.viewer.scene import Scene

WAIT = 300.0
FAST = {"steps": 4, "pti_steps": 2, "search_steps": 2, "pose_yaws": 2, "preview_every": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny conditional model, a picture of its seed 3 (class 1) at a known camera, and one
    inversion of that picture made by the viewer's job function (its files)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("invert")
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    ckpt = folder / "tiny.ckpt"
    save_checkpoint(ckpt, cfg, Generator(cfg.model))
    G = open_model(str(ckpt), device="cpu").G.eval()
    pose = Pose.for_generator(G, 1).with_values(yaw=0.4)
    with torch.no_grad():
        field = G.field_from_ws(LatentMapper(G, 1.0).ws([(1, 3)]))
        out = field_renderer("plain", field, G.render_options(deterministic=True)).render(
            pose.to_camera(), G.cfg.img_resolution)
    image = folder / "photo.png"
    save_png(to_uint8(out.rgb)[0], image)
    job = Job(kind="inversion", label="test")
    latent = invert_images(str(ckpt), [str(image)], folder / "out", settings=dict(FAST), class_index=1,
                           camera=f"yaw={pose.yaw!r},pitch={pose.pitch!r}", video=False, mesh=False, device="cpu",
                           job=job)
    return {"ckpt": str(ckpt), "image": image, "pose": pose, "latent": latent, "job": job, "folder": folder}


def _by_hand(model_file: str, latent_file, pose: Pose, resolution: int) -> np.ndarray:
    """The picture of an inversion record rendered without the viewer: the npz read with numpy, its
    noise maps copied into the model's buffers by name, its ws through the synthesis network, the
    accelerated path at the pose (what the scene's exact frame is)."""
    G = open_model(model_file, device="cpu").G.eval()
    with np.load(latent_file, allow_pickle=False) as npz:
        ws = torch.from_numpy(npz["ws"].astype(np.float32))
        noise = {k[len("noise."):]: torch.from_numpy(npz[k]) for k in npz.files if k.startswith("noise.")}
    buffers = dict(G.named_buffers())
    with torch.no_grad():
        for name, value in noise.items():
            buffers[name].copy_(value)
        field = G.field_from_ws(ws, noise_mode="const")
        opts = options_at_distance(G.render_options(deterministic=True, density_noise_std=0.0),
                                   math.sqrt(sum(v * v for v in pose.origin())), G.cfg.camera.radius)
        out = field_renderer("accelerated", field, opts).render(pose.to_camera(), resolution)
        rgb = picture(out, "rgb", opts)
    return ((rgb[0].clamp(-1, 1) + 1) * 0.5).permute(1, 2, 0).numpy()


def test_a_latent_file_renders_what_its_ws_and_noise_render(tiny):
    outcome = tiny["job"].result
    assert outcome is not None and outcome.latent_file == tiny["latent"] and outcome.latent_file.is_file()
    assert outcome.model_file.name == "photo.pti.ckpt" and outcome.model_file.is_file()
    request = RenderRequest(model_path=str(outcome.model_file), pose=outcome.pose, resolution=64,
                            latent_file=str(outcome.latent_file))
    scene = Scene(device="cpu", use_preview_module=False)
    frame = scene.render(request)
    assert frame.ok, frame.error
    expected = _by_hand(str(outcome.model_file), outcome.latent_file, outcome.pose, 64)
    # the same computation in the same order: equal up to float rounding of [0, 1] pixels
    np.testing.assert_allclose(frame.image[..., :3], expected, atol=1e-5)
    # the latent, not a seed, is what the frame shows: seed 0 of the same model looks different
    seed_frame = scene.render(request.with_values(latent_file=None))
    assert np.abs(seed_frame.image[..., :3] - frame.image[..., :3]).max() > 0.05
    # seed, class and psi do not matter for a latent file (one cached field)
    assert request.with_values(seed=7, psi=0.3).latent_key == request.latent_key
    assert request.latent_key == LatentKey(str(outcome.model_file), 0, None, 1.0, "const", str(outcome.latent_file))


def test_a_bad_latent_file_is_an_error_frame_of_one_line(tiny, tmp_path):
    bad = tmp_path / "x.inversion.npz"
    bad.write_bytes(b"not a zip")
    frame = Scene(device="cpu", use_preview_module=False).render(
        RenderRequest(model_path=tiny["ckpt"], resolution=64, latent_file=str(bad)))
    assert not frame.ok and str(bad) in frame.error and "\n" not in frame.error


def test_the_job_reports_stages_previews_and_the_result(tiny):
    job, outcome = tiny["job"], tiny["job"].result
    assert job.target is not None and job.target.shape == (16, 16, 3) and job.target.dtype == np.uint8
    # the input thumbnail is the picture the model was asked to reproduce
    assert np.abs(job.target.astype(int) - np.asarray(Image.open(tiny["image"]).convert("RGB")).astype(int)).max() <= 1
    assert job.preview is not None and job.preview.shape == (16, 16, 3)
    assert job.preview_count >= FAST["steps"] + FAST["pti_steps"]     # preview_every=1: one a step, and the final
    assert job.detail["done"] == 1 and job.detail["stage"] in ("latent", "tuning")
    assert outcome.class_index == 1 and outcome.pose.yaw == pytest.approx(tiny["pose"].yaw)
    assert outcome.line.startswith("photo: PSNR ") and "class 1" in outcome.line
    assert set(outcome.outputs) == {"npz", "ckpt", "figure"}


class GatedJob(Job):
    """Pauses at the first progress report of the fit itself (a stage named) until released, so the
    test cancels at a known point whatever the machine's speed; records every progress value."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.reached, self.go, self.seen = threading.Event(), threading.Event(), []

    def report(self, fraction, message=None):
        super().report(fraction, message)
        self.seen.append(self.progress)
        if self.detail.get("stage") and not self.reached.is_set():
            self.reached.set()
            self.go.wait(WAIT)


def test_cancel_stops_the_fit_and_writes_nothing(tiny, tmp_path):
    runner = JobRunner(device="cpu")
    runner.job_class = GatedJob
    out = tmp_path / "cancelled"
    job = runner.start_inversion(tiny["ckpt"], [str(tiny["image"])], out,
                                 settings=dict(FAST, steps=200, pti_steps=100), class_index=1, video=False,
                                 mesh=False)
    assert job.reached.wait(WAIT), job.message
    assert job.state == "running" and 0 < job.progress < 1 and job.target is not None
    job.cancel()
    job.go.set()
    assert job.wait(WAIT) and job.state == "cancelled", job.message
    assert job.result is None and not any(out.glob("*")), list(out.glob("*"))
    assert job.seen == sorted(job.seen)                   # the bar never went back


def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path):
    out = tmp_path / "bad"
    cases = [
        (dict(images=[str(tmp_path / "missing.png")]), "missing.png"),
        (dict(images=[str(tiny["image"])], class_index=9), "class 9"),
        (dict(images=[str(tiny["image"])], vgg_path=str(tmp_path / "vgg.pth")), "vgg.pth"),
        (dict(images=[str(tiny["image"])], settings={"steps": 0}), "steps"),
        (dict(images=[str(tiny["image"]), str(tiny["image"])], mask_path=str(tiny["image"])), "mask"),
        (dict(images=[]), "choose an image"),
    ]
    for kwargs, named in cases:
        images = kwargs.pop("images")
        with pytest.raises(TriganError) as err:
            invert_images(tiny["ckpt"], images, out, device="cpu", **kwargs)
        assert named in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_a_video_export_of_the_latent_is_trigan_render_latent(tiny, tmp_path):
    outcome = tiny["job"].result
    frames = export_video(str(outcome.model_file), None, None, 0.7, "front_circle", 2, 30.0, 16,
                          tmp_path / "job" / "clip", fmt="png", base_pose=outcome.pose,
                          latent_file=str(outcome.latent_file), device="cpu")
    assert main(["render", str(outcome.model_file), "--latent", str(outcome.latent_file), "--out",
                 str(tmp_path / "cli"), "--vis", "video", "--trajectory", "front_circle", "--frames", "2",
                 "--resolution", "16", "--format", "png", "--device", "cpu", "--quiet"]) == 0
    cli = [p for p in (tmp_path / "cli").iterdir() if p.is_dir()]
    assert len(cli) == 1
    ours = sorted(frames.iterdir())
    assert [p.name for p in ours] == sorted(p.name for p in cli[0].iterdir()) and len(ours) == 2
    for p in ours:
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(cli[0] / p.name)))


# -- the panel's conversions ------------------------------------------------------------------------

def test_camera_degrees_become_trigans_radians():
    values = parse_camera(camera_spec(-30.0, 75.0))
    assert values["yaw"] == pytest.approx(math.radians(-30.0)) and values["pitch"] == pytest.approx(math.radians(75.0))
    assert apply_camera_values(Pose(), values).pitch == pytest.approx(math.radians(75.0))
    for bad in ((0.0, 0.0), (0.0, 180.0), (float("nan"), 90.0)):
        with pytest.raises(TriganError):
            camera_spec(*bad)


def test_classes_images_and_thumbnails():
    assert class_choices(["mushroom", "table"], 3) == ["try all", "0: mushroom", "1: table", "2: class 2"]
    assert class_choices([], 0) == []
    assert [class_of(c) for c in ("try all", "0: mushroom", "2: class 2", "")] == [None, 0, 2, None]
    assert split_images(" a.png ; b.jpg;; ") == ["a.png", "b.jpg"]
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    big = thumbnail(small, 128)
    assert big.shape == (128, 128, 4) and big.dtype == np.float32 and (big[..., 3] == 1).all()
    # nearest upsampling by 8: every 8x8 block is its source pixel
    np.testing.assert_allclose(big[::8, ::8, :3], small / 255.0, atol=1e-7)
    np.testing.assert_allclose(big[7::8, 7::8, :3], small / 255.0, atol=1e-7)
    assert np.allclose(thumbnail(None, 8)[..., :3], 0.2)
