"""Opening files in the viewer as a person does (issue 30, defect 7 and the Model panel's rough
edges): typing a path and pressing Enter, the file picker behind "...", tooltips on long paths, a
bad checkpoint, the model summary, and how a cancelled export looks.

A real window on a private Xvfb, real clicks and key strokes from xdotool, screenshots from
ImageMagick's `import` (tests/gui_harness.py). Widget texts are read from the state file's "values"
(the viewer reports the value and label of every widget a test watches). The tests run in order on
one viewer. Run only these: `python -m pytest -m gui tests/test_viewer_gui_files.py`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from gui_harness import (
    DEMO,
    START_TIMEOUT,
    Viewer,
    coloured_pixels,
    screen_fixture,
    type_into,
    value_of,
    values_of,
    write_settings_at,
)

SCREEN = (1600, 1000)
WINDOW_SIZE = (1400, 900)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "epigraf"
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-files"))
RED = (255, 110, 100)              # the panels' error colour
ORANGE = (235, 160, 60)            # a cancelled job's
GREEN = (120, 210, 120)            # a done job's

pytestmark = pytest.mark.gui


xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def picks(tmp_path_factory) -> Path:
    """A folder as a user's might look: two EpiGRAF snapshots, a sub-folder, a text file, a
    checkpoint that is not one, under a long path (longer than the model field is wide)."""
    folder = tmp_path_factory.mktemp("files") / "a-folder-with-a-rather-long-name-for-snapshots" / "picks"
    (folder / "sub").mkdir(parents=True)
    for name in ("uncond_gpc.pkl", "cond_white.pkl"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "notes.txt").write_text("not a model\n")
    (folder / "x.ckpt").write_bytes(b"this is not a checkpoint\n" * 4)
    return folder


@pytest.fixture(scope="module")
def viewer(xserver, picks, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=64, last_export_folder=str(folder / "exports"),
                   runs_folder=str(folder / "runs"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        yield v
    finally:
        v.close()


def _model_is(path):
    return lambda s: (s.get("model") or {}).get("path") and os.path.samefile(s["model"]["path"], path) \
        and not s.get("model_loading")


def _shot(viewer, name):
    return viewer.screenshot(SHOTS / f"{name}.png")


# --------------------------------------------------------------------------------------------------

def test_enter_in_the_model_field_opens_the_typed_path(viewer, picks):
    target = picks / "cond_white.pkl"
    type_into(viewer, "model_path", str(target), then="Return")
    viewer.wait_for(_model_is(target), START_TIMEOUT, "the typed checkpoint to open on Enter")
    assert viewer.state()["model_message"] == ""
    headline = value_of(viewer, "model_headline")
    assert headline.startswith("plants_16 (epigraf)") and "loading" not in headline   # its name


def test_a_path_field_shows_its_whole_value_in_a_tooltip(viewer, picks):
    viewer.send(tab="tab_export")
    full = str(picks / "sub")
    viewer.set("export_folder", full)                     # longer than the field is wide
    field = viewer.rect_of("export_folder")
    viewer.send(watch=["export_folder_tooltip"])
    viewer.move(field[0] + field[2] // 2, field[1] + field[3] // 2)
    time.sleep(0.2)
    viewer.move(field[0] + field[2] // 2 + 3, field[1] + field[3] // 2)       # a hover needs a motion
    s = viewer.wait_for(lambda s: ((s.get("items") or {}).get("export_folder_tooltip") or [0] * 5)[4], 20,
                        "the path field's tooltip")
    assert value_of(viewer, "export_folder_tooltip") == full
    assert s["items"]["export_folder_tooltip"][2] > field[2], "the tooltip holds the whole path, wider than the field"
    _shot(viewer, "tooltip")
    # An empty field shows no (empty) tooltip.
    empty = viewer.rect_of("model_run")
    assert value_of(viewer, "model_run") == ""
    viewer.send(watch=["model_run_tooltip"])
    viewer.move(empty[0] + empty[2] // 2, empty[1] + empty[3] // 2)
    time.sleep(0.2)
    viewer.move(empty[0] + empty[2] // 2 + 3, empty[1] + empty[3] // 2)
    time.sleep(1.5)
    assert not viewer.state()["items"]["model_run_tooltip"][4]
    viewer.move(5, SCREEN[1] - 5)


def test_a_bad_checkpoint_leaves_the_model_in_use_and_a_red_error(viewer, picks):
    before = value_of(viewer, "model_headline")
    assert before and "loading" not in before
    model_before = viewer.state()["model"]["path"]
    bad = picks / "x.ckpt"
    type_into(viewer, "model_path", str(bad), then="")
    viewer.click_item("model_open")
    s = viewer.wait_for(lambda s: s.get("model_message") and not s.get("model_loading"), START_TIMEOUT,
                        "the bad checkpoint to fail")
    message = s["model_message"]
    assert "x.ckpt" in message and "\n" not in message
    assert _model_is(model_before)(s), "the previous model stays in use"
    time.sleep(0.5)
    assert value_of(viewer, "model_headline") == before, "the headline is the model in use, not 'loading'"
    rect = viewer.rect_of("model_message")
    shot = _shot(viewer, "bad-checkpoint")
    assert coloured_pixels(shot, rect, RED) > 20, "the error is drawn in red"
    # A good open clears the error.
    type_into(viewer, "model_path", str(DEMO), then="Return")
    s = viewer.wait_for(_model_is(DEMO), START_TIMEOUT, "the demo model to open again")
    assert s["model_message"] == ""
    assert value_of(viewer, "model_headline").startswith("demo")


def test_the_summary_reads_without_raw_values(viewer):
    """The demo checkpoint's progress holds train_seconds 16442.99 and cur_nimg 81760."""
    viewer.click_item("model_summary_node")
    tags = ["model_summary"] + [f"model_summary_{i}" for i in range(14)]
    values = values_of(viewer, *tags)
    rows = [v["value"].replace("\u00a0", " ") for v in values.values() if v is not None]
    text = "\n".join(rows)
    assert "e+0" not in text and "e-0" not in text and "train_seconds" not in text
    training = next(r for r in rows if "kimg seen" in r)
    assert "4h34m of training" in training and "step 5,110" in training
    _shot(viewer, "summary")
    viewer.click_item("model_summary_node")


def test_a_cancelled_export_looks_cancelled(viewer):
    viewer.send(tab="tab_export")
    viewer.set("video_frames", 400)
    viewer.set("video_resolution", 128)
    viewer.set("video_seeds", "")
    jobs_before = len(viewer.state()["jobs"])
    viewer.click_item("export_video_button")
    viewer.wait_for(lambda s: len(s["jobs"]) > jobs_before and s["jobs"][-1]["state"] == "running", 60,
                    "the video job to start")
    viewer.click_item("export_jobs_0_cancel")
    viewer.wait_for(lambda s: s["jobs"][-1]["state"] == "cancelled", 300, "the video job to cancel")
    time.sleep(0.5)
    assert "cancelled" in value_of(viewer, "export_jobs_0_msg")
    rect = viewer.rect_of("export_jobs_0_msg")
    shot = _shot(viewer, "cancelled-job")
    assert coloured_pixels(shot, rect, ORANGE, 30) > 20, "a cancelled job's line is orange"
    assert coloured_pixels(shot, rect, GREEN, 30) == 0, "and nothing of a done job's green"


def test_the_picker_lists_checkpoints_with_sizes_and_goes_to_a_typed_folder(viewer, picks):
    viewer.click_item("model_path_browse")
    viewer.rect_of("file_picker_path")                      # the picker is up
    type_into(viewer, "file_picker_path", str(picks), then="Return")
    time.sleep(0.5)
    assert value_of(viewer, "file_picker_path") == str(picks), "a typed folder replaces the path box"
    names = _listed(viewer)
    assert names == ["sub/", "cond_white.pkl", "uncond_gpc.pkl", "x.ckpt"], "folders first; notes.txt filtered"
    sizes = values_of(viewer, "file_picker_size_1", "file_picker_size_2")
    expected = [f"{os.path.getsize(picks / 'cond_white.pkl') / 1024:.1f} KB",
                f"{os.path.getsize(picks / 'uncond_gpc.pkl') / 1024 ** 2:.2f} MB"]
    assert [sizes["file_picker_size_1"]["value"], sizes["file_picker_size_2"]["value"]] == expected
    _shot(viewer, "picker")
    viewer.set("file_picker_filter", "all files")
    assert _listed(viewer) == ["sub/", "cond_white.pkl", "notes.txt", "uncond_gpc.pkl", "x.ckpt"]
    # Double-click opens a file.
    x, y, w, h, _ = viewer.rect_of("file_picker_row_3")
    viewer.move(x + 40, y + h // 2)
    time.sleep(0.3)
    viewer.xdotool("click", "--repeat", 2, "--delay", 90, 1)
    viewer.wait_for(_model_is(picks / "uncond_gpc.pkl"), START_TIMEOUT, "the double-clicked snapshot to open")
    assert value_of(viewer, "model_path") == str(picks / "uncond_gpc.pkl")
    viewer.wait_for(lambda s: not ((s.get("items") or {}).get("file_picker_path") or [0] * 5)[4], 20,
                    "the picker to close")


def _listed(viewer, most=8):
    rows = values_of(viewer, *[f"file_picker_row_{i}" for i in range(most)])
    return [r["label"] for r in rows.values() if r is not None]


def test_the_folder_picker_lists_folders_and_chooses_the_selected_one(viewer, picks):
    viewer.send(tab="tab_export")
    viewer.click_item("export_folder_browse")
    viewer.rect_of("file_picker_path")
    type_into(viewer, "file_picker_path", str(picks), then="Return")
    rows = values_of(viewer, "file_picker_row_0", "file_picker_row_1")
    assert rows["file_picker_row_0"]["label"] == "sub/" and rows["file_picker_row_1"] is None
    viewer.click_item("file_picker_row_0")
    viewer.click_item("file_picker_open")
    time.sleep(0.5)
    assert value_of(viewer, "export_folder") == str(picks / "sub")
