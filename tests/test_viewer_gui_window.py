"""The viewer's window on a laptop-sized screen (1280x800), as a new user meets it: it fits the
screen, its panels follow a resize, it costs next to nothing while idle, and it reopens the last
model. Real window on Xvfb, real X requests and input (see tests/gui_harness.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import EPIGRAF_FIXTURES
from gui_harness import DEMO, START_TIMEOUT, Viewer, crop, image_center, screen_fixture, write_settings
from xdnd_source import drop_files

SCREEN = (1280, 800)
# The status bar is checked by its text: DearPyGui reports the status window's height as 100 although
# it is drawn 34 pixels high at the bottom edge.
PANELS = ("controls_window", "view_window", "tasks_window", "status_text")


laptop_screen = screen_fixture(SCREEN)


def _loaded(v: Viewer) -> dict:
    return v.wait_for(lambda s: s.get("model") is not None, START_TIMEOUT, "the model to load")


def _panel_rects(v: Viewer) -> dict:
    return {name: v.rect_of(name) for name in PANELS}


def _assert_inside(rects: dict, width: int, height: int) -> None:
    for name, (x, y, w, h, _) in rects.items():
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, (name, (x, y, w, h), (width, height))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0          # utime + stime, in clock ticks


@pytest.mark.gui
def test_a_fresh_window_fits_the_screen_with_its_status_bar_and_tasks(laptop_screen, tmp_path):
    v = Viewer(laptop_screen, tmp_path)                 # no settings file: geometry from the screen
    try:
        _loaded(v)
        s = v.settled()
        width, height = s["viewport"]
        assert width <= SCREEN[0] and height <= SCREEN[1]
        rects = _panel_rects(v)
        _assert_inside(rects, *SCREEN)
        # A person sees the status bar: its strip of the screen has text on it.
        shot = v.screenshot(tmp_path / "fresh.png")
        strip = crop(shot, rects["status_text"][:4])
        assert strip.size and strip.std() > 5, "the status bar shows no text"
        # ... and can click the Training tab at the far right.
        v.click_item("tab_training",
                     until=lambda s: s.get("tasks_tab") == "tab_training", what="the Training tab to open on a click")
    finally:
        assert v.close() == 0, v.log_text()[-3000:]


@pytest.mark.gui
def test_geometry_saved_on_a_larger_screen_is_refitted_and_a_resize_reflows_the_panels(laptop_screen, tmp_path):
    write_settings(tmp_path, window_width=1900, window_height=1150, window_x=30, window_y=30, resolution=64)
    v = Viewer(laptop_screen, tmp_path)
    try:
        _loaded(v)
        s = v.settled()
        assert s["viewport"][0] <= SCREEN[0] and s["viewport"][1] <= SCREEN[1]
        _assert_inside(_panel_rects(v), *SCREEN)
        # The window manager's resize is an X ConfigureWindow request; xdotool sends the same.
        window = subprocess.run(["xdotool", "search", "--name", "trigan viewer"], env=v.env, check=True,
                                capture_output=True, text=True, timeout=30).stdout.split()[0]
        v.xdotool("windowsize", window, 1000, 660)
        v.wait_for(lambda s: s["viewport"] == [1000, 660], 30, "the viewport to take the new size")
        deadline = time.time() + 30
        while True:
            rects = _panel_rects(v)
            try:
                _assert_inside(rects, 1000, 660)
                break
            except AssertionError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        assert rects["view_window"][2] >= 300                  # the image keeps a usable width
    finally:
        assert v.close() == 0, v.log_text()[-3000:]


@pytest.mark.gui
def test_an_idle_window_draws_about_once_a_second_and_wakes_on_input(laptop_screen, tmp_path):
    write_settings(tmp_path, resolution=64)
    v = Viewer(laptop_screen, tmp_path)
    try:
        _loaded(v)
        s = v.settled()
        v.move(5, 5)                                       # the pointer rests outside the image
        time.sleep(3.0)                                    # past the active period after input
        f0, cpu0, t0 = v.state()["frames"], _cpu_seconds(v.proc.pid), time.time()
        time.sleep(8.0)
        f1, cpu1, t1 = v.state()["frames"], _cpu_seconds(v.proc.pid), time.time()
        fps = (f1 - f0) / (t1 - t0)
        print(f"\nidle viewer: {fps:.2f} frames/s, {100 * (cpu1 - cpu0) / (t1 - t0):.1f} % of a core")
        assert fps < 2.5, f"an idle viewer should draw about once a second, drew {fps:.1f} frames/s"
        # Input wakes it: an arrow key over the image turns the camera.
        before = v.state()["orbit"]["version"]
        v.move(*image_center(s))
        v.xdotool("key", "Left")
        v.wait_for(lambda s: s["orbit"]["version"] > before, 10, "the arrow key to turn the camera")
    finally:
        assert v.close() == 0, v.log_text()[-3000:]


@pytest.mark.gui
def test_reopening_loads_the_last_model_and_says_when_it_is_gone(laptop_screen, tmp_path):
    other = tmp_path / "models" / "mine.ckpt"
    other.parent.mkdir()
    shutil.copyfile(DEMO, other)
    write_settings(tmp_path, last_model=str(other), recent_files=[str(other)], resolution=64)
    v = Viewer(laptop_screen, tmp_path, model=None)       # `trigan view` with no model argument
    try:
        assert _loaded(v)["model"]["file"] == str(other)
    finally:
        assert v.close() == 0, v.log_text()[-3000:]
    assert json.loads(v.settings_path.read_text())["last_model"] == str(other)

    other.unlink()
    again = Viewer(laptop_screen, tmp_path, model=None)
    try:
        s = _loaded(again)
        assert s["model"]["file"] == str(DEMO)
        assert str(other) in s["model_message"] and "gone" in s["model_message"]
    finally:
        assert again.close() == 0, again.log_text()[-3000:]


def _window_id(v: Viewer) -> int:
    found = subprocess.run(["xdotool", "search", "--name", "trigan viewer"], env=v.env, check=True,
                           capture_output=True, text=True, timeout=30).stdout.split()
    return int(found[0])


@pytest.mark.gui
def test_a_file_dropped_on_the_window_opens(laptop_screen, tmp_path):
    """A real XDND drop (tests/xdnd_source.py speaks the file manager's side of the protocol)."""
    pkl = tmp_path / "dropped" / "snapshot.pkl"
    pkl.parent.mkdir()
    shutil.copyfile(EPIGRAF_FIXTURES / "uncond_gpc.pkl", pkl)
    notes = tmp_path / "dropped" / "notes.txt"
    notes.write_text("not a model")
    write_settings(tmp_path, resolution=64)
    v = Viewer(laptop_screen, tmp_path)
    try:
        s = _loaded(v)
        assert drop_files(laptop_screen, _window_id(v), [notes], position=image_center(s))
        s = v.wait_for(lambda s: "notes.txt" in (s.get("model_message") or ""), 30, "the refusal of notes.txt")
        assert s["model"]["file"] == str(DEMO)                        # the model in use stays
        assert drop_files(laptop_screen, _window_id(v), [pkl], position=image_center(s))
        v.wait_for(lambda s: s["model"] and s["model"]["file"] == str(pkl), START_TIMEOUT, "the dropped model to open")
    finally:
        assert v.close() == 0, v.log_text()[-3000:]
