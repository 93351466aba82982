"""What the GUI tests share: a private Xvfb screen, a `trigan view` process driven through its
--state-file / --control-file, real X input through xdotool, and screenshots through ImageMagick's
`import` (tests/test_viewer_gui.py shows how the tests use them).

Needs the programs Xvfb, xdotool and import (`apt-get install -y xvfb xdotool imagemagick`;
.ci/run installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trigan.viewer.display import x_server_problem
from trigan.viewer.settings import ViewerSettings, save_settings

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo.ckpt"
START_TIMEOUT = 240.0          # model load + first frame on a busy 2-core machine


def _need_programs():
    missing = [p for p in ("Xvfb", "xdotool", "import") if shutil.which(p) is None]
    if missing:
        pytest.fail(f"GUI tests need {', '.join(missing)}: apt-get install -y xvfb xdotool imagemagick "
                    "(or deselect them with -m 'not gui')", pytrace=False)



@contextlib.contextmanager
def running_xserver(size=(1600, 1000)):
    """A private Xvfb screen of `size` (width, height); yields its DISPLAY name. Xvfb picks a free
    display number itself (-displayfd), so test runs started at the same time never share one, and it
    does not reset when its last client leaves (-noreset): a viewer started just then could not connect."""
    _need_programs()
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{size[0]}x{size[1]}x24",
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write_end,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            number = pipe.readline().strip().decode()      # written once the server is ready
        if not number.isdigit() or proc.poll() is not None:
            pytest.fail(f"Xvfb did not start (it said {number!r})", pytrace=False)
        display = f":{number}"
        deadline = time.time() + 20
        while x_server_problem(display) is not None:
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail(f"Xvfb {display} does not answer", pytrace=False)
            time.sleep(0.1)
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def screen_fixture(size):
    """A module-scoped pytest fixture yielding the DISPLAY of a private Xvfb screen of `size`:
    `xserver = screen_fixture((1280, 800))` in a GUI test module."""
    @pytest.fixture(scope="module")
    def xserver():
        with running_xserver(size) as display:
            yield display
    return xserver


def write_settings_at(folder: Path, size, **values) -> None:
    """Settings that put the window at the screen's corner with the given size (the tests' clicks
    and screenshots then match the defaults a person sees), plus any other ViewerSettings values."""
    write_settings(folder, window_x=0, window_y=0, window_width=size[0], window_height=size[1], **values)


class Viewer:
    """A running `trigan view` process and the X display it draws on."""

    def __init__(self, display: str, folder: Path, model=DEMO, extra_args=()):
        self.display, self.folder = display, folder
        self.state_path = folder / "state.json"
        self.control_path = folder / "control.jsonl"
        self.settings_path = folder / "config" / "viewer.json"
        self.control_path.write_text("")
        self._origin = None
        if self.state_path.exists():
            self.state_path.unlink()
        self.env = dict(os.environ, DISPLAY=display, XDG_CONFIG_HOME=str(folder / "config"))
        self.log = open(folder / "viewer.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trigan.cli.main", "view", *([] if model is None else [str(model)]),
             "--settings", str(self.settings_path),
             "--state-file", str(self.state_path), "--control-file", str(self.control_path), *extra_args],
            cwd=folder, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    # -- reading -------------------------------------------------------------------------------------
    def state(self) -> dict:
        if self.proc.poll() is not None:
            raise AssertionError(f"the viewer exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.folder / "viewer.log").read_text()

    def wait_for(self, predicate, timeout=60.0, what="condition") -> dict:
        deadline = time.time() + timeout
        while True:
            s = self.state()
            if s and predicate(s):
                return s
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last state: "
                                     f"{json.dumps({k: s.get(k) for k in ('orbit', 'frame', 'frame_error', 'view_error', 'jobs', 'training', 'errors', 'model_message')}, default=str)[:3000]}")
            time.sleep(0.1)

    def settled(self, timeout=START_TIMEOUT) -> dict:
        """Wait until the exact frame of the current camera is on screen."""
        def done(s):
            f, o = s.get("frame"), s.get("orbit")
            return (f and o and not s["worker_busy"] and f["quality"] == "exact"
                    and abs(f["yaw"] - o["yaw"]) < 1e-9 and abs(f["radius"] - o["radius"]) < 1e-9)
        return self.wait_for(done, timeout, "the exact frame of the current view")

    # -- commands ------------------------------------------------------------------------------------
    def send(self, **command) -> None:
        before = self.state().get("commands_done", 0)
        with open(self.control_path, "a") as f:
            f.write(json.dumps(command) + "\n")
        self.wait_for(lambda s: s.get("commands_done", 0) > before, 30, f"command {command}")

    def set(self, tag: str, value) -> None:
        self.send(set=tag, value=value)

    def rect_of(self, tag: str):
        """The widget's [x, y, w, h, visible], once it is visible and has stayed put for a moment
        (text above it may still be reflowing)."""
        self.send(watch=[tag])
        deadline = time.time() + 30
        last = None
        while True:
            s = self.wait_for(lambda s: (s.get("items") or {}).get(tag) and s["items"][tag][4], 30, f"{tag} visible")
            rect = s["items"][tag]
            if rect == last:
                return rect
            if time.time() > deadline:
                raise AssertionError(f"{tag} keeps moving: {last} -> {rect}")
            last = rect
            time.sleep(0.5)

    # -- X events ------------------------------------------------------------------------------------
    def xdotool(self, *args) -> None:
        subprocess.run(["xdotool", *[str(a) for a in args]], env=self.env, check=True, timeout=30)

    def origin(self):
        """(x, y) of the window's client area on the screen. The state file's rectangles are in
        window pixels (the viewer centres its window on the screen), so X events add this."""
        if self._origin is None:
            self.wait_for(lambda s: s.get("frames", 0) > 0, START_TIMEOUT, "the window")
            self._origin = window_origin(self)
        return self._origin

    def move(self, x, y) -> None:
        """Move the pointer to (x, y) in window pixels."""
        ox, oy = self.origin()
        self.xdotool("mousemove", int(x) + ox, int(y) + oy)

    def frames_drawn(self, count: int = 2, timeout: float = 30.0) -> None:
        """Wait until the viewer has drawn `count` more GUI frames: whatever X input came before
        (a pointer move, say) has then been seen by the GUI, so a click that follows lands where the
        pointer now is, however slow the frames are on a busy machine."""
        before = self.state().get("frames", 0)
        self.wait_for(lambda s: s.get("frames", 0) >= before + count, timeout, f"{count} more GUI frames")

    def click_item(self, tag: str, until=None, what: str = "", tries: int = 3, wait: float = 10.0):
        """Click the middle of widget `tag`, once the GUI has seen the pointer there. With `until` (a
        predicate on the state) wait `wait` seconds for it and click again if it does not come, up
        to `tries` clicks in all, and return the state: for clicks a second one cannot harm (a tab,
        a button that opens something), where a click lost on a busy machine (CI lost one once)
        would otherwise fail a test about something else."""
        x, y, w, h, _ = self.rect_of(tag)

        def click():
            self.move(x + w // 2, y + h // 2)
            self.frames_drawn()
            self.xdotool("click", 1)
        if until is None:
            click()
            time.sleep(0.2)
            return None
        return self.act_until(click, until, what or f"what a click on {tag} does", tries, wait)

    def act_until(self, act, until, what: str, tries: int = 3, wait: float = 10.0) -> dict:
        """Call `act()` (X input), then wait `wait` seconds for the state `until`; again if it does not
        come, up to `tries` times in all; return the state. Only for input a person would simply
        repeat, where a repeat does no harm."""
        for attempt in range(1, tries + 1):
            act()
            try:
                return self.wait_for(until, wait, what)
            except AssertionError as exc:
                if attempt == tries:
                    raise AssertionError(f"{attempt} tries: {exc}") from None
        raise ValueError(f"tries {tries}: expected at least 1")

    def drag(self, start, delta, button=1, steps=8) -> None:
        """Press, move in steps, release, pausing so that every position is seen by a GUI frame."""
        x0, y0 = start
        self.move(x0, y0)
        time.sleep(0.3)
        self.xdotool("mousedown", button)
        time.sleep(0.3)
        for i in range(1, steps + 1):
            self.move(x0 + delta[0] * i / steps, y0 + delta[1] * i / steps)
            time.sleep(0.08)
        time.sleep(0.3)
        self.xdotool("mouseup", button)
        time.sleep(0.2)

    def screenshot(self, path: Path) -> np.ndarray:
        """What the screen shows of the window (its client area, indexed in window pixels, as the
        state file's rectangles are), also saved to `path` as PNG."""
        ox, oy = self.origin()
        width, height = self.state()["viewport"]
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True, timeout=60)
        with Image.open(path) as img:
            window = img.convert("RGB").crop((ox, oy, ox + width, oy + height))
        window.save(path)
        return np.asarray(window).astype(np.float32)

    def close(self, timeout=60) -> int:
        if self.proc.poll() is None:
            with open(self.control_path, "a") as f:
                f.write(json.dumps({"quit": True}) + "\n")
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def image_center(s):
    x, y, w, h = s["image_rect"]
    return x + w // 2, y + h // 2


def crop(shot: np.ndarray, rect) -> np.ndarray:
    x, y, w, h = rect[:4]
    return shot[y:y + h, x:x + w]


def write_settings(folder: Path, **values) -> None:
    settings = ViewerSettings(**values)
    save_settings(settings, folder / "config" / "viewer.json")


# -- typing, keys and widget values (tests/test_viewer_gui_files.py) ----------------------------------

def type_into(viewer: Viewer, tag: str, text: str, then: str = "Return") -> None:
    """Click the text field `tag`, empty it (End, shift+Home, BackSpace), type `text` (real X key
    events, checked to have arrived), then press `then` (a key name for xdotool; "" for none)."""
    viewer.send(watch=[tag])
    seen = []

    def emptied(s) -> bool:
        seen.append(((s.get("values") or {}).get(tag) or {}).get("value"))
        return seen[-1] == ""
    for attempt in range(4):        # keys that land before the click has activated the field are lost
        viewer.click_item(tag)
        time.sleep(0.3)
        if attempt == 0:
            viewer.xdotool("key", "End")
            viewer.xdotool("key", "shift+Home")
        else:
            # The picker's path field once kept its text through four End, shift+Home rounds (CI):
            # retries select as type_number does, ctrl held down across a GUI frame.
            viewer.xdotool("keydown", "ctrl")
            time.sleep(0.15)
            viewer.xdotool("key", "a")
            time.sleep(0.15)
            viewer.xdotool("keyup", "ctrl")
        viewer.xdotool("key", "BackSpace")
        try:
            viewer.wait_for(emptied, 10, f"{tag} emptied")
            break
        except AssertionError:
            if attempt == 3:
                raise AssertionError(f"End, shift+Home, BackSpace left {seen[-1:]!r} in {tag}") from None
    viewer.xdotool("type", "--delay", 20, text)
    # The GUI takes in about one key event a frame: wait until all of it has arrived in the field.

    def arrived(s) -> bool:
        seen.append(((s.get("values") or {}).get(tag) or {}).get("value"))
        return seen[-1] == text
    try:
        viewer.wait_for(arrived, 60, f"{text!r} typed into {tag}")
    except AssertionError as exc:
        raise AssertionError(f"{tag} holds {seen[-1:]!r}, not the typed {text!r}") from exc
    if then:
        viewer.xdotool("key", then)
        time.sleep(0.3)


def type_number(viewer: Viewer, tag: str, number, accepted: bool = True) -> None:
    """Click into a number field, select what it holds (ctrl held across a GUI frame), type the
    number and press Enter; retried while the field does not hold it (keys lost before the click
    activated the field). A number the panel refuses (accepted=False) is typed once: the panel puts
    the old value back."""
    x, y, w, h, _ = viewer.rect_of(tag)
    for _ in range(3 if accepted else 1):
        viewer.move(x + min(w // 2, 30), y + h // 2)       # in the field, not on its label or buttons
        time.sleep(0.2)
        viewer.xdotool("click", 1)
        time.sleep(0.4)
        viewer.xdotool("keydown", "ctrl")
        time.sleep(0.15)
        viewer.xdotool("key", "a")
        time.sleep(0.15)
        viewer.xdotool("keyup", "ctrl")
        viewer.xdotool("key", "BackSpace")
        viewer.xdotool("type", "--delay", "40", str(number))
        viewer.xdotool("key", "Return")
        time.sleep(0.5)
        if not accepted or abs(float(value_of(viewer, tag)) - float(number)) < 1e-6:
            return
    raise AssertionError(f"{tag} holds {value_of(viewer, tag)!r}, not the typed {number}")


def values_of(viewer: Viewer, *tags: str, timeout: float = 30.0) -> dict:
    """The widgets' {"value": ..., "label": ...} (None: no such widget) from the state file's
    "values", which reports every watched widget."""
    viewer.send(watch=list(tags))
    s = viewer.wait_for(lambda s: all(t in (s.get("values") or {}) for t in tags), timeout, f"values of {tags}")
    return {t: s["values"][t] for t in tags}


def value_of(viewer: Viewer, tag: str):
    entry = values_of(viewer, tag)[tag]
    return None if entry is None else entry["value"]


def coloured_pixels(shot: np.ndarray, rect, colour, tolerance: float = 40.0) -> int:
    """How many pixels inside rect lie within `tolerance` (per channel) of an RGB colour."""
    part = crop(shot, rect)
    return int((np.abs(part - np.asarray(colour, dtype=np.float32)).max(axis=-1) <= tolerance).sum())


# -- where the viewer's window is on the screen (tests/test_viewer_gui_progress.py) ----------------------

def window_origin(viewer: Viewer):
    """(x, y) of the viewer window's client area on the X screen: the state file's rectangles are in
    window pixels and xdotool moves in screen pixels, so an X event at a widget needs both."""
    out = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--pid", str(viewer.proc.pid)],
                         env=viewer.env, check=True, timeout=30, capture_output=True, text=True).stdout.split()
    geometry = subprocess.run(["xdotool", "getwindowgeometry", "--shell", out[-1]], env=viewer.env, check=True,
                              timeout=30, capture_output=True, text=True).stdout
    values = dict(line.split("=", 1) for line in geometry.split() if "=" in line)
    return int(values["X"]), int(values["Y"])
