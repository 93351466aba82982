"""The desktop viewer as a person uses it: a real window on a virtual X server (Xvfb), real mouse and
keyboard events (xdotool), screenshots of the screen (ImageMagick's `import`).

The viewer runs as `trigan view` in its own process with --state-file (its camera, frames, jobs and
runs as JSON, a few times a second) and --control-file (commands that set widget values, see
docs/viewer.md). Mouse drags, the wheel, keys and button clicks are real X events aimed at the
rectangles the state file reports; the expected camera changes come from the OrbitController's
documented mapping, not from the app.

Needs the programs Xvfb, xdotool and import (`apt-get install -y xvfb xdotool imagemagick`;
.ci/run installs them). Run only these: `python -m pytest -m gui tests/test_viewer_gui.py`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from conftest import THREEDGP_FIXTURES
from gui_harness import (
    DEMO,
    START_TIMEOUT,
    Viewer,
    crop,
    image_center,
    screen_fixture,
    write_settings_at,
)
from train_helpers import TINY_TRAIN, write_tiny_dataset
from trigan.core.cameras import sample_camera_prior
from trigan.core.images import grid_shape
from trigan.core.model_io import open_model
from trigan.viewer.orbit import KEY_ORBIT_STEP, ZOOM_STEP
from trigan.viewer.run_monitor import list_runs, stop_run

SCREEN = (1600, 1000)
WINDOW_SIZE = (1400, 900)
RESOLUTION = 128               # renders of the tests (the preview frame rate is measured at 256)


# --------------------------------------------------------------------------------------------------
# Without a display

def test_view_without_display_exits_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", "view"], check=False, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "DISPLAY" in lines[0]
    assert not (tmp_path / "trigan").exists() or not any((tmp_path / "trigan").iterdir())


# --------------------------------------------------------------------------------------------------
# A real window

xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=RESOLUTION, last_export_folder=str(folder / "exports"),
                   runs_folder=str(folder / "runs"))
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.start_orbit = v.settled()["orbit"]
        yield v
    finally:
        if v.proc.poll() is None:
            code = v.close()
            assert code == 0, v.log_text()[-3000:]


# --------------------------------------------------------------------------------------------------
# Tests against the running window

@pytest.mark.gui
def test_window_shows_the_rendered_object(viewer, tmp_path):
    s = viewer.settled()
    assert s["model"]["file"] == str(DEMO)
    assert s["frame"]["resolution"] == RESOLUTION and s["frame_error"] is None
    shot = viewer.screenshot(tmp_path / "window.png")
    x, y, w, h = s["image_rect"]
    assert w > 200 and h > 200                       # the image is scaled up to fill the view
    image = crop(shot, s["image_rect"])
    # The view window's own background, in a strip just left of the image.
    background = shot[y + h // 4:y + 3 * h // 4, x - 6:x - 2].reshape(-1, 3).mean(0)
    diff = np.abs(image - background).mean(axis=2)
    assert (diff > 30).mean() > 0.5, "most of the image area should differ from the window background"
    # The object sits in the middle of the render: the central third differs from the corners (the
    # model's own background).
    k = max(4, w // 16)
    corners = np.concatenate([image[:k, :k], image[:k, -k:], image[-k:, :k], image[-k:, -k:]]).reshape(-1, 3)
    centre = image[h // 3:2 * h // 3, w // 3:2 * w // 3]
    assert np.abs(centre - corners.mean(0)).mean() > 10, "the centre of the render looks like its background"


@pytest.mark.gui
def test_left_drag_orbits_by_the_documented_angle(viewer, tmp_path):
    s0 = viewer.settled()
    before = crop(viewer.screenshot(tmp_path / "before.png"), s0["image_rect"])
    x, y, w, h = s0["image_rect"]
    dx, dy = 120, 40
    viewer.drag(image_center(s0), (dx, dy))
    s1 = viewer.settled()
    k = math.pi / min(w, h)                         # OrbitController: pi across the shorter side
    assert math.remainder(s1["orbit"]["yaw"] - s0["orbit"]["yaw"] - k * dx, 2 * math.pi) == pytest.approx(0, abs=1e-6)
    assert s1["orbit"]["pitch"] - s0["orbit"]["pitch"] == pytest.approx(-k * dy, abs=1e-6)
    after = crop(viewer.screenshot(tmp_path / "after.png"), s1["image_rect"])
    assert np.abs(after - before).mean() > 2, "the picture changed with the camera"


@pytest.mark.gui
def test_drag_that_starts_outside_the_image_does_not_move_the_camera(viewer):
    s0 = viewer.settled()
    x, y, w, h = s0["image_rect"]
    viewer.drag((x + w // 2, y - 12), (0, 80))           # from the info line above the image, onto it
    time.sleep(0.5)
    s1 = viewer.state()
    assert s1["orbit"]["version"] == s0["orbit"]["version"]


@pytest.mark.gui
def test_wheel_zooms_and_double_click_resets(viewer):
    s0 = viewer.settled()
    r0 = s0["orbit"]["radius"]
    viewer.move(*image_center(s0))
    time.sleep(0.3)
    for _ in range(3):
        viewer.xdotool("click", 4)                   # wheel up: toward the object
        time.sleep(0.15)
    viewer.wait_for(lambda s: s["orbit"]["radius"] == pytest.approx(r0 * ZOOM_STEP ** -3, rel=1e-9), 10, "zoom in")
    for _ in range(2):
        viewer.xdotool("click", 5)
        time.sleep(0.15)
    viewer.wait_for(lambda s: s["orbit"]["radius"] == pytest.approx(r0 * ZOOM_STEP ** -1, rel=1e-9), 10, "zoom out")
    viewer.xdotool("click", "--repeat", 2, "--delay", 80, 1)
    s1 = viewer.wait_for(lambda s: _pose(s["orbit"]) == _pose(viewer.start_orbit), 10, "double-click reset")
    assert s1["orbit"]["radius"] == viewer.start_orbit["radius"]


def _pose(orbit):
    return {k: v for k, v in orbit.items() if k != "version"}


@pytest.mark.gui
def test_right_drag_pans_and_keys_orbit(viewer):
    s0 = viewer.settled()
    viewer.drag(image_center(s0), (60, 0), button=3)
    s1 = viewer.wait_for(lambda s: s["orbit"]["version"] > s0["orbit"]["version"], 10, "pan")
    assert s1["orbit"]["yaw"] == pytest.approx(s0["orbit"]["yaw"])
    assert s1["orbit"]["look_at"] != s0["orbit"]["look_at"]
    viewer.move(*image_center(s1))
    time.sleep(0.2)
    viewer.xdotool("key", "Left")
    s2 = viewer.wait_for(lambda s: s["orbit"]["version"] > s1["orbit"]["version"], 10, "arrow key")
    assert math.remainder(s2["orbit"]["yaw"] - s1["orbit"]["yaw"] - KEY_ORBIT_STEP, 2 * math.pi) == pytest.approx(0, abs=1e-9)
    viewer.xdotool("key", "r")
    viewer.wait_for(lambda s: _pose(s["orbit"]) == _pose(viewer.start_orbit), 10, "R resets")


@pytest.mark.gui
def test_an_official_3dgp_snapshot_opens_and_draws_cameras_from_its_learned_distribution(xserver, tmp_path):
    """The .pkl opens at its mean posterior camera (looking at a point off the origin); clicking the
    Camera panel's draw button moves to prior camera 1 through the camera generator for this seed
    and class, as core computes it."""
    pkl = THREEDGP_FIXTURES / "3dgp_cond.pkl"
    write_settings_at(tmp_path, WINDOW_SIZE, resolution=64)
    v = Viewer(xserver, tmp_path, model=pkl)
    try:
        s = v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the 3DGP snapshot to load")
        assert s["model"]["file"] == str(pkl) and s["model"]["c_dim"] == 5
        start = v.settled()["orbit"]
        assert math.dist(start["look_at"], (0, 0, 0)) > 1e-3            # the mean posterior look-at point
        v.click_item("camera_draw")
        s = v.wait_for(lambda s: s["orbit"]["yaw"] != start["yaw"], 60, "the drawn camera")
        drawn, seed, cls = s["orbit"], s["view"]["seed"], s["view"]["class_index"] or 0
        v.settled()
        v.screenshot(tmp_path / "drawn.png")
        G = open_model(pkl).G
        prior = sample_camera_prior(G.cfg.camera, 1, torch.Generator().manual_seed(1))
        with torch.no_grad():
            post = G.posterior_camera(G.latents([seed]), G.labels([cls], 1), prior_camera=prior)
        expected = (float(post.yaw[0]), float(post.pitch[0]), float(post.fov[0]))
        assert (drawn["yaw"], drawn["pitch"], drawn["fov"]) == pytest.approx(expected, abs=1e-4)
        assert drawn["look_at"] == pytest.approx(post.look_at[0].tolist(), abs=1e-5)
    finally:
        assert v.close() == 0, v.log_text()[-3000:]


@pytest.mark.gui
def test_missing_checkpoint_is_one_line_before_any_window(xserver, tmp_path):
    env = dict(os.environ, DISPLAY=xserver, XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "trigan.cli.main", "view", str(tmp_path / "missing.ckpt")], check=False, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.ckpt" in lines[0] and "no such file" in lines[0]


@pytest.mark.gui
def test_screenshot_mesh_and_video_exported_through_the_panel(viewer, tmp_path):
    s0 = viewer.settled()
    out = tmp_path / "exports"
    viewer.send(tab="tab_export")
    viewer.set("export_folder", str(out))
    viewer.set("mesh_resolution", 48)
    viewer.set("mesh_format", "ply")
    viewer.set("video_frames", 6)
    viewer.set("video_fps", 12)
    viewer.set("video_resolution", 64)
    viewer.set("video_seeds", "0-1")
    for button in ("export_screenshot_button", "export_mesh_button", "export_video_button"):
        viewer.click_item(button)                    # real clicks on the panel's buttons
    s = viewer.wait_for(lambda s: len(s["jobs"]) >= 3 and all(j["state"] != "running" for j in s["jobs"]), 600,
                        "the three export jobs")
    jobs = {j["kind"]: j for j in s["jobs"]}
    assert all(jobs[k]["state"] == "done" for k in ("screenshot", "mesh", "video")), jobs

    # The screenshot is the frame on screen: the window's image area, scaled back down, matches it.
    shot = np.asarray(Image.open(jobs["screenshot"]["output_path"]).convert("RGB")).astype(np.float32)
    assert shot.shape == (RESOLUTION, RESOLUTION, 3)
    screen = viewer.screenshot(tmp_path / "screen.png")
    shown = Image.fromarray(crop(screen, s0["image_rect"]).astype(np.uint8)).resize((RESOLUTION, RESOLUTION),
                                                                                      Image.BOX)
    assert np.abs(np.asarray(shown, np.float32) - shot).mean() < 6

    mesh = trimesh.load(jobs["mesh"]["output_path"], process=False)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert np.abs(mesh.vertices).max() <= 0.4 + 1e-3            # inside the demo's scene box (cube_scale 0.4)

    reader = imageio_ffmpeg.read_frames(jobs["video"]["output_path"])
    meta = next(reader)
    frames = list(reader)
    rows, cols = grid_shape(2, 64)
    assert len(frames) == 6 and meta["fps"] == pytest.approx(12)
    assert tuple(meta["size"]) == (cols * 64, rows * 64)


def _drag_for(viewer, seconds: float, start, step=3, span=40) -> None:
    """Hold the left button and keep the mouse moving (a continuous orbit)."""
    x0, y0 = start
    viewer.move(x0, y0)
    time.sleep(0.2)
    viewer.xdotool("mousedown", 1)
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        i += 1
        viewer.move(x0 + (i % span) * step, y0)
        time.sleep(0.05)
    viewer.xdotool("mouseup", 1)


@pytest.mark.gui
def test_preview_frames_while_dragging_at_256(viewer):
    viewer.set("render_resolution", 256)
    s0 = viewer.settled()
    _drag_for(viewer, 8.0, image_center(s0))
    s = viewer.state()
    t = s["timing"]
    print(f"\npreview at 256^2 while dragging: {t['preview_fps']:.2f} frames/s, {t['preview_ms']:.0f} ms per "
          f"preview frame (path {s['frame']['path_used']}); GUI frame {t['gui_ms']:.1f} ms mean, "
          f"{t['gui_ms_max']:.0f} ms max over the last 2 s; load average {os.getloadavg()[0]:.1f}")
    assert t["preview_fps"] > 0 and s["frame"]["quality"] == "preview" and s["frame"]["resolution"] == 256
    s = viewer.settled()                               # at rest it refines to the exact render
    assert s["frame"]["resolution"] == 256
    viewer.set("render_resolution", RESOLUTION)
    viewer.settled()


# Far more than the test lasts, so the run is still training when the Stop button is pressed, however
# fast the machine (a 5 kimg run once finished on its own first).
TRAIN_KIMG = 1000.0


@pytest.mark.gui
def test_training_run_started_from_the_panel_reports_progress_and_stops_cleanly(viewer, tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny")
    runs = tmp_path / "runs"
    viewer.send(tab="tab_training")
    viewer.set("train_data", str(data))
    viewer.set("train_runs_folder", str(runs))
    viewer.set("train_preset", "demo")
    viewer.set("train_batch", 8)
    viewer.set("train_kimg", TRAIN_KIMG)
    viewer.set("train_overrides", " ".join(TINY_TRAIN))
    viewer.click_item("train_start_button")
    try:
        _follow_training_run(viewer, runs, tmp_path / "exports")
    finally:                                          # never leave a trainer behind, whatever failed
        for r in list_runs(runs):
            if r.alive:
                stop_run(r.path)


def _follow_training_run(viewer, runs, exports):
    s = viewer.wait_for(lambda s: any(r["alive"] and (r["kimg"] or 0) > 0 for r in s["training"]["runs"])
                        and "loss_G" in s["training"]["stats_keys"], 300, "the run to report progress")
    run = next(r for r in s["training"]["runs"] if r["alive"])
    assert s["training"]["selected"] == run["path"] and run["phase"] == "training"
    assert run["total_kimg"] == pytest.approx(TRAIN_KIMG) and run["images_per_sec"] > 0
    stop_button = viewer.rect_of("train_stop_button")

    # Everything at once: the run trains, a long video exports, the camera keeps moving (renders).
    viewer.send(tab="tab_export")
    viewer.set("export_folder", str(exports))
    viewer.set("video_frames", 64)
    viewer.set("video_resolution", 128)
    viewer.set("video_seeds", "")
    jobs_before = len(viewer.state()["jobs"])
    viewer.click_item("export_video_button")
    viewer.wait_for(lambda s: len(s["jobs"]) > jobs_before and s["jobs"][-1]["state"] == "running", 30,
                    "the video job to start")
    viewer.send(tab="tab_training")
    _drag_for(viewer, 8.0, image_center(s))
    t = viewer.state()["timing"]
    print(f"\nGUI frames while rendering + exporting + training: longest {t['max_gui_ms_all_busy']:.0f} ms, "
          f"median {t['all_busy_ms_p50']:.0f} ms, 95th percentile {t['all_busy_ms_p95']:.0f} ms over "
          f"{t['frames_all_busy']} frames (slowest frame of the session: {t['slowest_frame_ms']:.0f} ms, "
          f"{t['slowest_frame_phases']}); load average {os.getloadavg()[0]:.1f}")
    assert t["frames_all_busy"] > 0
    # The export's Cancel button stops it, leaving no file.
    viewer.send(tab="tab_export")
    viewer.click_item("export_jobs_0_cancel")        # the newest export is the first row
    viewer.wait_for(lambda s: s["jobs"][-1]["state"] == "cancelled", 300, "the video job to cancel")
    assert not list(exports.glob("*.mp4"))
    viewer.send(tab="tab_training")

    # Losses logged every other tick and the heartbeat's age change how the details wrap; the
    # buttons must not move with them, or a click meant for Stop lands beside it.
    assert viewer.rect_of("train_stop_button") == stop_button
    viewer.click_item("train_stop_button")
    s = viewer.wait_for(lambda s: any(r["path"] == run["path"] and not r["alive"] and r["phase"] == "stopped"
                                      for r in s["training"]["runs"]), 180, "the run to stop")
    stopped = next(r for r in s["training"]["runs"] if r["path"] == run["path"])
    assert 0 < stopped["kimg"] < TRAIN_KIMG
    latest = Path(run["path"]) / "latest.ckpt"
    assert open_model(latest).progress["kimg"] == pytest.approx(stopped["kimg"])
    # ... and its latest snapshot opens in the view.
    viewer.click_item("train_load_latest")
    viewer.wait_for(lambda s: s["model"] and s["model"]["file"] == str(latest), 120, "the snapshot to load")
    s = viewer.settled()
    assert s["frame_error"] is None and s["frame"]["resolution"] == RESOLUTION


@pytest.mark.gui
def test_settings_and_window_layout_are_restored(viewer, xserver):
    """Runs last: it closes the module's viewer and opens a second one on the same settings."""
    viewer.set("latent_seed", 7)
    viewer.set("latent_psi", 0.5)
    x, y, w, h, _ = viewer.rect_of("tasks_window")
    viewer.drag((x + 60, y + 8), (-40, 30))              # the Tasks window by its title bar
    moved = viewer.rect_of("tasks_window")
    assert (moved[0], moved[1]) == (x - 40, y + 30)
    assert viewer.close() == 0
    saved = json.loads(viewer.settings_path.read_text())
    assert saved["seed"] == 7 and saved["psi"] == pytest.approx(0.5)
    assert (viewer.settings_path.parent / "viewer_layout.ini").is_file()

    again = Viewer(xserver, viewer.folder, model=saved["last_model"])
    try:
        s = again.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the model to load")
        assert s["view"]["seed"] == 7 and s["view"]["psi"] == pytest.approx(0.5)
        assert again.rect_of("tasks_window")[:2] == moved[:2]
        assert again.rect_of("latent_seed")[4]
    finally:
        assert again.close() == 0
