"""The Interpolate tab as a person uses it (issue 34): a real window on a private 1280x800 Xvfb, real
clicks, drags and key strokes (xdotool; tests/gui_harness.py).

On the demo model: typing seed B and t shows the mix (the frame that arrives carries it, and its
pixels are neither end's); dragging the t slider changes t; Animate moves t by itself; the seed
sweep steps the Latent panel's seed; Off returns to the plain latent; Export writes an mp4 with the
frames asked for. The tests run in order on one viewer. Screenshots go to $TRIGAN_GUI_SHOTS (default
/tmp/trigan-gui-interpolate). Run only these:
`python -m pytest -m gui tests/test_viewer_gui_interpolate.py -s`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from gui_harness import START_TIMEOUT, Viewer, crop, screen_fixture, type_into, type_number, write_settings_at

SCREEN = WINDOW_SIZE = (1280, 800)
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-interpolate"))
SEED_B = 7
RENDER_TIMEOUT = 300.0            # exact frames of a new latent on a busy 2-core machine
EXPORT_TIMEOUT = 600.0

pytestmark = pytest.mark.gui

xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=64, last_export_folder=str(folder / "exports"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.settled()
        yield v
    finally:
        v.close()


def interp(s) -> dict:
    return (s.get("panels") or {}).get("interpolate") or {}


def frame_image(viewer, name: str) -> np.ndarray:
    s = viewer.state()
    return crop(viewer.screenshot(SHOTS / f"{name}.png"), s["image_rect"])


def test_typing_seed_b_and_t_shows_the_mix(viewer):
    plain = frame_image(viewer, "plain")
    viewer.click_item("tab_interpolate",
                      until=lambda s: s.get("tasks_tab") == "tab_interpolate", what="the Interpolate tab")
    type_into(viewer, "interp_to_seed", str(SEED_B))
    type_number(viewer, "interp_t_value", 0.4)   # (the default t is 0.5: a new value)
    mix = {"t": 0.4, "seed": SEED_B, "latent_file": None}
    s = viewer.wait_for(lambda s: interp(s).get("view_mix") == mix, 30, "the view's mix")
    assert s["view"]["mix"] == mix and interp(s)["enabled"]
    viewer.wait_for(lambda s: interp(s).get("frame_mix") == mix, RENDER_TIMEOUT, "a frame of the mix")
    viewer.settled(RENDER_TIMEOUT)
    viewer.move(600, 20)                 # the pointer off the controls: no tooltip over the screenshot
    time.sleep(0.5)
    mixed = frame_image(viewer, "B-interpolate")      # the tab and the view at t = 0.4
    assert np.abs(mixed - plain).mean() > 1.0, "the mix looks like the plain latent"


def test_dragging_the_slider_changes_t(viewer):
    x, y, w, h, _ = viewer.rect_of("interp_t")
    before = interp(viewer.state())["t"]
    viewer.drag((x + w * 0.5, y + h // 2), (-w * 0.35, 0))
    s = viewer.wait_for(lambda s: interp(s).get("t", before) < before - 0.1, 30, "t to follow the drag")
    t = interp(s)["t"]
    viewer.wait_for(lambda s: (interp(s).get("frame_mix") or {}).get("t") == t, RENDER_TIMEOUT,
                    "a frame of the dragged t")


def test_animate_moves_t_by_itself(viewer):
    type_number(viewer, "interp_period", 6)
    viewer.click_item("interp_animate")
    seen = set()

    def moved(s):
        seen.add((interp(s).get("frame_mix") or {}).get("t"))
        return interp(s).get("animating") and len(seen - {None}) >= 3
    viewer.wait_for(moved, RENDER_TIMEOUT, "three frames of different t")
    viewer.click_item("interp_animate")
    viewer.wait_for(lambda s: not interp(s).get("animating"), 30, "animate off")


def test_the_seed_sweep_steps_the_seed(viewer):
    start = viewer.state()["view"]["seed"]
    type_number(viewer, "interp_interval", 0.5)
    viewer.click_item("interp_sweep")
    viewer.wait_for(lambda s: interp(s).get("frame_seed") == start + 2, RENDER_TIMEOUT, "two sweep steps")
    viewer.click_item("interp_off")
    s = viewer.wait_for(lambda s: not interp(s).get("sweeping") and s["view"]["mix"] is None, 30, "off")
    assert not interp(s)["enabled"] and s["view"]["seed"] >= start + 2


def test_export_writes_the_interpolation_video(viewer):
    type_number(viewer, "interp_frames", 4)
    type_number(viewer, "interp_resolution", 32)
    viewer.click_item("interp_export_button")
    s = viewer.wait_for(lambda s: (interp(s).get("jobs") or [{}])[0].get("state") in ("done", "failed"),
                        EXPORT_TIMEOUT, "the video job")
    job = interp(s)["jobs"][0]
    assert job["state"] == "done", job
    path = job["output_path"]
    assert path.endswith(".mp4") and "-interp-seed" in Path(path).name
    assert imageio_ffmpeg.count_frames_and_secs(path)[0] == 4
    reader = imageio_ffmpeg.read_frames(path)
    assert reader.__next__()["size"] == (32, 32)
    viewer.move(600, 20)
    time.sleep(0.5)
    viewer.screenshot(SHOTS / "B-interpolate-export.png")
