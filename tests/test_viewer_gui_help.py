"""Help where the user is, and the jobs list, with real X input on a 1280x800 screen (issue 34, part D):
F1 opens the shortcut sheet and Esc closes it, `?` typed into a field does not; every control has a
tooltip and resting the pointer on one shows it; Open folder runs the desktop's opener (a fake
xdg-open on PATH that records its argument); a cancelled export looks cancelled and Clear finished
removes the finished rows; UI scale 150 % and the light theme, chosen with the mouse, apply at once
and survive a restart. See tests/gui_harness.py for the machinery."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from gui_harness import (
    DEMO,
    START_TIMEOUT,
    Viewer,
    coloured_pixels,
    crop,
    image_center,
    screen_fixture,
    type_into,
    value_of,
    write_settings_at,
)

SCREEN = (1280, 800)
RESOLUTION = 128
SHOTS = Path(os.environ.get("TRIGAN_GUI_SHOTS", "/tmp/trigan-gui-help"))  # screenshots to look at
CANCELLED_LIGHT = (235, 160, 60)        # ui_style.CANCELLED: the dark theme's orange

xserver = screen_fixture(SCREEN)


def _start(xserver, folder: Path) -> Viewer:
    v = Viewer(xserver, folder, model=DEMO)
    v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the demo model to load")
    v.settled()
    return v


def _panel(v: Viewer, name: str) -> dict:
    return (v.state().get("panels") or {}).get(name) or {}


def _keep(path: Path, name: str) -> None:
    """Keep a screenshot for the docs (best effort: the folder is the lead's)."""
    try:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / name)
    except OSError:
        pass


def _click_plus(v: Viewer, tag: str) -> None:
    """Click the + step button of the input field `tag` (square, at the field's right end)."""
    x, y, w, h, _ = v.rect_of(tag)
    v.move(x + w - h // 2, y + h // 2)
    time.sleep(0.3)
    v.xdotool("click", 1)
    time.sleep(0.5)


def _scroll_controls_to(v: Viewer, tag: str) -> None:
    """Turn the wheel over the Controls window (up or down) until `tag` is on screen inside it."""
    cx, cy, cw, ch, _ = v.rect_of("controls_window")
    for _ in range(12):
        v.send(watch=[tag])
        rect = v.wait_for(lambda s: (s.get("items") or {}).get(tag) is not None, 30, f"{tag}")["items"][tag]
        if rect[4] and rect[1] + rect[3] <= cy + ch and rect[1] > cy + 20:
            return
        v.move(cx + cw // 2, cy + ch // 2)
        time.sleep(0.2)
        v.xdotool("click", "--repeat", 5, "--delay", 60, 4 if rect[1] <= cy + 20 else 5)   # 4: up, 5: down
        time.sleep(0.6)
    raise AssertionError(f"{tag} not scrolled into view: {rect} in the window {[cx, cy, cw, ch]}")


def _background(shot: np.ndarray, rect) -> float:
    """The window's background brightness: the median of a panel's pixels (mostly background)."""
    return float(np.median(crop(shot, rect).mean(axis=-1)))


@pytest.fixture
def fake_opener(tmp_path, monkeypatch):
    """A fake xdg-open first on the viewer's PATH: it writes the folder it was asked to open."""
    bin_dir, record = tmp_path / "bin", tmp_path / "opened.txt"
    bin_dir.mkdir()
    script = bin_dir / "xdg-open"
    script.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > '{record}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return record


@pytest.mark.gui
def test_shortcut_sheet_tooltips_open_folder_and_the_jobs_list(xserver, tmp_path, fake_opener):
    exports = tmp_path / "exports"
    exports.mkdir()
    write_settings_at(tmp_path, SCREEN, resolution=RESOLUTION, seed=0, last_export_folder=str(exports),
                      runs_folder=str(tmp_path / "runs"))
    started = time.monotonic()
    v = _start(xserver, tmp_path)
    try:
        # -- every control of the whole window has a tooltip ----------------------------------------
        missing = v.wait_for(lambda s: "missing_tooltips" in (s.get("panels") or {}).get("help", {}), 30,
                             "the help panel's state")["panels"]["help"]["missing_tooltips"]
        assert missing == [], f"controls without a tooltip: {missing}"

        # -- F1 opens the sheet, Esc closes it ---------------------------------------------------------
        cx, cy = image_center(v.state())
        v.move(cx, cy)
        time.sleep(0.3)
        v.xdotool("key", "F1")
        v.wait_for(lambda s: s["panels"]["help"]["open"], 30, "F1 to open the shortcut sheet")
        time.sleep(0.5)
        rect = v.rect_of("help_window")
        shot = v.screenshot(tmp_path / "sheet.png")
        assert crop(shot, rect).std() > 10, "the sheet shows nothing"
        _keep(tmp_path / "sheet.png", "D-shortcut-sheet.png")
        v.xdotool("key", "Escape")
        v.wait_for(lambda s: not s["panels"]["help"]["open"], 30, "Esc to close the sheet")

        # -- `?` while typing a seed types, it does not open the sheet --------------------------------
        type_into(v, "latent_seed", "12", then="")
        v.xdotool("key", "question")
        time.sleep(1.0)
        assert not _panel(v, "help")["open"], "? typed into the seed field opened the sheet"
        v.xdotool("key", "Return")
        v.wait_for(lambda s: s["view"]["seed"] == 12, 60, "seed 12")
        # ... and `?` with no field active does open it (the click on the image ends the typing). The
        # click waits until the GUI has seen the pointer on the image; if the click is lost all the
        # same (a busy CI machine lost one once: the `?` went into the seed field), the person's
        # remedy, a second click and `?`, is tried twice.
        def click_the_image_and_press_question_mark():
            v.move(cx, cy)
            v.frames_drawn()
            v.xdotool("click", 1)
            v.frames_drawn()
            v.xdotool("key", "question")
        v.act_until(click_the_image_and_press_question_mark, lambda s: s["panels"]["help"]["open"],
                    "? to open the sheet")
        v.xdotool("key", "Escape")
        v.wait_for(lambda s: not s["panels"]["help"]["open"], 30, "Esc to close the sheet")

        # -- the pointer resting on a control shows its tooltip ---------------------------------------
        x, y, w, h, _ = v.rect_of("export_open_folder")
        v.move(x + w + 200, y + h // 2)                  # beside it, over empty panel
        time.sleep(0.8)
        before = v.screenshot(tmp_path / "no_tip.png")
        v.send(watch=["export_open_folder_help_tip"])
        v.move(x + w // 2, y + h // 2)
        v.wait_for(lambda s: (s["items"].get("export_open_folder_help_tip") or [0] * 5)[4], 30,
                   "the Open folder tooltip to show")
        time.sleep(0.5)
        after = v.screenshot(tmp_path / "tip.png")
        below = [x, y + h, min(400, SCREEN[0] - x), 60]  # the tooltip opens under the pointer
        assert np.abs(crop(after, below) - crop(before, below)).mean() > 3, "no tooltip drawn"

        # -- Open folder runs the desktop's opener on the export folder -------------------------------
        v.click_item("export_open_folder")
        deadline = time.monotonic() + 30
        while not fake_opener.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake_opener.read_text() == str(exports)

        # -- a cancelled export looks cancelled; Clear finished removes the finished rows ------------
        v.click_item("export_screenshot_button")
        v.wait_for(lambda s: s["jobs"] and s["jobs"][0]["state"] == "done", 120, "the screenshot job")
        v.set("video_frames", 400)                       # long enough to be cancelled half way
        v.set("video_resolution", 256)
        v.click_item("export_video_button")
        v.wait_for(lambda s: any(j["kind"] == "video" and j["progress"] > 0.02 for j in s["jobs"]), 240,
                   "the video job to make progress")
        v.click_item("export_jobs_0_cancel")             # the newest row is the first
        s = v.wait_for(lambda s: any(j["kind"] == "video" and j["state"] == "cancelled" for j in s["jobs"]),
                       120, "the video job cancelled")
        time.sleep(1.0)
        msg = v.rect_of("export_jobs_0_msg")
        shot = v.screenshot(tmp_path / "cancelled.png")
        _keep(tmp_path / "cancelled.png", "D-jobs-cancelled.png")
        assert coloured_pixels(shot, msg, CANCELLED_LIGHT, tolerance=30) > 20, "the cancelled line is not orange"
        assert value_of(v, "export_jobs_0_bar") < 1.0                 # the bar stopped where it was
        v.click_item("export_jobs_clear")
        s = v.wait_for(lambda s: all(not j["listed"] for j in s["jobs"] if j["state"] != "running"), 30,
                       "Clear finished to take the finished rows away")
        assert [j["state"] for j in s["jobs"]] == ["done", "cancelled"] or len(s["jobs"]) >= 2
        assert value_of(v, "export_jobs_0_bar") is None          # no row left in the list
    finally:
        code = v.close()
    assert code == 0, v.log_text()[-3000:]
    print(f"\nhelp/tooltips/jobs GUI test: {time.monotonic() - started:.0f} s")


@pytest.mark.gui
def test_ui_scale_and_light_theme_apply_at_once_and_survive_a_restart(xserver, tmp_path):
    write_settings_at(tmp_path, SCREEN, resolution=RESOLUTION, seed=0, last_export_folder=str(tmp_path / "exports"),
                      runs_folder=str(tmp_path / "runs"))
    started = time.monotonic()
    v = _start(xserver, tmp_path)
    try:
        x0, y0, w0, h0, _ = v.rect_of("latent_seed_random")
        controls = v.rect_of("controls_window")
        dark = _background(v.screenshot(tmp_path / "dark.png"), controls)
        _scroll_controls_to(v, "interface_header")
        v.click_item("interface_header")                           # open the Interface header
        _scroll_controls_to(v, "appearance_theme")
        for expected in (1.25, 1.5):                              # two clicks on the field's + button
            _scroll_controls_to(v, "appearance_theme")            # the panels grew with the last step
            _click_plus(v, "appearance_scale")
            s = v.wait_for(lambda s, scale=expected: s["panels"]["appearance"].get("applied_scale") == scale, 30,
                           f"scale {expected}")
        assert s["panels"]["appearance"]["font_scale"] == pytest.approx(1.5)
        _scroll_controls_to(v, "appearance_theme")
        x, y, w, h, _ = v.rect_of("appearance_theme")             # dark (o) light (o): "light" is the right end
        v.move(x + w - 12, y + h // 2)
        time.sleep(0.3)
        v.xdotool("click", 1)
        v.wait_for(lambda s: s["panels"]["appearance"].get("applied_theme") == "light", 30, "the light theme")
        time.sleep(0.5)
        _scroll_controls_to(v, "latent_seed_random")
        _, _, w1, h1, _ = v.rect_of("latent_seed_random")
        assert h1 >= 1.3 * h0 and w1 >= 1.3 * w0, ((w0, h0), (w1, h1))      # text and padding grew
        shot = v.screenshot(tmp_path / "light.png")
        _keep(tmp_path / "light.png", "D-light-150.png")
        light = _background(shot, controls)
        assert dark < 80 and light > 200, (dark, light)
    finally:
        code = v.close()
    assert code == 0, v.log_text()[-3000:]

    v = _start(xserver, tmp_path)                                  # the same settings file
    try:
        s = v.wait_for(lambda s: s["panels"]["appearance"].get("applied_scale") == 1.5, 60, "scale restored")
        assert s["panels"]["appearance"]["applied_theme"] == "light"
        _, _, w2, h2, _ = v.rect_of("latent_seed_random")
        assert (w2, h2) == (w1, h1)
        assert _background(v.screenshot(tmp_path / "restarted.png"), v.rect_of("controls_window")) > 200
    finally:
        code = v.close()
    assert code == 0, v.log_text()[-3000:]
    print(f"\nscale/theme GUI test: {time.monotonic() - started:.0f} s")
