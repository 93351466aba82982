"""Status bar: rendered frames per second, milliseconds per preview and exact frame, what the render
worker is doing (with the progress and the time left of an exact frame), the device, the model, seed
and class (by name), and the GUI's own frame time. `Timing` keeps the numbers (also for the state
file); `describe_work` words the worker's status for the status bar and the View's info line."""

from __future__ import annotations

import collections
import os
import time
from typing import Deque, Dict, Optional, Tuple

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.interface import ViewerState

WINDOW = "status_window"
TEXT = "status_text"
WINDOW_SECONDS = 2.0
HEIGHT = 34
FONT_PX = 13               # DearPyGui's built-in font


def bar_height(scale: float = 1.0) -> int:
    """The status bar's height at a UI scale: HEIGHT, or one line of scaled text and its padding
    (the window padding scales with the text too, viewer/panels/appearance.py) where that is more."""
    return max(HEIGHT, int(round((FONT_PX + 16) * scale)) + 4)
WARMUP_FRAMES = 30         # the first frames build fonts and GL state: not the steady frame time


def format_duration(seconds: float) -> str:
    """A rough duration for people: "3 s", "45 s", "7 min", "1 h 05 min"."""
    seconds = max(0.0, float(seconds))
    if seconds < 59.5:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60.0)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def describe_work(status, device: str = "cpu") -> Optional[str]:
    """What the View's info line says while the worker works (a viewer.render_worker.WorkerStatus;
    None when idle): "loading demo.ckpt ...", "building the preview ...", "exact 512^2: 40 %, about
    3 s left", and for an exact frame estimated beyond SLOW_EXACT_S how long it takes on this device.
    None for a preview being rendered: its frames come too fast to need words."""
    if status is None:
        return None
    request = status.request
    if request is None or status.activity != "rendering":
        return f"{status.activity} ..."
    if request.quality != "exact":
        return None
    line = f"exact {request.resolution}^2: {100.0 * status.fraction:.0f} %"
    if status.seconds_left is not None:
        line += f", about {format_duration(status.seconds_left)} left"
    if status.slow:
        line += f" (slow on this {device}: about {format_duration(status.expected_s)} in all; a smaller resolution is quicker)"
    return line


def class_label(class_index: Optional[int], class_names) -> str:
    """ "class chair" by its name where the model names its classes, else "class 2"."""
    if class_index is None:
        return ""
    names = tuple(class_names or ())
    name = names[class_index] if 0 <= class_index < len(names) and str(names[class_index]).strip() else None
    return f"class {name}" if name else f"class {class_index}"


def _percentile(values, q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


class Timing:
    """Rolling numbers over the last couple of seconds, plus the longest GUI frame seen while
    rendering, an export and a training run were all active (the app's responsiveness goal)."""

    def __init__(self):
        self.frames: Deque[Tuple[float, str, float]] = collections.deque()   # (arrival, quality, render ms)
        self.gui: Deque[Tuple[float, float]] = collections.deque()           # (time, gui frame ms)
        self.max_gui_ms_all_busy = 0.0
        self.frames_all_busy = 0
        self.max_gui_ms_rendering = 0.0
        self.slowest: Tuple[float, Dict[str, float]] = (0.0, {})    # the longest frame and where it went
        self.count = 0
        self.busy_counts = {"frames": 0, "rendering": 0, "exporting": 0, "training": 0}
        self.all_busy_ms: Deque[float] = collections.deque(maxlen=5000)
        self.slowest_all_busy_phases: Dict[str, float] = {}

    def frame_arrived(self, quality: str, ms: float, now: Optional[float] = None) -> None:
        self.frames.append((now if now is not None else time.monotonic(), quality, float(ms)))

    def gui_frame(self, ms: float, rendering: bool, exporting: bool, training: bool, now: Optional[float] = None,
                  phases: Optional[Dict[str, float]] = None) -> None:
        now = now if now is not None else time.monotonic()
        self.count += 1
        if self.count <= WARMUP_FRAMES:
            return
        self.gui.append((now, ms))
        if ms > self.slowest[0]:
            self.slowest = (ms, dict(phases or {}))
        self.busy_counts["rendering"] += bool(rendering)
        self.busy_counts["exporting"] += bool(exporting)
        self.busy_counts["training"] += bool(training)
        self.busy_counts["frames"] += 1
        if rendering:
            self.max_gui_ms_rendering = max(self.max_gui_ms_rendering, ms)
        if rendering and exporting and training:
            if ms > self.max_gui_ms_all_busy:
                self.max_gui_ms_all_busy = ms
                self.slowest_all_busy_phases = dict(phases or {})
            self.frames_all_busy += 1
            self.all_busy_ms.append(ms)
        cutoff = now - WINDOW_SECONDS
        while self.gui and self.gui[0][0] < cutoff:
            self.gui.popleft()
        while self.frames and self.frames[0][0] < cutoff:
            self.frames.popleft()

    def snapshot(self) -> Dict[str, float]:
        span = WINDOW_SECONDS
        by_quality = {"preview": [], "exact": []}
        for _, quality, ms in self.frames:
            by_quality.setdefault(quality, []).append(ms)
        gui_ms = [ms for _, ms in self.gui]
        return {
            "fps": len(self.frames) / span,
            "preview_fps": len(by_quality["preview"]) / span,
            "preview_ms": sum(by_quality["preview"]) / len(by_quality["preview"]) if by_quality["preview"] else 0.0,
            "exact_ms": sum(by_quality["exact"]) / len(by_quality["exact"]) if by_quality["exact"] else 0.0,
            "gui_ms": sum(gui_ms) / len(gui_ms) if gui_ms else 0.0,
            "gui_ms_max": max(gui_ms) if gui_ms else 0.0,
            "max_gui_ms_all_busy": self.max_gui_ms_all_busy,
            "frames_all_busy": self.frames_all_busy,
            "all_busy_ms_p50": _percentile(self.all_busy_ms, 50),
            "all_busy_ms_p95": _percentile(self.all_busy_ms, 95),
            "slowest_all_busy_phases": {k: round(v, 2) for k, v in self.slowest_all_busy_phases.items()},
            "max_gui_ms_rendering": self.max_gui_ms_rendering,
            "busy_counts": dict(self.busy_counts),
            "slowest_frame_ms": self.slowest[0],
            "slowest_frame_phases": {k: round(v, 2) for k, v in self.slowest[1].items()},
        }


class StatusBar:
    def __init__(self, state: ViewerState, timing: Timing):
        self.state, self.timing = state, timing
        self._last_ms = {"preview": 0.0, "exact": 0.0}
        self._next_update = 0.0

    def build(self, window_id=0) -> None:
        # Anchored to the bottom edge of the viewport (see place()), not part of the saved layout.
        with dpg.window(label="Status", tag=window_id, no_title_bar=True, no_close=True, no_collapse=True,
                        no_scrollbar=True, no_move=True, no_resize=True, no_saved_settings=True):
            dpg.add_text("starting", tag=TEXT)
        self._placed_for = None

    def place(self) -> None:
        scale = float(dpg.get_global_font_scale())
        size = (dpg.get_viewport_client_width(), dpg.get_viewport_client_height(), scale)
        if size != self._placed_for and size[0] > 0 and size[1] > 0:
            height = bar_height(scale)
            dpg.configure_item(WINDOW, pos=(0, size[1] - height), width=size[0], height=height)
            self._placed_for = size

    def frame_shown(self, frame) -> None:
        if not getattr(frame, "partial", False):      # a step of a refinement is not the frame's time
            self._last_ms[frame.request.quality] = frame.ms

    def tick(self, now: float) -> None:
        self.place()
        if now < self._next_update:          # four updates a second are plenty to read
            return
        self._next_update = now + 0.25
        t = self.timing.snapshot()
        v = self.state.view
        info = self.state.model_info
        model = os.path.basename(info.path) if info else "no model"
        busy = self._busy_text()
        cls = class_label(v.class_index, info.class_names if info else ()) if info and info.c_dim else ""
        # an inverted latent (the Invert tab) is named by its file, not by the seed it replaced
        latent = (f"latent {os.path.basename(v.latent_file)}" if getattr(v, "latent_file", None)
                  else f"seed {v.seed}" + (f" {cls}" if cls else ""))
        text = (f"{t['fps']:4.1f} frames/s | preview {self._last_ms['preview']:6.0f} ms | exact "
                f"{self._last_ms['exact']:6.0f} ms | {busy} | device {self.state.device_name} | {model} | {latent}"
                + f" | GUI {t['gui_ms']:4.1f} ms (max {t['gui_ms_max']:4.0f})")
        dpg.set_value(TEXT, text)

    def _busy_text(self) -> str:
        """ "idle", "rendering", "loading demo.ckpt", or an exact frame's "exact 40 % ~3 s"."""
        status = self.state.worker_status()
        if status is None:
            return "rendering" if self.state.worker_busy() else "idle"
        request = status.request
        if request is None or status.activity != "rendering":
            return status.activity
        if request.quality != "exact":
            return "rendering"
        left = f" ~{format_duration(status.seconds_left)}" if status.seconds_left is not None else ""
        return f"exact {100.0 * status.fraction:.0f} %{left}"
