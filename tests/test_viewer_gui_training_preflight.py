"""The Training tab's pre-flight check as a person uses it (real clicks through xdotool on a virtual X
server, tests/gui_harness.py): Check lists the warnings of a dataset whose yaws are centred on +90
degrees and whose labels the overrides ignore, one line each in orange; with "strict" ticked Start
refuses and nothing is launched; unticked, Start launches the run anyway and the trainer logs the
same warnings in the run; a clean dataset shows no warnings and keeps the box hidden.

Run only this: `flock /tmp/h35/gui.lock python -m pytest -m gui tests/test_viewer_gui_training_preflight.py`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from gui_harness import START_TIMEOUT, Viewer, crop, screen_fixture, type_number, value_of, write_settings_at
from train_helpers import TINY_TRAIN, write_tiny_dataset
from trigan.viewer.run_monitor import list_runs, stop_run

SCREEN = WINDOW_SIZE = (1280, 800)
# The tiny model, pose-conditioned (so that only the yaw centre and the labels warn), labels off.
OVERRIDES = [o for o in TINY_TRAIN if not o.startswith("training.batch_size=")] + [
    "discriminator.camera_cond=true", "model.mapping.camera_cond=true", "training.use_labels=false"]
WARN_RGB = (230, 190, 90)            # viewer/panels/training.py WARN: the warnings' colour (dark theme)
SHOTS = Path("/tmp/h35/shots")

xserver = screen_fixture(SCREEN)


def _off_centre(folder: Path):
    """The tiny dataset with its yaws in a narrow hump around +90 degrees (seeded), and the hump's
    centre in whole degrees as the warning must show it (the circular mean of the yaws written)."""
    data = write_tiny_dataset(folder, num=8)
    meta = json.loads((data / "dataset.json").read_text())
    yaws = np.random.RandomState(0).normal(math.pi / 2, 0.2, len(meta["camera_angles"]))
    for (_, angles), yaw in zip(sorted(meta["camera_angles"].items()), yaws, strict=True):
        angles[0] = float(yaw)
    (data / "dataset.json").write_text(json.dumps(meta))
    return data, f"{math.degrees(math.atan2(np.sin(yaws).mean(), np.cos(yaws).mean())):.0f}"


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=64, runs_folder=str(folder / "runs"))
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.send(tab="tab_training")
        v.runs = folder / "runs"
        v.off_centre, v.mean_yaw = _off_centre(folder / "faces")
        v.clean = write_tiny_dataset(folder / "clean")
        yield v
    finally:
        for r in list_runs(folder / "runs") if (folder / "runs").exists() else []:
            if r.alive:                                # never leave a trainer behind, whatever failed
                stop_run(r.path)
        v.close()


def _training(s) -> dict:
    return s.get("training") or {}


def _preflight(s) -> dict:
    return _training(s).get("preflight") or {}


def _fill_form(viewer, data: Path) -> None:
    """Setup a person would do by picking files and pasting overrides; the duration is typed."""
    viewer.set("train_data", str(data))
    viewer.set("train_runs_folder", str(viewer.runs))
    viewer.set("train_preset", "demo")
    viewer.set("train_batch", 8)
    viewer.set("train_overrides", " ".join(OVERRIDES))


def _check(viewer, state: str) -> dict:
    before = _preflight(viewer.state()).get("state")
    assert before != "checking"
    viewer.click_item("train_check_button")
    return viewer.wait_for(lambda s: _preflight(s).get("state") == state, 120, f"the check to end {state!r}")


def _orange(shot, rect) -> int:
    """Pixels within 40 per channel of the warnings' orange inside rect (anti-aliased text included)."""
    return int((np.abs(crop(shot, rect) - np.asarray(WARN_RGB, np.float32)).max(axis=-1) <= 40).sum())


def _rest_pointer(viewer) -> None:
    """The pointer onto the View's title, then a few GUI frames: the button's tooltip is gone."""
    x, y, w, _, _ = viewer.rect_of("train_start_button")
    viewer.move(x - 300, 10)
    frames = viewer.state().get("frames", 0)
    viewer.wait_for(lambda s: s.get("frames", 0) >= frames + 3, 30, "a few GUI frames")


def _launch_logs(viewer):
    return sorted(viewer.runs.glob("launch-*.log")) if viewer.runs.exists() else []


@pytest.mark.gui
def test_check_strict_and_start_show_and_log_the_warnings(viewer, tmp_path):
    _fill_form(viewer, viewer.off_centre)
    type_number(viewer, "train_kimg", 0.008)

    # Check: the two warnings, one line each, orange, in the box that was hidden until now. The
    # box is a child window (whose rectangle the state file gives in its parent's pixels): look at
    # the panel below the Start row instead, before and after.
    assert not _preflight(viewer.state()).get("shown")
    x, y, w, h, _ = viewer.rect_of("train_start_button")
    below_start = [x, y + h, 400, 160]
    before = _orange(viewer.screenshot(tmp_path / "before.png"), below_start)
    s = _check(viewer, "warnings")
    lines = _preflight(s)["text"].splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"! yaw is not zero-centred (mean {viewer.mean_yaw} deg") and "--center" in lines[0]
    assert lines[1].startswith("! faces has labels (3 classes) but training.use_labels=false")
    assert _preflight(s)["shown"]
    _rest_pointer(viewer)
    shot = viewer.screenshot(tmp_path / "preflight.png")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "preflight.png", SHOTS / "H-preflight-warnings.png")
    after = _orange(shot, below_start)
    assert before == 0 and after > 200, f"orange pixels below Start: {before} before Check, {after} after"

    # strict, ticked by a click: Start refuses, and nothing is launched
    viewer.click_item("train_strict")
    viewer.wait_for(lambda s: _preflight(s).get("strict") is True, 30, "strict to be ticked")
    viewer.click_item("train_start_button")
    s = viewer.wait_for(lambda s: "not started" in _training(s).get("message", ""), 120, "Start to refuse")
    assert _training(s)["message"].startswith("not started: 2 pre-flight warnings and strict is on")
    assert _launch_logs(viewer) == []
    _rest_pointer(viewer)
    viewer.screenshot(SHOTS / "H-preflight-strict.png")

    # strict off: Start launches anyway, and the trainer logs the same warnings in its run
    viewer.click_item("train_strict")
    viewer.wait_for(lambda s: _preflight(s).get("strict") is False, 30, "strict to be unticked")
    viewer.click_item("train_start_button")
    s = viewer.wait_for(lambda s: _training(s).get("selected") and any(
        r["path"] == _training(s)["selected"] for r in _training(s)["runs"]), 300, "the run to be listed")
    assert "despite the pre-flight warnings" in _training(s)["message"]
    run = Path(_training(s)["selected"])
    # the details wrap between words: compare with the line breaks read as spaces
    viewer.wait_for(lambda s: "warning: yaw is not zero-centred" in " ".join(_training(s).get("details", "").split()),
                    300, "the run's details to show the trainer's warning")
    log = run / "log.txt"
    viewer.wait_for(lambda s: log.is_file() and "warning: faces has labels" in log.read_text(), 300,
                    "the trainer to log the warnings")
    assert "warning: yaw is not zero-centred" in log.read_text()


@pytest.mark.gui
def test_a_clean_dataset_shows_no_warnings(viewer):
    _fill_form(viewer, viewer.clean)
    viewer.set("train_overrides", " ".join(o for o in OVERRIDES if o != "training.use_labels=false"))
    s = _check(viewer, "clean")
    assert _preflight(s)["text"] == "" and not _preflight(s)["shown"]
    assert _training(s)["message"] == "pre-flight check: no warnings"
    assert value_of(viewer, "train_strict") is False
