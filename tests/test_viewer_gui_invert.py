"""The Invert tab as a person uses it (issue 33): a real window on a private 1280x800 Xvfb, real
clicks and key strokes (xdotool), screenshots (ImageMagick's `import`; tests/gui_harness.py).

On the demo model: Start without an image says why in one red line; the image is picked with the
file picker; camera, class and steps are typed and chosen; Start shows a progress bar, the stage
and two thumbnails (the input, and the reconstruction as it changes); when done the view shows the
tuned model with the inverted latent at the camera found, which a drag orbits; Back to seeds
returns to the demo model; a second, long inversion is cancelled with its Cancel button and writes
nothing. The tests run in order on one viewer. Screenshots go to $TRIGAN_GUI_SHOTS (default
/tmp/trigan-gui-invert). Run only these: `python -m pytest -m gui tests/test_viewer_gui_invert.py -s`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from gui_harness import (
    DEMO,
    START_TIMEOUT,
    Viewer,
    coloured_pixels,
    crop,
    image_center,
    screen_fixture,
    type_into,
    type_number,
    value_of,
    values_of,
    write_settings_at,
)
from trigan.core.cameras import Pose
from trigan.core.images import save_png, to_uint8
from trigan.core.model_io import open_model
from trigan.core.rendering import field_renderer
from trigan.core.views import LatentMapper
from trigan.training.inversion_outputs import load_inversion

SCREEN = WINDOW_SIZE = (1280, 800)
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-invert"))
RED = (255, 110, 100)              # the panels' error colour
ORANGE = (235, 160, 60)            # a cancelled job's
CLASS, SEED, YAW = 2, 1234, 0.7    # the picture: a snowman of the demo model, seen from yaw 0.7 rad
INVERT_TIMEOUT = 900.0             # a few steps on the demo model on a busy 2-core machine

pytestmark = pytest.mark.gui

xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> SimpleNamespace:
    """A picture the demo model can make (so the fit is checkable), in a folder with other files."""
    folder = tmp_path_factory.mktemp("photos")
    G = open_model(str(DEMO), device="cpu").G.eval()
    pose = Pose.for_generator(G, CLASS).with_values(yaw=YAW)
    with torch.no_grad():
        field = G.field_from_ws(LatentMapper(G, 0.7).ws([(CLASS, SEED)]))
        out = field_renderer("accelerated", field, G.render_options(deterministic=True)).render(
            pose.to_camera(), G.cfg.img_resolution)
    path = folder / "snowman.png"
    save_png(to_uint8(out.rgb)[0], path)
    (folder / "notes.txt").write_text("not an image\n")
    return SimpleNamespace(path=path, parent=folder, pose=pose)


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=64, last_export_folder=str(folder / "exports"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.out = folder / "inverted"
        yield v
    finally:
        v.close()


def _shot(viewer, name):
    return viewer.screenshot(SHOTS / f"{name}.png")


def _newest_job(s) -> dict:
    jobs = (s.get("inversion") or {}).get("jobs") or []
    return jobs[0] if jobs else {}


def choose_in_combo(viewer, tag: str, index: int, expected: str) -> None:
    """Open a combo with a click and click its entry number `index` (the list opens below the combo,
    one entry every 17-18 px: test_viewer_gui_progress measured it)."""
    x, y, w, h, _ = viewer.rect_of(tag)
    viewer.move(x + w // 3, y + h // 2)
    time.sleep(0.2)
    viewer.xdotool("click", 1)
    time.sleep(0.8)
    viewer.move(x + 20, y + h // 2 + 24 + 18 * index)
    time.sleep(0.2)
    viewer.xdotool("click", 1)
    time.sleep(0.5)
    assert value_of(viewer, tag) == expected


def click_checkbox_off(viewer, tag: str) -> None:
    x, y, w, h, _ = viewer.rect_of(tag)
    viewer.move(x + 9, y + h // 2)          # the box is at the left of the checkbox's rectangle
    time.sleep(0.2)
    viewer.xdotool("click", 1)
    time.sleep(0.4)
    assert value_of(viewer, tag) is False


# --------------------------------------------------------------------------------------------------

def test_the_tab_reads_and_start_without_an_image_says_why(viewer):
    viewer.click_item("tab_invert", until=lambda s: s.get("tasks_tab") == "tab_invert", what="the Invert tab")
    labels = values_of(viewer, "invert_camera", "invert_class", "invert_steps", "invert_pti_steps", "invert_pti_hold",
                       "invert_wplus", "invert_start_button", "invert_back_button")
    assert labels["invert_camera"]["value"] == "estimate" and labels["invert_class"]["value"] == "try all"
    assert labels["invert_steps"]["label"] == "latent steps" and labels["invert_pti_steps"]["label"] == "tuning steps"
    assert labels["invert_pti_hold"] == {"label": "tuning hold", "value": 1.0}
    assert labels["invert_start_button"]["label"] == "Start inversion"
    _shot(viewer, "invert-tab")
    viewer.click_item("invert_start_button")
    s = viewer.wait_for(lambda s: (s.get("inversion") or {}).get("message"), 30, "the panel's message")
    message = s["inversion"]["message"]
    assert message.startswith("choose an image") and "\n" not in message
    assert s["inversion"]["jobs"] == []
    shot = _shot(viewer, "invert-no-image")
    assert coloured_pixels(shot, viewer.rect_of("invert_message"), RED) > 20, "the error is drawn in red"


def test_pick_the_image_with_the_file_picker(viewer, photo):
    viewer.click_item("invert_images_browse")
    viewer.rect_of("file_picker_path")                      # the picker is up
    try:
        type_into(viewer, "file_picker_path", str(photo.parent), then="Return")
        time.sleep(0.5)
        rows = values_of(viewer, "file_picker_row_0", "file_picker_row_1")
        assert rows["file_picker_row_0"]["label"] == "snowman.png" and rows["file_picker_row_1"] is None, \
            "image files only (notes.txt filtered)"
        _shot(viewer, "invert-picker")
        x, y, w, h, _ = viewer.rect_of("file_picker_row_0")
        viewer.move(x + 40, y + h // 2)
        time.sleep(0.3)
        viewer.xdotool("click", "--repeat", 2, "--delay", 90, 1)
        viewer.wait_for(lambda s: not ((s.get("items") or {}).get("file_picker_path") or [0] * 5)[4], 20,
                        "the picker to close")
    except BaseException:
        # a modal picker left open would sit over every later test of the module: close it, then fail
        viewer.click_item("file_picker_cancel")
        raise
    assert value_of(viewer, "invert_images") == str(photo.path)


def test_an_inversion_shows_progress_thumbnails_and_then_the_result(viewer, photo):
    # the camera: "from the view" switches to given yaw and pitch; then the photo's are typed
    viewer.click_item("invert_camera_from_view")
    assert value_of(viewer, "invert_camera") == "yaw and pitch below"
    type_number(viewer, "invert_yaw", round(math.degrees(photo.pose.yaw), 3))
    type_number(viewer, "invert_pitch", round(math.degrees(photo.pose.pitch), 3))
    choose_in_combo(viewer, "invert_class", CLASS + 1, f"{CLASS}: snowman")
    type_number(viewer, "invert_steps", 6)
    type_number(viewer, "invert_pti_steps", 3)
    type_number(viewer, "invert_pti_hold", 0.5)
    click_checkbox_off(viewer, "invert_video")
    click_checkbox_off(viewer, "invert_mesh")
    type_into(viewer, "invert_folder", str(viewer.out), then="Return")
    viewer.click_item("invert_start_button")
    # running: a progress bar, the stage line, the input thumbnail and reconstructions coming in
    s = viewer.wait_for(lambda s: _newest_job(s).get("state") == "running" and _newest_job(s).get("previews", 0) > 0,
                        INVERT_TIMEOUT, "the first reconstruction preview")
    job = _newest_job(s)
    assert job["detail"]["stage"] in ("latent", "tuning") and 0 < job["progress"] < 1 and job["has_target"]
    shot = _shot(viewer, "invert-running")
    assert viewer.rect_of("invert_jobs_0_bar")[4], "a progress bar is shown"
    line = value_of(viewer, "invert_stage")
    assert line.startswith("snowman: ") and "PSNR" in line, line
    recon = crop(shot, viewer.rect_of("invert_reconstruction_image"))
    shown_input = crop(shot, viewer.rect_of("invert_input_image"))
    assert recon.shape[0] >= 120 and recon.std() > 5, "the reconstruction thumbnail is a picture"
    # the input thumbnail is the photo, scaled up (nearest) to the thumbnail's side
    want = np.asarray(Image.open(photo.path).convert("RGB").resize(shown_input.shape[1::-1], Image.NEAREST), np.float32)
    assert np.abs(shown_input - want).mean() < 12, np.abs(shown_input - want).mean()
    # done: the view shows the tuned model with the inverted latent, at the camera given
    s = viewer.wait_for(lambda s: _newest_job(s).get("state") in ("done", "failed"), INVERT_TIMEOUT,
                        "the inversion to finish")
    job = _newest_job(s)
    assert job["state"] == "done", job["message"]
    result = job["result"]
    assert Path(result["latent_file"]) == viewer.out / "snowman.inversion.npz"
    assert Path(result["model_file"]) == viewer.out / "snowman.pti.ckpt" and result["class_index"] == CLASS
    # what was typed is what ran: the record keeps the settings
    settings = load_inversion(result["latent_file"]).settings
    assert (settings["steps"], settings["pti_steps"], settings["tune_hold"]) == (6, 3, 0.5), settings
    s = viewer.wait_for(lambda s: s["inversion"].get("latent_file") == result["latent_file"]
                        and (s.get("model") or {}).get("path") == result["model_file"], START_TIMEOUT,
                        "the view to show the result")
    assert s["orbit"]["yaw"] == pytest.approx(photo.pose.yaw, abs=1e-3)
    s = viewer.settled()
    assert s["frame"]["latent_file"] == result["latent_file"] and not s["frame_error"]
    assert "snowman.inversion.npz" in value_of(viewer, "invert_showing")
    # the seed field says it is not what is on screen (the Latent panel stays visible beside the tab)
    assert value_of(viewer, "latent_inverted_note").startswith("The view shows the inverted latent snowman")
    shot = _shot(viewer, "invert-done")
    # what the view shows is the photo, again: the exact frame at the photo's camera
    image = crop(shot, s["image_rect"])
    small = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((64, 64), Image.BOX), np.float32)
    target = np.asarray(Image.open(photo.path).convert("RGB"), np.float32)
    assert np.abs(small - target).mean() < 20, np.abs(small - target).mean()
    # ... ready to orbit: a drag turns the inverted latent
    yaw = s["orbit"]["yaw"]
    viewer.drag(image_center(s), (120, 0))
    s = viewer.settled()
    assert abs(s["orbit"]["yaw"] - yaw) > 0.2 and s["frame"]["latent_file"] == result["latent_file"]
    _shot(viewer, "invert-orbit")


def test_back_to_seeds_returns_to_the_demo_model(viewer):
    viewer.click_item("invert_back_button")
    s = viewer.wait_for(lambda s: s["inversion"].get("latent_file") is None and (s.get("model") or {}).get("path")
                        and os.path.samefile(s["model"]["path"], DEMO) and not s.get("model_loading"),
                        START_TIMEOUT, "the demo model with seeds")
    s = viewer.settled()
    assert s["frame"]["latent_file"] is None and s["view"]["latent_file"] is None
    assert value_of(viewer, "invert_showing") == "the view shows seeds"
    assert value_of(viewer, "latent_inverted_note") == ""
    # and Show result goes back to the inversion
    viewer.click_item("invert_show_button")
    viewer.wait_for(lambda s: (s["inversion"].get("latent_file") or "").endswith("snowman.inversion.npz"),
                    START_TIMEOUT, "the result again")
    viewer.click_item("invert_back_button")
    viewer.wait_for(lambda s: s["inversion"].get("latent_file") is None, START_TIMEOUT, "seeds again")


def test_cancel_stops_an_inversion_and_writes_nothing(viewer):
    before = sorted(p.name for p in viewer.out.iterdir())
    type_number(viewer, "invert_steps", 2000)
    viewer.click_item("invert_start_button")
    viewer.wait_for(lambda s: len(s["inversion"]["jobs"]) == 2 and _newest_job(s).get("state") == "running"
                    and (_newest_job(s).get("detail") or {}).get("stage"), INVERT_TIMEOUT, "the second inversion")
    viewer.click_item("invert_jobs_0_cancel")
    s = viewer.wait_for(lambda s: _newest_job(s).get("state") != "running", INVERT_TIMEOUT, "the cancel")
    assert _newest_job(s)["state"] == "cancelled", _newest_job(s)
    assert sorted(p.name for p in viewer.out.iterdir()) == before, "nothing written"
    time.sleep(0.5)
    assert value_of(viewer, "invert_stage").startswith("cancelled")
    shot = _shot(viewer, "invert-cancelled")
    assert coloured_pixels(shot, viewer.rect_of("invert_jobs_0_msg"), ORANGE, 30) > 20, "a cancelled job is orange"
    assert s["inversion"].get("latent_file") is None, "a cancelled inversion is not shown"


def test_an_image_that_is_not_one_fails_in_one_red_line(viewer, photo):
    bad = photo.parent / "not-a-photo.png"
    bad.write_text("this is text, not a PNG\n")
    type_into(viewer, "invert_images", str(bad), then="")
    viewer.click_item("invert_start_button")
    s = viewer.wait_for(lambda s: _newest_job(s).get("state") in ("failed", "done"), INVERT_TIMEOUT, "the bad image")
    job = _newest_job(s)
    assert job["state"] == "failed" and "not-a-photo.png" in job["message"] and "\n" not in job["message"]
    s = viewer.wait_for(lambda s: "not-a-photo.png" in (s["inversion"].get("message") or ""), 30, "the red line")
    time.sleep(0.5)
    shot = _shot(viewer, "invert-bad-image")
    assert coloured_pixels(shot, viewer.rect_of("invert_message"), RED) > 20
    # the thumbnails are this job's: no input was read, so no picture (not the last job's snowman)
    assert crop(shot, viewer.rect_of("invert_input_image")).std() < 2
    assert not any(p.name.startswith("not-a-photo") for p in viewer.out.iterdir()), "nothing written"
