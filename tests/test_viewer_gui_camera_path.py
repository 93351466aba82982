"""The Camera path tab as a person uses it (issue 34): orbit with real drags and click "Add current
camera", reorder and delete with clicks, type a duration, play the preview, save the keyframes,
export the video from the panel, and check that `trigan render --vis video --trajectory saved.json`
with the same seed, class, psi, resolution and fps decodes to the same frames, pixel for pixel.

A real window on a private Xvfb, real clicks, drags and key strokes from xdotool (tests/gui_harness.py).
The tests run in order on one viewer. Screenshots go to $TRIGAN_GUI_SHOTS (default
/tmp/trigan-gui-camera-path). Run only these: `python -m pytest -m gui tests/test_viewer_gui_camera_path.py`.
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
from PIL import Image

from gui_harness import (
    DEMO,
    START_TIMEOUT,
    Viewer,
    image_center,
    screen_fixture,
    type_into,
    type_number,
    write_settings_at,
)

SCREEN = (1280, 800)
WINDOW_SIZE = (1280, 800)
RESOLUTION = 64                  # the view's; the video's is typed into the panel
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-camera-path"))

pytestmark = pytest.mark.gui

xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=RESOLUTION, last_export_folder=str(folder / "exports"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        yield v
    finally:
        v.close()


def path_state(s) -> dict:
    return (s.get("panels") or {}).get("camera_path") or {}


def keyframe_count(n):
    return lambda s: len(path_state(s).get("keyframes", [])) == n


def same_angle(a, b, tol=1e-9) -> bool:
    return abs(math.remainder(a - b, 2 * math.pi)) < tol


def park_pointer(viewer) -> None:
    """The pointer over the status bar, where it shows no tooltip, before a screenshot."""
    viewer.move(40, WINDOW_SIZE[1] - 8)
    time.sleep(0.6)


def decode(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]


def test_add_keyframes_by_orbiting(viewer):
    viewer.click_item("tab_camera_path",
                      until=lambda s: s.get("tasks_tab") == "tab_camera_path", what="the Camera path tab")
    poses = []
    for i in range(4):
        if i:
            s = viewer.state()
            viewer.drag(image_center(s), (40 + 10 * i, -15 if i % 2 else 10))     # a real orbit
        s = viewer.settled()
        poses.append(s["orbit"])
        viewer.click_item("path_add")
        viewer.wait_for(keyframe_count(i + 1), 30, f"keyframe {i}")
    keys = path_state(viewer.state())["keyframes"]
    # each keyframe is the camera at its click, one second apart
    for key, pose in zip(keys, poses, strict=True):
        assert same_angle(key["yaw"], pose["yaw"]) and key["pitch"] == pose["pitch"]
        assert key["radius"] == pose["radius"] and key["fov"] == pose["fov"]
    assert [k["time"] for k in keys] == [0.0, 1.0, 2.0, 3.0]
    assert len({round(k["yaw"], 6) for k in keys}) == 4            # the drags moved the camera
    park_pointer(viewer)
    viewer.screenshot(SHOTS / "camera-path-list.png")


def test_reorder_delete_and_durations_by_clicks(viewer):
    before = path_state(viewer.state())["keyframes"]
    viewer.click_item("path_row_2_up")
    s = viewer.wait_for(lambda s: path_state(s)["keyframes"][1]["yaw"] == before[2]["yaw"], 30, "row 2 moved up")
    assert [k["yaw"] for k in path_state(s)["keyframes"]] == [before[i]["yaw"] for i in (0, 2, 1, 3)]
    viewer.click_item("path_row_3_delete")
    s = viewer.wait_for(keyframe_count(3), 30, "keyframe 3 deleted")
    assert [k["yaw"] for k in path_state(s)["keyframes"]] == [before[i]["yaw"] for i in (0, 2, 1)]
    type_number(viewer, "path_row_0_duration", 0.5)
    s = viewer.wait_for(lambda s: path_state(s)["keyframes"][0]["duration"] == 0.5, 30, "duration 0.5")
    assert [k["time"] for k in path_state(s)["keyframes"]] == [0.0, 0.5, 1.5]
    # a bad duration is one red line and changes nothing
    type_number(viewer, "path_row_1_duration", 0.01, accepted=False)
    s = viewer.wait_for(lambda s: "duration" in path_state(s)["message"], 30, "the refusal")
    assert "\n" not in path_state(s)["message"] and path_state(s)["keyframes"][1]["duration"] == 1.0


def test_play_moves_the_camera_along_the_path(viewer):
    keys = path_state(viewer.state())["keyframes"]
    viewer.click_item("path_play")
    viewer.wait_for(lambda s: path_state(s)["playing"], 30, "the preview to start")
    seen = viewer.wait_for(lambda s: 0.1 < path_state(s)["time"] < 1.4, 30, "the preview halfway")
    assert not same_angle(seen["orbit"]["yaw"], keys[0]["yaw"], 1e-4)
    s = viewer.wait_for(lambda s: not path_state(s)["playing"], 60, "the preview to end")
    assert path_state(s)["time"] == pytest.approx(1.5)
    # at the end the camera is the last keyframe
    last = keys[-1]
    assert same_angle(s["orbit"]["yaw"], last["yaw"], 1e-9) and s["orbit"]["pitch"] == pytest.approx(last["pitch"])
    assert s["orbit"]["radius"] == pytest.approx(last["radius"]) and s["orbit"]["fov"] == pytest.approx(last["fov"])


def test_save_export_and_the_cli_renders_the_same_video(viewer, tmp_path):
    folder = Path(viewer.folder) / "paths"
    saved = folder / "move.json"
    type_into(viewer, "path_file", str(saved))
    viewer.click_item("path_save")
    s = viewer.wait_for(lambda s: "saved" in path_state(s)["message"], 30, "the keyframes saved")
    doc = json.loads(saved.read_text())
    keys = path_state(s)["keyframes"]
    assert [[k[f] for f in ("yaw", "pitch", "fov", "radius")] for k in doc["keyframes"]] == \
        [[k[f] for f in ("yaw", "pitch", "fov", "radius")] for k in keys]
    assert [k["time"] for k in doc["keyframes"]] == [0.0, 0.5, 1.5]
    assert doc["look_at"] == path_state(s)["look_at"] and doc["pivot"] == path_state(s)["pivot"]

    type_number(viewer, "path_fps", 6)
    type_number(viewer, "path_resolution", 32)
    viewer.click_item("path_export")
    s = viewer.wait_for(lambda s: path_state(s)["jobs"] and path_state(s)["jobs"][0]["state"] != "running", 600,
                        "the path's video job")
    job = path_state(s)["jobs"][0]
    assert job["state"] == "done", job
    video = Path(job["output_path"])
    beside = video.with_suffix(".json")
    assert video.parent == folder and beside.is_file()
    assert json.loads(beside.read_text()) == doc                    # the path the CLI gets is the saved one
    meta, frames = decode(video)
    assert len(frames) == round(1.5 * 6) + 1 and tuple(meta["size"]) == (32, 32)

    view = s["view"]
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "trigan.cli.main", "render", str(DEMO), "--out", str(out), "--vis", "video",
           "--trajectory", str(beside), "--seeds", str(view["seed"]), "--psi", repr(view["psi"]), "--fps", "6",
           "--resolution", "32", "--quiet"]
    if view["class_index"] is not None:
        cmd += ["--classes", str(view["class_index"])]
    subprocess.run(cmd, cwd=tmp_path, check=True, timeout=600, capture_output=True)
    made = sorted(out.glob("*.mp4"))
    assert len(made) == 1 and made[0].name.endswith(f"-{beside.stem}.mp4")
    cli_meta, cli_frames = decode(made[0])
    assert cli_meta["fps"] == pytest.approx(meta["fps"]) and len(cli_frames) == len(frames)
    for i, (a, b) in enumerate(zip(frames, cli_frames, strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs by up to {np.abs(a.astype(int) - b).max()}"
    assert not np.array_equal(frames[0], frames[-1])               # the camera moved
    park_pointer(viewer)
    x, y, w, h, _ = viewer.rect_of("tasks_window")
    shot = viewer.screenshot(SHOTS / "camera-path-export.png")
    # the Tasks column alone, for the docs
    Image.fromarray(shot[y:y + h, x:x + w].astype(np.uint8)).save(SHOTS / "camera-path-tab.png")


def test_load_refuses_a_bad_file_in_one_line(viewer):
    bad = Path(viewer.folder) / "paths" / "bad.json"
    bad.write_text('{"keyframes": [{"yaw": "left"}]}')
    before = path_state(viewer.state())["keyframes"]
    type_into(viewer, "path_file", str(bad))
    viewer.click_item("path_load")
    s = viewer.wait_for(lambda s: "'yaw' must be a finite number" in path_state(s)["message"], 30, "the refusal")
    assert "\n" not in path_state(s)["message"] and path_state(s)["keyframes"] == before
    type_into(viewer, "path_file", str(Path(viewer.folder) / "paths" / "move.json"))
    viewer.click_item("path_load")
    s = viewer.wait_for(lambda s: "loaded 3 keyframes" in path_state(s)["message"], 30, "the reload")
    assert [k["yaw"] for k in path_state(s)["keyframes"]] == [k["yaw"] for k in before]
