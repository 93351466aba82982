"""The Training tab as a person uses it, on short runs: real clicks on its buttons and real typing
in its fields (xdotool), on a virtual X server (see tests/gui_harness.py).

Two runs of the tiny test model cover it: a run shorter than one tick (its loss curve must be drawn
from its single point; gamma and the duration go on the command line as typed; the resolution the
dataset imposed and the ETA are shown in the panel, not only in the launch log), and a long run that
the Stop button ends: "stopping" at once (never "sampling"), then "stopped" with a loadable
latest.ckpt. Stop, Resume, View latest and View best are enabled only when they can do something.

Run only these: `python -m pytest -m gui tests/test_viewer_gui_training.py -s` (-s prints the
measured Stop-to-stopped time).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from gui_harness import START_TIMEOUT, Viewer, crop, screen_fixture, write_settings_at
from train_helpers import TINY_TRAIN, write_tiny_dataset
from trigan.core.model_io import open_model
from trigan.viewer.run_monitor import list_runs, stop_run

SCREEN = (1600, 1000)
WINDOW_SIZE = (1600, 1000)         # the whole screen: the plots below the run list stay on it
BUTTONS = ("train_stop_button", "train_resume_button", "train_load_latest", "train_load_best")
# The tiny model, but with the demo preset's own resolution (64: the 16^2 dataset changes it, and
# the panel must say so) and one tick per kimg: a run of 0.03 kimg is shorter than one tick.
SHORT_RUN = [o for o in TINY_TRAIN if not o.startswith(("model.img_resolution=", "training.tick_kimg="))]
SHORT_RUN.append("training.tick_kimg=1")
GAMMA_TYPED, KIMG_TYPED = "0.07", "0.03"     # neither is a float32: DearPyGui stores 0.0700000003...
# A run that the Stop button ends: far longer than the test, with a video due at its end (which a
# finished run makes, and a stopped one must not) and no sample grid but the start's before it.
STOP_RUN = [*SHORT_RUN[:-1], "training.tick_kimg=0.008", "training.image_ticks=100000", "training.video_ticks=100000"]


xserver = screen_fixture(SCREEN)


@pytest.fixture(scope="module")
def viewer(xserver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    write_settings_at(folder, WINDOW_SIZE, resolution=64, runs_folder=str(folder / "runs"))
    v = Viewer(xserver, folder)
    try:
        v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
        v.send(tab="tab_training")
        v.runs = folder / "runs"
        v.data = write_tiny_dataset(folder / "tiny")
        yield v
    finally:
        for r in list_runs(folder / "runs") if (folder / "runs").exists() else []:
            if r.alive:                                # never leave a trainer behind, whatever failed
                stop_run(r.path)
        v.close()


def _training(viewer) -> dict:
    return viewer.state().get("training") or {}


def _type_into(viewer, tag: str, text: str) -> None:
    """Click into a field, select what it holds, type `text` and press Enter: what a person does."""
    viewer.click_item(tag)
    time.sleep(0.5)                       # a select-all before the field is active would be lost
    viewer.xdotool("key", "--clearmodifiers", "ctrl+a")
    viewer.xdotool("key", "BackSpace")
    time.sleep(0.2)
    viewer.xdotool("type", "--delay", "60", text)
    time.sleep(0.1)
    viewer.xdotool("key", "Return")
    time.sleep(0.3)


def _start_run(viewer, overrides, kimg_text: str) -> dict:
    """Fill in the form (the gamma and duration typed with the keyboard), click Start, and wait
    until the new run is listed and selected."""
    before = {r["path"] for r in _training(viewer).get("runs", [])}
    viewer.set("train_data", str(viewer.data))
    viewer.set("train_runs_folder", str(viewer.runs))
    viewer.set("train_preset", "demo")
    viewer.set("train_batch", 8)
    viewer.set("train_overrides", " ".join(overrides))
    _type_into(viewer, "train_gamma", GAMMA_TYPED)
    _type_into(viewer, "train_kimg", kimg_text)
    viewer.click_item("train_start_button")
    s = viewer.wait_for(lambda s: any(r["path"] not in before and r["path"] == s["training"]["selected"]
                                      for r in s["training"]["runs"]), 300, "the started run to be listed")
    return next(r for r in s["training"]["runs"] if r["path"] == s["training"]["selected"])


def _launch_command(runs: Path, run_path: str) -> str:
    """The `trigan train` command line of the launch log that made this run."""
    for log in sorted(runs.glob("launch-*.log")):
        text = log.read_text()
        if f"run: {run_path}" in text:
            return next(line for line in text.splitlines() if line.startswith("# "))
    raise AssertionError(f"no launch log names {run_path}: {[p.name for p in runs.glob('launch-*.log')]}")


def _saturated_pixels(image: np.ndarray) -> np.ndarray:
    """Where the picture is coloured (a plotted curve or marker), not grey (background, grid, text)."""
    return (image.max(axis=2) - image.min(axis=2)) > 60


class Checks:
    """Every check of a test is made and every failure reported (one run of a trainer serves many
    checks; against the code before a fix, the report then names each defect, not just the first)."""

    def __init__(self):
        self.failed = []

    def __call__(self, ok, what: str) -> None:
        if not ok:
            self.failed.append(what)

    def report(self) -> None:
        assert not self.failed, "\n".join(self.failed)


@pytest.mark.gui
def test_buttons_are_disabled_while_they_can_do_nothing(viewer, tmp_path):
    """No run selected: Stop, Resume, View latest, View best are disabled and greyed out; clicking
    Stop or View best does nothing."""
    check = Checks()
    s = viewer.wait_for(lambda s: s.get("training", {}).get("folder"), 30, "the panel to watch its runs folder")
    assert s["training"]["runs"] == []
    message = s["training"]["message"]
    viewer.click_item("train_stop_button")
    viewer.click_item("train_load_best")
    time.sleep(1.0)
    after = _training(viewer)["message"]
    check(after == message, f"clicking the disabled Stop / View best did something: message {after!r}")
    shot = viewer.screenshot(tmp_path / "buttons_disabled.png")
    stop = crop(shot, viewer.rect_of("train_stop_button"))
    start = crop(shot, viewer.rect_of("train_start_button"))
    # A disabled button is drawn greyed out, darker than the enabled Start button.
    check(stop.mean() < start.mean() - 10, f"Stop looks enabled: mean {stop.mean():.0f} vs Start {start.mean():.0f}")
    buttons = _training(viewer).get("buttons")
    check(buttons == dict.fromkeys(BUTTONS, False), f"buttons enabled without a run: {buttons}")
    check.report()


@pytest.mark.gui
def test_a_run_shorter_than_a_tick_draws_its_curve_and_shows_eta_and_resolution(viewer, tmp_path):
    check = Checks()
    run = _start_run(viewer, SHORT_RUN, KIMG_TYPED)

    # While it trains, the panel shows the ETA and the resolution the dataset imposed.
    s = viewer.wait_for(lambda s: any(r["path"] == run["path"] and r["phase"] in ("training", "done")
                                      for r in s["training"]["runs"]), 300, "the run to train")
    details = s["training"].get("details", "")
    check(re.search(r"ETA (-|\d+\.\ds|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)(\s|$)", details), f"no sane ETA in {details!r}")
    check("-1d" not in details and "ETA -0" not in details, f"a negative ETA in {details!r}")
    check("resolution 16^2" in details, f"no resolution in {details!r}")
    check("model.img_resolution 64 -> 16" in " ".join(details.split()), f"no resolution change in {details!r}")

    s = viewer.wait_for(lambda s: any(r["path"] == run["path"] and r["phase"] == "done" and not r["alive"]
                                      for r in s["training"]["runs"]), 600, "the short run to finish")
    # Gamma and the duration went on the command line as they were typed.
    command = _launch_command(viewer.runs, run["path"])
    check(f"training.gamma={GAMMA_TYPED} " in command + " ", f"gamma not as typed: {command}")
    check(f"--kimg {KIMG_TYPED} " in command, f"kimg not as typed: {command}")

    # The run is shorter than its tick: its one stats line is a curve the plot shows (as a marker).
    viewer.wait_for(lambda s: "loss_G" in s["training"]["stats_keys"], 60, "the run's stats to be read")
    time.sleep(2.0)                                      # a poll and a frame to plot them
    shot = viewer.screenshot(tmp_path / "short_run.png")
    x, y, w, h, _ = viewer.rect_of("train_loss_plot")
    # One point per curve sits in the middle of the fitted x range, right of the legend (top left,
    # whose colour boxes are drawn for a series whether or not it draws anything). Only what is on
    # the screen counts.
    visible = shot[y:min(y + h, shot.shape[0]), x + int(0.45 * w):x + w]
    drawn = int(_saturated_pixels(visible).sum())
    check(drawn >= 20, f"no curve drawn in the loss plot ({drawn} coloured pixels)")
    plotted = _training(viewer).get("plotted", {})
    check(plotted.get("loss_G") == {"points": 1, "markers": True} and plotted.get("loss_D", {}).get("points") == 1,
          f"plotted: {plotted}")

    # Done: nothing to stop or resume, latest.ckpt to view, no best.ckpt (no metrics).
    s = viewer.state()
    buttons = s["training"].get("buttons")
    check(buttons == {"train_stop_button": False, "train_resume_button": False, "train_load_latest": True,
                      "train_load_best": False}, f"buttons of a finished run: {buttons}")
    listed = next(r for r in s["training"]["runs"] if r["path"] == run["path"])
    check(listed.get("summary") == "done", f"listed as {listed}")
    check(s["training"].get("details", "").startswith(f"{Path(run['path']).name}: done"),
          f"details: {s['training'].get('details')!r}")
    message, model = s["training"]["message"], s["model"]
    viewer.click_item("train_load_best")                     # disabled: nothing happens
    time.sleep(1.0)
    s = viewer.state()
    check(s["training"]["message"] == message and s["model"] == model,
          f"clicking the disabled View best did something: {s['training']['message']!r}")
    check.report()


@pytest.mark.gui
def test_stop_says_stopping_at_once_and_ends_with_a_checkpoint(viewer, tmp_path):
    check = Checks()
    run = _start_run(viewer, STOP_RUN, "1000")
    s = viewer.wait_for(lambda s: any(r["path"] == run["path"] and r["alive"] and r["phase"] == "training"
                                      and (r["kimg"] or 0) > 0 for r in s["training"]["runs"]),
                        300, "the run to train")
    buttons = s["training"].get("buttons") or {}
    check(buttons.get("train_stop_button") is True and buttons.get("train_resume_button") is False,
          f"buttons of a live run: {buttons}")

    viewer.click_item("train_stop_button")
    clicked = time.time()
    seen, details_seen = [], []
    deadline = clicked + 300
    while time.time() < deadline:
        t = viewer.state().get("training") or {}
        r = next((r for r in t.get("runs", []) if r["path"] == run["path"]), None)
        if r is not None:
            word = r.get("summary", r["phase"]) if r["alive"] else r["phase"]
            if not seen or seen[-1] != word:
                seen.append(word)
                details_seen.append(t.get("details", "").split("\n")[0])
            if not r["alive"] and r["phase"] == "stopped":
                break
        time.sleep(0.05)
    stop_to_stopped = time.time() - clicked
    print(f"\nStop clicked -> phase stopped: {stop_to_stopped:.1f} s (seen {seen}); "
          f"load average {os.getloadavg()[0]:.1f}")
    assert seen and seen[-1] == "stopped", f"the run did not stop: {seen}"
    # "training" may still be read before the GUI has handled the click (a busy machine): what
    # follows it is "stopping", shown before the trainer answers, and only then "stopped"
    changed = seen[1:] if seen[0] == "training" else seen
    check(changed[0] == "stopping", f"not 'stopping' at once: {seen}")
    check("sampling" not in seen and "evaluating" not in seen, f"extras on the way out: {seen}")
    check(any("stopping" in line for line in details_seen), f"the details never said stopping: {details_seen}")

    s = viewer.wait_for(lambda s: s["training"].get("buttons", {}).get("train_resume_button", True), 30,
                        "Resume enabled")
    stopped = next(r for r in s["training"]["runs"] if r["path"] == run["path"])
    check(0 < stopped["kimg"] < 1000, f"stopped at {stopped['kimg']}")
    check(stopped.get("summary") == "stopped (resumable)", f"listed as {stopped}")
    buttons = s["training"].get("buttons")
    check(buttons == {"train_stop_button": False, "train_resume_button": True, "train_load_latest": True,
                      "train_load_best": False}, f"buttons of a stopped run: {buttons}")
    first = s["training"].get("details", "").split("\n")[0]
    check("stopped at" in first, f"details: {first!r}")
    latest = Path(run["path"]) / "latest.ckpt"
    assert open_model(latest).progress["kimg"] == pytest.approx(stopped["kimg"])
    # The stop made no sample grid or video: only the start's grid and the reals are there.
    samples = sorted(p.name for p in (Path(run["path"]) / "samples").iterdir())
    check(samples == ["fakes_000000000.png", "reals.png"], f"the stop wrote samples: {samples}")
    viewer.screenshot(tmp_path / "stopped.png")
    check.report()
