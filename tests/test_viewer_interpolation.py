"""Interpolation in w (viewer/interpolation.py, the Interpolate tab): t = 0 and t = 1 are exactly the
two ends' fields (seeds in every noise mode, inverted latent files with their noise maps), the
midpoint is the field of the mean of the ends' ws (and noise maps), the viewer's scene renders a
mix, and the video runs t = 0 .. 1 with its first and last frames the ends' single renders. The
panel's logic (t typed, animate, sweep, settings read back) runs against a small fake viewer."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import dearpygui.dearpygui as dpg
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from trigan.core.cameras import Pose
from trigan.core.checkpoint import save_checkpoint
from trigan.core.errors import TriganError
from trigan.core.exports import ViewRenderer
from trigan.core.generator import Generator
from trigan.core.model_io import open_model
from trigan.core.views import LatentMapper, seeded_noise
from trigan.training.inversion import InversionSettings, noise_buffers
from trigan.training.inversion_outputs import write_record
from trigan.viewer.interpolation import (
    export_interpolation,
    interpolation_times,
    latent_ends,
    mixed_field,
    mixed_ws,
    noise_layers,
    still_trajectory,
)
from trigan.viewer.jobs import Job
from trigan.viewer.panels import interpolate as panel
from trigan.viewer.render_request import Frame, LatentMix, RenderRequest, ViewValues
from trigan.viewer.scene import Scene, inverted_field
from trigan.viewer.settings import ViewerSettings

CLASS, PSI = 1, 0.7
SEED_A, SEED_B = 3, 11


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny conditional model whose noise matters (noise strengths set to 0.3; a fresh model's are
    0) and an inverted latent file for it: W+ ws and new noise maps for every other noise layer."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("interp")
    cfg = tiny_config(**{"model.camera.fov": 30.0})
    G = Generator(cfg.model).eval()
    with torch.no_grad():
        for _, layer in noise_layers(G):
            layer.noise_strength.fill_(0.3)
    ckpt = folder / "tiny.ckpt"
    save_checkpoint(ckpt, cfg, G)
    G = open_model(str(ckpt), device="cpu").G.eval()
    gen = torch.Generator().manual_seed(1)
    names = sorted(noise_buffers(G))
    noise = {name: torch.randn(noise_buffers(G)[name].shape, generator=gen) for name in names[::2]}
    ws = torch.randn(1, G.synthesis.num_ws, G.cfg.mapping.w_dim, generator=gen)
    r = G.cfg.img_resolution
    result = SimpleNamespace(target_name="photo", ws=ws, class_index=CLASS, pose=Pose.for_generator(G, CLASS),
                             pose_given=True, noise=noise, tuned_state=None,
                             reconstruction=torch.zeros(3, r, r), reconstruction_latent=torch.zeros(3, r, r),
                             metrics={}, settings=InversionSettings())
    latent = write_record(folder / "photo.inversion.npz", result, G, ckpt)
    return SimpleNamespace(ckpt=str(ckpt), G=G, latent=str(latent), noise=noise, ws=ws, folder=folder,
                           pose=Pose.for_generator(G, CLASS).with_values(yaw=0.3))


def request(tiny, **values) -> RenderRequest:
    base = dict(model_path=tiny.ckpt, seed=SEED_A, class_index=CLASS, psi=PSI, pose=tiny.pose, resolution=64)
    return RenderRequest(**{**base, **values})


def seed_field(G, seed: int, noise_mode: str = "const"):
    """A seed's field computed by hand, as the viewer's scene describes its seed fields."""
    noise = seeded_noise(seed) if noise_mode == "random" else noise_mode
    with torch.no_grad():
        return G.field_from_ws(LatentMapper(G, PSI).ws([(CLASS, seed)]), noise_mode=noise)


def planes(field) -> torch.Tensor:
    return field.planes


# --------------------------------------------------------------------------------------------------
# The field

def test_noise_layers_are_listed_in_the_order_the_synthesis_calls_them(tiny):
    G = tiny.G
    called = []

    def record(batch, resolution, device, dtype):
        called.append(resolution)
        return torch.zeros(batch, 1, resolution, resolution, device=device, dtype=dtype)
    with torch.no_grad():
        G.synthesis(LatentMapper(G, PSI).ws([(CLASS, 0)]), noise_mode=record)
    assert called == [layer.resolution for _, layer in noise_layers(G)]
    assert {name for name, _ in noise_layers(G)} == set(noise_buffers(G))


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_t0_and_t1_are_the_two_seeds_fields_exactly(tiny, noise_mode):
    G = tiny.G
    for t, seed in ((0.0, SEED_A), (1.0, SEED_B)):
        mixed = mixed_field(G, request(tiny, noise_mode=noise_mode, mix=LatentMix(t, seed=SEED_B)))
        # torch.lerp is exact at 0 and 1: the same ws and noise, the same arithmetic
        assert torch.equal(planes(mixed), planes(seed_field(G, seed, noise_mode))), (t, noise_mode)
    # the two seeds differ, so the equalities above say something
    assert not torch.allclose(planes(seed_field(G, SEED_A, noise_mode)), planes(seed_field(G, SEED_B, noise_mode)))


def test_an_inverted_file_at_either_end_is_its_own_field(tiny):
    G = tiny.G
    own = planes(inverted_field(G, tiny.latent))
    from_file = request(tiny, latent_file=tiny.latent, mix=LatentMix(0.0, seed=SEED_B))
    assert torch.equal(planes(mixed_field(G, from_file)), own)
    assert torch.equal(planes(mixed_field(G, from_file.with_values(mix=LatentMix(1.0, seed=SEED_B)))),
                       planes(seed_field(G, SEED_B)))
    to_file = request(tiny, mix=LatentMix(1.0, latent_file=tiny.latent))
    assert torch.equal(planes(mixed_field(G, to_file)), own)
    assert torch.equal(planes(mixed_field(G, to_file.with_values(mix=LatentMix(0.0, latent_file=tiny.latent)))),
                       planes(seed_field(G, SEED_A)))


def test_the_midpoint_is_the_field_of_the_mean_w(tiny):
    G = tiny.G
    mid = request(tiny, mix=LatentMix(0.5, seed=SEED_B))
    start, end, noise_mode = latent_ends(G, mid)
    w0, w1 = (LatentMapper(G, PSI).ws([(CLASS, s)]) for s in (SEED_A, SEED_B))
    # 0.5 a + 0.5 b: one rounding of each product and the sum, so a float32 ulp or two
    torch.testing.assert_close(mixed_ws(start, end, 0.5), (w0 + w1) / 2, rtol=0, atol=1e-6)
    assert noise_mode == "const"
    with torch.no_grad():
        expected = G.field_from_ws((w0 + w1) / 2)
    torch.testing.assert_close(planes(mixed_field(G, mid)), planes(expected), rtol=1e-4, atol=1e-5)


def test_the_midpoint_to_a_file_averages_the_noise_maps_too(tiny):
    G = tiny.G
    mid = request(tiny, mix=LatentMix(0.5, latent_file=tiny.latent))
    w0 = LatentMapper(G, PSI).ws([(CLASS, SEED_A)])
    by_hand = copy.deepcopy(G)
    buffers = noise_buffers(by_hand)
    with torch.no_grad():
        for name, value in tiny.noise.items():
            buffers[name].copy_((buffers[name] + value) / 2)
        expected = by_hand.field_from_ws((w0 + tiny.ws) / 2, noise_mode="const")
    torch.testing.assert_close(planes(mixed_field(G, mid)), planes(expected), rtol=1e-4, atol=1e-5)
    # the noise matters here: without averaging it the field is another one
    with torch.no_grad():
        plain = G.field_from_ws((w0 + tiny.ws) / 2, noise_mode="const")
    assert not torch.allclose(planes(plain), planes(expected), atol=1e-4)


def test_the_scene_renders_a_mix_and_t0_is_the_plain_frame(tiny):
    scene = Scene(device="cpu", use_preview_module=False)
    plain = scene.render(request(tiny))
    at0 = scene.render(request(tiny, mix=LatentMix(0.0, seed=SEED_B)))
    at1 = scene.render(request(tiny, mix=LatentMix(1.0, seed=SEED_B)))
    other = scene.render(request(tiny, seed=SEED_B))
    for frame in (plain, at0, at1, other):
        assert frame.ok, frame.error
    np.testing.assert_array_equal(at0.image, plain.image)
    np.testing.assert_array_equal(at1.image, other.image)
    assert np.abs(plain.image - other.image).max() > 0.02
    bad = scene.render(request(tiny, mix=LatentMix(0.5, latent_file=str(tiny.folder / "missing.inversion.npz"))))
    assert not bad.ok and "\n" not in bad.error and "missing.inversion.npz" in bad.error


# --------------------------------------------------------------------------------------------------
# The video

def single_render(G, field, pose, resolution):
    renderer = ViewRenderer(G, resolution=resolution, batch=1)
    return next(iter(renderer.render(field, [0], still_trajectory(pose, 1), [0])))


def test_the_video_runs_from_the_current_latent_to_the_far_end(tiny, tmp_path):
    frames, res = 5, 32
    req = request(tiny, mix=LatentMix(0.0, seed=SEED_B))
    folder = export_interpolation(tiny.ckpt, req, frames, 10, res, tmp_path / "interp", fmt="png", device="cpu")
    pngs = sorted(Path(folder).glob("*.png"))
    assert len(pngs) == frames
    first, last = (np.asarray(Image.open(p).convert("RGB")) for p in (pngs[0], pngs[-1]))
    G = tiny.G
    np.testing.assert_array_equal(first, single_render(G, seed_field(G, SEED_A), tiny.pose, res))
    np.testing.assert_array_equal(last, single_render(G, seed_field(G, SEED_B), tiny.pose, res))
    middle = np.asarray(Image.open(pngs[2]).convert("RGB"))
    assert not np.array_equal(middle, first) and not np.array_equal(middle, last)
    np.testing.assert_allclose(interpolation_times(frames), [0, 0.25, 0.5, 0.75, 1])


def test_an_mp4_has_the_frames_asked_for(tiny, tmp_path):
    req = request(tiny, mix=LatentMix(0.0, latent_file=tiny.latent))
    job = Job(kind="video", label="test")
    path = export_interpolation(tiny.ckpt, req, 6, 12, 32, tmp_path / "a.mp4", device="cpu", job=job)
    assert path == tmp_path / "a.mp4" and path.is_file()
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 6
    assert job.progress == 1.0 and "6 frames" in job.message


def test_a_cancelled_video_leaves_nothing(tiny, tmp_path):
    job = Job(kind="video", label="test")
    job.cancel()
    with pytest.raises(Exception) as info:
        export_interpolation(tiny.ckpt, request(tiny, mix=LatentMix(0.0, seed=SEED_B)), 4, 10, 32,
                             tmp_path / "c.mp4", device="cpu", job=job)
    assert type(info.value).__name__ in ("JobCancelled", "RenderCancelled")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("values, words", [
    (dict(frames=1), "frames 1: expected 2.."), (dict(fps=0), "fps 0: expected a positive"),
    (dict(resolution=4), "resolution 4: expected 16..2048"), (dict(path="x.avi"), "unknown video format 'avi'"),
    (dict(output="opacity"), "output 'opacity'"), (dict(mix=None), "choose the far end"),
])
def test_bad_video_values_are_one_line_and_write_nothing(tiny, tmp_path, values, words):
    args = dict(frames=4, fps=10, resolution=32, path="v.mp4", output="rgb", mix=LatentMix(0.0, seed=1))
    args.update(values)
    req = request(tiny, mix=args.pop("mix"))
    with pytest.raises(TriganError) as info:
        export_interpolation(tiny.ckpt, req, args["frames"], args["fps"], args["resolution"],
                             tmp_path / args["path"], output=args["output"], device="cpu")
    assert words in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# The panel's logic, against a fake viewer

def test_ping_pong_rounding_and_the_sweeps_next_seed():
    assert [panel.ping_pong(p) for p in (0, 0.25, 0.5, 0.75, 1.0, 1.25)] == [0, 0.5, 1, 0.5, 0, 0.5]
    assert panel.rounded_t("0.12345") == 0.123
    for bad in ("x", "1.5", "-0.1", "nan"):
        with pytest.raises(TriganError, match="expected a number from 0 to 1"):
            panel.rounded_t(bad)
    assert panel.next_seed(7) == 8 and panel.next_seed(panel.MAX_SEED) == 0


def test_settings_read_back_fall_back_to_defaults_when_bad():
    good = dict(panel.DEFAULTS, to_seed=9, t=0.25, format="gif")
    assert panel.restored_settings(good) == good
    bad = {"to_seed": -1, "t": 2, "period": "fast", "frames": True, "format": "avi", "to_kind": 3}
    assert panel.restored_settings(bad) == panel.DEFAULTS
    assert panel.restored_settings("not a dict") == panel.DEFAULTS


class FakeViewer:
    """The members of ViewerState / ViewerActions the Interpolate panel uses."""

    def __init__(self):
        self.settings = ViewerSettings()
        self.view = ViewValues(seed=SEED_A)
        self.last_frame = None
        self.model_info = None
        self.pose = None
        self.device = None
        self.updates = []

    def update_view(self, **values):
        self.updates.append(values)
        self.view = ViewValues(**{**self.view.__dict__, **values})

    def show(self):
        """The frame of the current view arrives."""
        req = self.view.request("m.ckpt", Pose(), quality="preview")
        self.last_frame = Frame(req, np.zeros((64, 64, 4), np.float32), 1.0, "test")


@pytest.fixture
def built():
    dpg.create_context()
    try:
        fake = FakeViewer()
        p = panel.InterpolatePanel(fake, fake, runner=None)
        with dpg.window():
            p.build()
        yield fake, p
    finally:
        dpg.destroy_context()


def test_typing_t_shows_the_mix_and_off_drops_it(built):
    fake, p = built
    dpg.set_value(panel.TO_SEED, str(SEED_B))
    p.set_t("0.25")
    assert fake.view.mix == LatentMix(0.25, seed=SEED_B) and p.enabled
    p.set_t("1.5")
    assert "t '1.5': expected a number from 0 to 1" in p.message and fake.view.mix.t == 0.25
    dpg.set_value(panel.TO_SEED, "-3")
    p.set_t("0.5")
    assert "to seed '-3': expected a whole number" in p.message and fake.view.mix.t == 0.25
    dpg.set_value(panel.TO_SEED, str(panel.MAX_SEED))
    p.set_t("0.5")
    assert fake.view.mix == LatentMix(0.5, seed=panel.MAX_SEED) and p.message == ""
    p.turn_off()
    assert fake.view.mix is None and not p.enabled
    dpg.set_value(panel.TO_KIND, panel.TO_KINDS[1])
    dpg.set_value(panel.TO_FILE, "/no/such.inversion.npz")
    p.set_t(0.5)
    assert "no such file" in p.message and fake.view.mix is None and not p.enabled


def test_animate_takes_a_new_t_only_after_the_frame_arrived(built):
    fake, p = built
    p.tick(100.0)
    p.set_t(0.0)
    dpg.set_value(panel.PERIOD, 4.0)
    p.set_animating(True)
    fake.show()
    p.tick(101.0)                        # a quarter period in: t = 0.5
    assert fake.view.mix.t == 0.5
    p.tick(102.0)                        # its frame has not come: t stays
    assert fake.view.mix.t == 0.5
    fake.show()
    p.tick(102.0)                        # half a period: t = 1
    assert fake.view.mix.t == 1.0
    fake.show()
    p.tick(103.0)                        # on the way back
    assert fake.view.mix.t == 0.5 and p.panel_state()["animating"]


def test_the_sweep_steps_the_seed_after_each_interval_and_frame(built):
    fake, p = built
    dpg.set_value(panel.INTERVAL, 1.0)
    p.tick(10.0)
    p.set_sweeping(True)
    p.tick(10.5)
    assert fake.view.seed == SEED_A          # not yet an interval
    p.tick(11.0)
    assert fake.view.seed == SEED_A + 1
    p.tick(12.5)
    assert fake.view.seed == SEED_A + 1      # its frame has not arrived
    fake.show()
    p.tick(12.6)
    assert fake.view.seed == SEED_A + 2 and p.panel_state()["sweeping"]
    p.turn_off()
    assert not p.sweeping


def test_the_panel_state_and_settings_round_trip(built):
    fake, p = built
    dpg.set_value(panel.TO_SEED, "42")
    p.set_t(0.75)
    fake.show()
    state = p.panel_state()
    assert state["t"] == 0.75 and state["to_seed"] == 42 and state["frame_mix"] == {
        "t": 0.75, "seed": 42, "latent_file": None}
    s = ViewerSettings()
    p.store_settings(s)
    assert panel.restored_settings(s.panels["interpolate"])["to_seed"] == 42
    assert panel.restored_settings(s.panels["interpolate"])["t"] == 0.75
