"""The viewer's scene and render worker on a tiny random model: newest request wins, cancellation
stops a render early, errors become frames, frames are reproducible bit for bit, modes and
backgrounds are consistent with each other; exact frames refine progressively (partial frames
first, the final one equal to a one-shot render, a new request cancels the refinement), and the
progress estimate and the words the GUI shows for it."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from conftest import THREEDGP_FIXTURES, tiny_config
from trigan.core.cameras import Pose, sample_camera_prior
from trigan.core.checkpoint import save_checkpoint
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.viewer import scene as scene_mod
from trigan.viewer.panels.status import class_label, describe_work, format_duration
from trigan.viewer.render_request import RenderRequest
from trigan.viewer.render_worker import (
    SLOW_EXACT_S,
    InfoError,
    RenderWorker,
    Throughput,
    WorkerStatus,
    seconds_left,
)
from trigan.viewer.scene import (
    PATH_EXACT,
    PATH_FIRST_LOOK,
    PATH_PREVIEW_FALLBACK,
    ModelInfo,
    Scene,
    compose_partial,
    refinement_order,
    refinement_strides,
)

WAIT = 120.0   # generous: the machine is shared; no test asserts on time


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    path = tmp_path_factory.mktemp("viewer") / "tiny.ckpt"
    save_checkpoint(path, cfg, Generator(cfg.model))
    return str(path)


def request(path, **kw):
    base = dict(seed=1, class_index=0, psi=0.7, pose=Pose(yaw=0.2, pitch=1.4, radius=1.0, fov=30.0),
                resolution=64, quality="exact")
    base.update(kw)
    return RenderRequest(path, **base)


class RecordingScene(Scene):
    """A real Scene that records what it was asked to render and how far each render got, and can
    hold a render after its first chunk until the test lets it go (to make races deterministic)."""

    def __init__(self, hold_first=False):
        super().__init__(device="cpu", use_preview_module=False)
        self.started, self.finished, self.progress = [], [], {}
        self.in_flight = threading.Event()
        self.go = threading.Event()
        if not hold_first:
            self.go.set()

    def render(self, req, should_cancel=None, progress=None, **hooks):
        self.started.append(req)
        n = len(self.started)

        def record(done, total):
            self.progress.setdefault(n, []).append((done, total))
            if progress is not None:
                progress(done, total)
            if n == 1:
                self.in_flight.set()
                self.go.wait(WAIT)
        frame = super().render(req, should_cancel, record, **hooks)
        self.finished.append(req)
        return frame


def test_newest_request_wins_and_stale_ones_are_dropped(tiny_ckpt):
    scene = RecordingScene(hold_first=True)
    worker = RenderWorker(scene_factory=lambda: scene)
    try:
        first = request(tiny_ckpt, quality="preview", resolution=128)
        worker.submit(first)
        assert scene.in_flight.wait(WAIT)
        later = [request(tiny_ckpt, quality="preview", pose=Pose(yaw=0.01 * k, pitch=1.4, fov=30.0))
                 for k in range(10)]
        for r in later:
            worker.submit(r)
        scene.go.set()
        assert worker.wait_idle(WAIT)
        # the preview in flight finished (a drag must show frames); of the ten, only the last ran
        assert scene.started == [first, later[-1]]
        assert worker.latest().request == later[-1] and worker.latest().ok
        assert worker.requests_dropped == 9 and worker.frames_rendered == 2
        # the same request again is not rendered again
        worker.submit(later[-1])
        assert worker.wait_idle(WAIT) and len(scene.started) == 2
    finally:
        worker.stop()
    assert not worker.alive


def test_a_new_request_cancels_the_render_in_flight_early(tiny_ckpt):
    scene = RecordingScene(hold_first=True)
    worker = RenderWorker(scene_factory=lambda: scene)
    try:
        slow = request(tiny_ckpt, resolution=1024)
        worker.submit(slow)
        assert scene.in_flight.wait(WAIT)
        assert worker.busy and 0 < worker.progress < 1
        quick = request(tiny_ckpt, resolution=64, seed=2)
        worker.submit(quick)
        scene.go.set()
        assert worker.wait_idle(WAIT)
        done, total = scene.progress[1][-1]
        assert len(scene.progress[1]) == 1 and done < total       # stopped after its first chunk
        assert slow not in scene.finished and worker.renders_cancelled == 1
        assert worker.latest().request == quick and worker.latest().ok
    finally:
        worker.stop()


def test_errors_become_frames_and_the_worker_keeps_going(tiny_ckpt, tmp_path):
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        missing = request(str(tmp_path / "nope.ckpt"))
        worker.submit(missing)
        assert worker.wait_idle(WAIT)
        frame = worker.latest()
        assert frame.request == missing and not frame.ok and "nope.ckpt" in frame.error
        assert "\n" not in frame.error and frame.image.shape == (64, 64, 4)
        bad_class = request(tiny_ckpt, class_index=99)
        worker.submit(bad_class)
        assert worker.wait_idle(WAIT)
        assert "class 99" in worker.latest().error
        good = request(tiny_ckpt)
        worker.submit(good)
        assert worker.wait_idle(WAIT)
        assert worker.latest().ok and worker.latest().request == good
        assert worker.latest().image[..., :3].std() > 0
    finally:
        worker.stop()


def test_model_info(tiny_ckpt, tmp_path):
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        worker.open(tiny_ckpt)
        worker.open(str(tmp_path / "missing.ckpt"))
        assert worker.wait_idle(WAIT)
        info = worker.model_info(tiny_ckpt)
        assert isinstance(info, ModelInfo)
        cfg = tiny_config(**{"model.camera.fov": 30.0}).model
        assert info.c_dim == cfg.c_dim and info.img_resolution == cfg.img_resolution
        assert info.start_pose == Pose.for_model(cfg.camera)
        assert info.summary["classes"] == cfg.c_dim and info.backgrounds == ("model", "white", "black")
        bad = worker.model_info(str(tmp_path / "missing.ckpt"))
        assert isinstance(bad, InfoError) and "missing.ckpt" in bad.error
    finally:
        worker.stop()


def test_same_request_gives_the_same_frame_bit_for_bit(tiny_ckpt):
    req = request(tiny_ckpt, mode="rgb", sample_multiplier=1.5)
    a = Scene(device="cpu", use_preview_module=False).render(req)
    scene = Scene(device="cpu", use_preview_module=False)
    scene.render(request(tiny_ckpt, seed=5))          # other latents in the cache in between
    b = scene.render(req)
    c = scene.render(req)
    assert a.ok and b.ok and c.ok and a.path_used == PATH_EXACT
    assert np.array_equal(a.image, b.image) and np.array_equal(b.image, c.image)
    # and through the worker
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        worker.submit(req)
        assert worker.wait_idle(WAIT)
        assert np.array_equal(worker.latest().image, a.image)
    finally:
        worker.stop()


def test_modes_and_backgrounds_agree(tiny_ckpt):
    scene = Scene(device="cpu", use_preview_module=False)
    white = scene.render(request(tiny_ckpt, background="white"))
    black = scene.render(request(tiny_ckpt, background="black"))
    opacity = scene.render(request(tiny_ckpt, mode="opacity"))
    depth = scene.render(request(tiny_ckpt, mode="depth"))
    normals = scene.render(request(tiny_ckpt, mode="normals"))
    for f in (white, black, opacity, depth, normals):
        assert f.ok, f.error
        assert f.image.dtype == np.float32 and f.image.shape == (64, 64, 4)
        assert f.image.min() >= 0 and f.image.max() <= 1 and np.all(f.image[..., 3] == 1)
    # compositing over white and over black differ by the transparency, where nothing clamps
    op = opacity.image[..., 0]
    unclamped = (white.image[..., :3] < 1).all(-1) & (black.image[..., :3] > 0).all(-1)
    assert unclamped.mean() > 0.5
    diff = white.image[..., :3] - black.image[..., :3]
    np.testing.assert_allclose(diff[unclamped], np.repeat((1 - op)[unclamped][:, None], 3, 1), atol=2e-6)
    # depth and opacity are gray; depth is dark where nothing is (scaled by the opacity)
    assert np.array_equal(depth.image[..., 0], depth.image[..., 1])
    assert np.all(depth.image[..., 0] <= op + 1e-6)
    # normals are unit vectors where the surface is opaque: colour c = (n + 1) / 2
    solid = op > 0.999
    if solid.any():
        n = normals.image[..., :3][solid] * 2 - 1
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-3)


def test_preview_falls_back_to_half_resolution_accelerated(tiny_ckpt):
    scene = Scene(device="cpu", use_preview_module=False)
    frame = scene.render(request(tiny_ckpt, quality="preview", resolution=128))
    assert frame.ok and frame.path_used == PATH_PREVIEW_FALLBACK
    assert frame.stats["rendered_resolution"] == 64 and frame.image.shape == (128, 128, 4)
    assert "preview" in frame.stats["preview_problem"]
    # the half-resolution render, upsampled, approximates the full one
    exact = scene.render(request(tiny_ckpt, resolution=128))
    assert np.abs(frame.image - exact.image).mean() < 0.05


def test_preview_module_is_used_when_it_can_run(tiny_ckpt):
    module, problem = scene_mod.preview_availability()
    frame = Scene(device="cpu").render(request(tiny_ckpt, quality="preview", resolution=64))
    assert frame.ok, frame.error
    assert frame.path_used == (scene_mod.PATH_PREVIEW_BAKED if module is not None else PATH_PREVIEW_FALLBACK)
    if module is None:
        return
    # full resolution (how close it comes to the exact frame is tests/test_preview.py's business: this
    # model's random weights put density outside the scene box, which no baked volume holds)
    assert frame.stats["rendered_resolution"] == 64 and frame.image.shape == (64, 64, 4)


def test_the_ray_interval_follows_the_camera_distance(tiny_ckpt):
    """A dolly zoom (3x the distance, fov narrowed to keep the framing) sees the same depth picture:
    the marched interval moved out with the camera (depth is shown over that interval)."""
    scene = Scene(device="cpu", use_preview_module=False)
    fov = math.degrees(2 * math.atan(math.tan(math.radians(15.0)) / 3))
    near = scene.render(request(tiny_ckpt, mode="depth", pose=Pose(yaw=0.2, pitch=1.4, radius=1.0, fov=30.0)))
    far = scene.render(request(tiny_ckpt, mode="depth", pose=Pose(yaw=0.2, pitch=1.4, radius=3.0, fov=fov)))
    assert near.ok and far.ok
    spread = near.image[..., 0].std()
    assert spread > 0.01
    assert np.abs(near.image - far.image).mean() < 0.25 * spread


def test_sample_multiplier_scales_the_samples_per_ray(tiny_ckpt):
    scene = Scene(device="cpu", use_preview_module=False)
    one = scene.render(request(tiny_ckpt))
    two = scene.render(request(tiny_ckpt, sample_multiplier=2.0))
    half = scene.render(request(tiny_ckpt, sample_multiplier=0.5))
    n1, n2, nh = (f.stats["field_evaluations"] for f in (one, two, half))
    assert nh < n1 < n2 <= 2 * n1 + 64 * 64           # the tail sample is not multiplied
    # more samples of the same integral: the pictures agree closely
    assert np.abs(two.image - one.image).mean() < 0.02


def test_a_camera_drawn_from_a_3dgp_models_distribution_is_its_posterior():
    """The Camera panel's draw: prior camera number `draw` (a generator seeded by it) through the
    camera generator with the seed's latent and the class, as core computes it directly."""
    pkl = str(THREEDGP_FIXTURES / "3dgp_cond.pkl")
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        key = worker.draw_camera(pkl, 7, 3, 2)
        assert worker.wait_idle(WAIT)
        drawn = worker.drawn_camera(key)
        assert isinstance(drawn, Pose) and worker.drawn_camera(key) is None   # handed out once
    finally:
        worker.stop()
    G = open_model(pkl).G
    prior = sample_camera_prior(G.cfg.camera, 1, torch.Generator().manual_seed(2))
    with torch.no_grad():
        post = G.posterior_camera(G.latents([7]), G.labels([3], 1), prior_camera=prior)
    assert (drawn.yaw, drawn.pitch, drawn.fov, drawn.radius) == pytest.approx(
        (float(post.yaw[0]), float(post.pitch[0]), float(post.fov[0]), float(post.radius[0])), abs=1e-5)
    assert drawn.look_at == pytest.approx(tuple(post.look_at[0].tolist()), abs=1e-6)
    lo, hi = G.cfg.camera.fov_min, G.cfg.camera.fov_max
    assert lo <= drawn.fov <= hi and 0 < math.dist(drawn.look_at, (0, 0, 0)) <= 0.2


def test_drawing_a_camera_from_dataset_poses_says_there_is_nothing_to_draw(tiny_ckpt):
    worker = RenderWorker(scene_factory=lambda: Scene(device="cpu", use_preview_module=False))
    try:
        key = worker.draw_camera(tiny_ckpt, 0, 0, 1)
        assert worker.wait_idle(WAIT)
        answer = worker.drawn_camera(key)
    finally:
        worker.stop()
    assert isinstance(answer, InfoError) and "dataset's poses" in answer.error and "\n" not in answer.error


# -- progressive refinement ----------------------------------------------------------------------------

def eager_scene(**kw):
    """A Scene that shows every step of a refinement (the viewer's waits only apply to slow renders)."""
    scene = Scene(device="cpu", use_preview_module=False, **kw)
    scene.partial_after_s, scene.partial_every_s = 0.0, 0.0
    return scene


@pytest.mark.parametrize("res", [64, 128, 256, 512, 1024])
def test_the_refinement_order_takes_every_pixel_once_coarse_lattices_first(res):
    strides = refinement_strides(res)
    assert strides[-1] == 1 and all(a == 2 * b for a, b in zip(strides[:-1], strides[1:], strict=True))
    assert strides[0] <= 8 and (strides[0] == 1 or res // strides[0] >= 64)
    order, ends = refinement_order(res, strides)
    assert sorted(order.tolist()) == list(range(res * res)) and ends[-1] == res * res
    rows, cols = np.divmod(order.numpy(), res)
    for stride, end in zip(strides, ends, strict=True):
        # the first `end` pixels are exactly the lattice of this stride
        on = (rows[:end] % stride == 0) & (cols[:end] % stride == 0)
        assert on.all() and end == math.ceil(res / stride) ** 2


def test_a_partial_image_fills_what_is_not_done_from_the_coarse_lattice():
    res, stride = 8, 4
    values = torch.arange(res * res, dtype=torch.float32)[:, None]
    buffers = {"rgb": values.repeat(1, 3), "depth": values, "opacity": values}
    done = torch.zeros(res * res, dtype=torch.bool)
    done[[0, 4, 32, 36, 9]] = True           # the stride-4 lattice and one pixel of the next lattice
    out = compose_partial(buffers, res, done, stride)
    img = out.depth[0, 0].numpy()
    assert img[1, 1] == 9                     # done: its own value
    assert img[0, 3] == 0 and img[3, 3] == 0 and img[2, 5] == 4 and img[7, 7] == 36   # the block's lattice pixel
    assert out.rgb.shape == (1, 3, res, res) and out.normals is None


def test_exact_frames_refine_in_steps_and_end_equal_to_a_one_shot_render(tiny_ckpt):
    req = request(tiny_ckpt, resolution=256)
    one_shot = Scene(device="cpu", use_preview_module=False).render(req)
    scene = eager_scene()
    scene.render(request(tiny_ckpt, resolution=64))          # caches built: no first look below
    partials = []
    final = scene.render(req, partial=partials.append)
    assert final.ok and not final.partial and final.path_used == PATH_EXACT
    assert final.stats["partial_frames"] == len(partials) >= 3
    assert all(p.partial and p.request == req and p.image.shape == final.image.shape for p in partials)
    refined = [p.stats["refined"] for p in partials]
    assert refined == sorted(refined) and refined[-1] < 1
    # the strides seen: 4 (every 4th pixel), then 2, then the last lattice in bands
    assert [p.stats["stride"] for p in partials][0] == 4 and partials[-1].stats["stride"] == 2
    # every ray is marched exactly as in the one-shot render, in another order. What could differ:
    # float rounding of batched evaluations and early termination (transmittance < 1e-4) at another
    # round boundary, both far below 1e-4 of the [0, 1] colour scale (measured: equal bit for bit).
    assert np.abs(final.image - one_shot.image).max() <= 1e-4
    # the steps approach the final image
    errors = [np.abs(p.image - final.image).mean() for p in partials]
    assert errors[-1] <= errors[0] and errors[0] < 0.1


def test_a_first_look_comes_while_a_latents_caches_build(tiny_ckpt):
    scene = eager_scene()
    partials = []
    final = scene.render(request(tiny_ckpt, resolution=128, quality="preview"), partial=partials.append)
    assert final.ok and not final.partial
    assert partials and partials[0].path_used == PATH_FIRST_LOOK and partials[0].partial
    assert partials[0].image.shape == (128, 128, 4) and partials[0].stats["rendered_resolution"] == 64
    assert np.abs(partials[0].image - final.image).mean() < 0.1     # a coarse picture of the same thing
    again = []
    scene.render(request(tiny_ckpt, resolution=128, quality="preview", pose=Pose(yaw=1.0, pitch=1.4,
                                                                                      fov=30.0)), partial=again.append)
    assert again == []                         # cached latent: the real frame is quick, no first look


class HoldingScene(Scene):
    """Holds an exact render after its first refinement step until the test lets it go."""

    def __init__(self):
        super().__init__(device="cpu", use_preview_module=False)
        self.partial_after_s, self.partial_every_s = 0.0, 0.0
        self.first_partial, self.go = threading.Event(), threading.Event()
        self.progress = []

    def render(self, req, should_cancel=None, progress=None, partial=None, stage=None):
        def hold(frame):
            partial(frame)
            if frame.path_used == PATH_EXACT and not self.first_partial.is_set():     # a refinement step
                self.first_partial.set()
                self.go.wait(WAIT)

        def record(done, total):
            self.progress.append((req, done, total))
            if progress is not None:
                progress(done, total)
        return super().render(req, should_cancel, record, hold if partial is not None else None, stage)


def test_a_new_request_cancels_the_refinement_and_the_partial_is_not_taken_for_the_frame(tiny_ckpt):
    scene = HoldingScene()
    worker = RenderWorker(scene_factory=lambda: scene)
    try:
        worker.submit(request(tiny_ckpt, resolution=64))            # caches; teaches the throughput
        assert worker.wait_idle(WAIT)
        assert worker.throughput.rate is not None
        exact = request(tiny_ckpt, resolution=256)
        worker.submit(exact)
        assert scene.first_partial.wait(WAIT)
        shown = worker.latest()
        assert shown.partial and shown.request == exact and worker.busy
        status = worker.status()
        assert status.activity == "rendering" and status.request == exact and 0 < status.fraction < 1
        assert status.seconds_left is not None and status.expected_s is not None
        moved = request(tiny_ckpt, resolution=256, quality="preview",
                        pose=Pose(yaw=0.9, pitch=1.4, radius=1.0, fov=30.0))
        worker.submit(moved)
        scene.go.set()
        assert worker.wait_idle(WAIT)
        done = [d for r, d, _ in scene.progress if r == exact]
        assert max(done) < 256 * 256                                # stopped part way
        assert worker.renders_cancelled == 1 and worker.latest().request == moved and not worker.latest().partial
        assert worker.status() is None
        # back to the exact view: the partial frame left from before does not count as its frame
        worker.submit(exact)
        assert worker.wait_idle(WAIT)
        assert worker.latest().request == exact and not worker.latest().partial and worker.latest().ok
    finally:
        worker.stop()


def test_the_estimate_arithmetic():
    meter = Throughput(weight=0.5)
    assert meter.seconds_for(256 * 256, 1.0) is None
    meter.measured(256 * 256, 1.0, 2.0)                  # 32768 pixel-samples per second
    assert meter.seconds_for(512 * 512, 1.0) == pytest.approx(8.0)
    assert meter.seconds_for(256 * 256, 2.0) == pytest.approx(4.0)
    meter.measured(256 * 256, 1.0, 4.0)                  # half as fast: the average moves half way
    assert meter.rate == pytest.approx(0.75 * 32768)
    # a render in flight: its own pace once it has run a while ...
    assert seconds_left(done=250, total=1000, elapsed=5.0, expected_total=100.0) == pytest.approx(15.0)
    assert seconds_left(done=50, total=1000, elapsed=0.2, expected_total=None) == pytest.approx(3.8)
    # ... before that, the expected time of the frame less what was spent, or nothing
    assert seconds_left(done=1, total=1000, elapsed=0.1, expected_total=10.0) == pytest.approx(9.9)
    assert seconds_left(done=1, total=1000, elapsed=0.1, expected_total=None) is None
    assert seconds_left(done=0, total=1000, elapsed=20.0, expected_total=10.0) == 0.0


def test_the_words_for_progress_durations_and_classes(tiny_ckpt):
    assert [format_duration(s) for s in (0.2, 3.4, 45, 59.4, 61, 7 * 60 + 20, 3 * 3600 + 5 * 60)] == \
        ["1 s", "3 s", "45 s", "59 s", "1 min", "7 min", "3 h 05 min"]
    exact = request(tiny_ckpt, resolution=512)
    assert describe_work(None) is None
    assert describe_work(WorkerStatus("loading demo.ckpt")) == "loading demo.ckpt ..."
    assert describe_work(WorkerStatus("building the preview", exact)) == "building the preview ..."
    assert describe_work(WorkerStatus("rendering", exact.with_values(quality="preview"), 0.5)) is None
    assert describe_work(WorkerStatus("rendering", exact, 0.4, 3.2, 5.3)) == "exact 512^2: 40 %, about 3 s left"
    assert describe_work(WorkerStatus("rendering", exact, 0.0)) == "exact 512^2: 0 %"
    slow = describe_work(WorkerStatus("rendering", exact.with_values(resolution=1024), 0.12, 370.0, 420.0), "cpu")
    assert slow.startswith("exact 1024^2: 12 %, about 6 min left") and "slow on this cpu: about 7 min in all" in slow
    assert WorkerStatus("rendering", exact, 0.1, 1.0, SLOW_EXACT_S + 1).slow
    assert class_label(2, ("mushroom", "table", "snowman")) == "class snowman"
    assert class_label(2, ()) == "class 2" and class_label(None, ("a",)) == "" and class_label(1, ("a", " ")) == "class 1"
