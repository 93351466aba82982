"""Scripting hooks: `trigan view --state-file S --control-file C`.

The state file is a small JSON document the viewer rewrites (atomically) a few times a second: the
camera, the values of the controls, the last frame, timings, jobs, training runs, and where the image
and chosen widgets sit in the window, so a script (or the GUI tests) can aim real mouse events at
them and check what happened.

The control file is read line by line as the viewer runs; each line is one JSON command:

    {"set": "latent_seed", "value": 7}     set a widget and run its callback, as if a person edited it
    {"press": "export_mesh_button"}        run a button's callback, as if clicked
    {"tab": "tab_training"}                show a tab of the Tasks window
    {"watch": ["export_mesh_button"]}      also report these widgets' rectangles in the state file
    {"screenshot": "/tmp/view.png"}        save the whole window as PNG (DearPyGui's frame buffer)
    {"quit": true}                         close the viewer (settings and layout are saved)

Commands run in the GUI thread, between frames, through the same callbacks the widgets use.

What the state file says of the app comes from the app's public `snapshot()` (a `ViewerSnapshot`,
below) and from the widgets by their tags; the only things Automation asks of the app are
`note_input()` and `quit()` (`AutomationHost`). The file's keys are read by the GUI tests and by
users' scripts: keep them (the camera stays under "orbit").
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol

import dearpygui.dearpygui as dpg

from trigan.core.atomic import atomic_write_text
from trigan.core.cameras import Pose
from trigan.viewer.render_request import Frame, ViewValues

if TYPE_CHECKING:                     # the worker's types, for annotations only (they load torch)
    from trigan.viewer.render_worker import WorkerStatus
    from trigan.viewer.scene import ModelInfo

STATE_INTERVAL_S = 0.2


@dataclass(frozen=True)
class ViewerSnapshot:
    """The app's state as the state file reports it (ViewerApp.snapshot)."""

    frames: int                           # GUI frames drawn so far
    model_info: Optional["ModelInfo"]     # the open model
    model_loading: bool                   # a model is being opened
    view: ViewValues                      # the control values
    pose: Optional[Pose]                  # the camera (None before the first model)
    pose_version: int                     # counts camera changes
    last_frame: Optional[Frame]           # the newest finished frame without an error
    shown_frame: Optional[Frame]          # the newest finished frame, an error frame included
    shown_partial: Optional[Frame]        # the intermediate frame on screen (Frame.partial), if any
    worker_status: Optional["WorkerStatus"]
    worker_busy: bool
    image_rect: List[int]                 # the image's [x, y, w, h] in window pixels
    timing: Dict[str, Any]                # panels.status.Timing.snapshot()
    startup: Dict[str, Optional[float]]   # seconds to the window, first image, first exact frame
    jobs: List[Dict[str, Any]]            # the export jobs (ExportPanel.job_states)
    training: Dict[str, Any]              # the runs followed (TrainingPanel.runs_state)
    inversion: Dict[str, Any] = field(default_factory=dict)   # the Invert tab (InvertPanel.inversion_state)
    # the newer panels' own state by name (compare, interpolate, camera_path, appearance, help, display):
    # each panel's panel_state()
    panels: Dict[str, Any] = field(default_factory=dict)


class AutomationHost(Protocol):
    """What Automation needs of the app."""

    def snapshot(self) -> ViewerSnapshot:
        """The state to report."""

    def note_input(self) -> None:
        """A command changed something: draw at the active frame rate for a while."""

    def quit(self) -> None:
        """Close the viewer (settings and layout are saved)."""


def call_item_callback(tag, app_data=None) -> None:
    """Run a widget's callback with DearPyGui's (sender, app_data, user_data), trimmed to what it takes."""
    callback = dpg.get_item_callback(tag)
    if callback is None:
        return
    args = (tag, app_data, dpg.get_item_user_data(tag))
    try:
        params = inspect.signature(callback).parameters.values()
        if not any(p.kind == p.VAR_POSITIONAL for p in params):
            args = args[:len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])]
    except (TypeError, ValueError):
        pass
    callback(*args)


def _alias(item):
    """A widget's tag as the panels name it (DearPyGui sometimes answers with the numeric id)."""
    if isinstance(item, int) and dpg.does_item_exist(item):
        return dpg.get_item_alias(item) or item
    return item


def _partial_state(frame) -> Optional[Dict[str, Any]]:
    """The intermediate frame on screen (Frame.partial), with a quality of its own: it is never the
    exact frame of its view (scripts wait for quality "exact")."""
    if frame is None:
        return None
    r = frame.request
    return {"quality": "refining", "request_quality": r.quality, "path_used": frame.path_used,
            "resolution": r.resolution, "yaw": r.pose.yaw, "radius": r.pose.radius,
            "refined": frame.stats.get("refined"), "stride": frame.stats.get("stride")}


def _worker_state(status) -> Optional[Dict[str, Any]]:
    """The render worker's status (viewer.render_worker.WorkerStatus), None when idle."""
    if status is None:
        return None
    r = status.request
    return {"activity": status.activity, "quality": None if r is None else r.quality,
            "resolution": None if r is None else r.resolution, "yaw": None if r is None else r.pose.yaw,
            "fraction": status.fraction, "seconds_left": status.seconds_left, "expected_s": status.expected_s}


class Automation:
    def __init__(self, host: AutomationHost, state_file=None, control_file=None):
        self.host = host
        self.state_file = state_file
        self.control_file = control_file
        self._offset = 0
        self._next_state = 0.0
        self.watched: List[str] = []
        self.errors: List[str] = []
        self.commands_done = 0
        self._closed = False

    # -- control -------------------------------------------------------------------------------------
    def watch_commands(self, wake, interval: float = 0.05) -> None:
        """Call `wake()` (from a daemon thread) when the control file grows, so that an idle viewer,
        which waits for input between frames, runs a scripted command at once."""
        if not self.control_file:
            return

        def watch():
            seen = -1
            while not self._closed:
                try:
                    size = os.path.getsize(self.control_file)
                except OSError:
                    size = -1
                if size != seen:
                    seen = size
                    wake()
                time.sleep(interval)

        threading.Thread(target=watch, name="trigan-control-file", daemon=True).start()

    def close(self) -> None:
        self._closed = True

    def poll(self, now: float) -> None:
        if not self.control_file:
            return
        try:
            if os.path.getsize(self.control_file) <= self._offset:
                return
            with open(self.control_file, "r") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        complete, _, _ = chunk.rpartition("\n")       # a half-written last line waits for the next poll
        if not complete:
            return
        self._offset += len(complete.encode()) + 1
        for line in complete.splitlines():
            if line.strip():
                self._run(line)
        self.host.note_input()            # what a command changed is drawn at the active frame rate

    def _run(self, line: str) -> None:
        try:
            command = json.loads(line)
            if "set" in command:
                tag, value = command["set"], command.get("value")
                dpg.set_value(tag, value)
                call_item_callback(tag, dpg.get_value(tag))
            elif "press" in command:
                call_item_callback(command["press"])
            elif "tab" in command:
                dpg.set_value("tasks_tabs", command["tab"])
            elif "watch" in command:
                self.watched.extend(t for t in command["watch"] if t not in self.watched)
            elif "screenshot" in command:
                dpg.output_frame_buffer(file=str(command["screenshot"]))
            elif command.get("quit"):
                self.host.quit()
            else:
                raise ValueError("unknown command")
        except Exception as exc:  # noqa: BLE001 - a script's mistake must not close the viewer
            self.errors.append(f"{line.strip()[:200]}: {type(exc).__name__}: {exc}")
        self.commands_done += 1

    # -- state ---------------------------------------------------------------------------------------
    def _rect(self, tag) -> Optional[List[Any]]:
        """[x, y, w, h, visible] in viewport pixels (a window reports its position instead of a rect)."""
        if not dpg.does_item_exist(tag):
            return None
        state = dpg.get_item_state(tag)
        x, y = state["rect_min"] if "rect_min" in state else dpg.get_item_pos(tag)
        w, h = state.get("rect_size") or (dpg.get_item_width(tag) or 0, dpg.get_item_height(tag) or 0)
        return [int(x), int(y), int(w), int(h), bool(state.get("visible", dpg.is_item_shown(tag)))]

    @staticmethod
    def _value(tag) -> Optional[Dict[str, Any]]:
        """A watched widget's value and label (what a script reads a text or a list row by)."""
        if not dpg.does_item_exist(tag):
            return None
        return {"value": dpg.get_value(tag), "label": dpg.get_item_label(tag)}

    def state(self) -> Dict[str, Any]:
        app = self.host.snapshot()
        info, pose, frame, shown = app.model_info, app.pose, app.last_frame, app.shown_frame
        return {
            "time": time.time(),
            "pid": os.getpid(),
            "frames": app.frames,
            "commands_done": self.commands_done,
            "viewport": [dpg.get_viewport_client_width(), dpg.get_viewport_client_height()],
            "model": None if info is None else {"path": info.path, "file": info.file, "c_dim": info.c_dim,
                                                "class_names": list(info.class_names), "device": info.device},
            "model_loading": app.model_loading,
            "model_message": dpg.get_value("model_message"),
            "view": asdict(app.view),
            "orbit": None if pose is None else dict(asdict(pose), version=app.pose_version),
            "frame": None if frame is None else {
                "quality": frame.request.quality, "ms": frame.ms, "path_used": frame.path_used,
                "resolution": frame.request.resolution, "mode": frame.request.mode, "seed": frame.request.seed,
                "yaw": frame.request.pose.yaw, "radius": frame.request.pose.radius,
                "latent_file": frame.request.latent_file},
            "frame_partial": _partial_state(app.shown_partial),
            "progress": _worker_state(app.worker_status),
            "info_line": dpg.get_value("view_overlay"),
            "status_line": dpg.get_value("status_text"),
            "frame_error": shown.error if shown is not None else None,
            "view_error": dpg.get_value("view_error"),
            "tasks_tab": _alias(dpg.get_value("tasks_tabs")),
            "image_rect": app.image_rect,
            "worker_busy": app.worker_busy,
            "timing": app.timing,
            "startup": dict(app.startup),
            "jobs": app.jobs,
            "training": app.training,
            # the Invert tab: its jobs (state, progress, stage/step/PSNR in "detail", "previews"
            # received, "result" with the files written) and the inverted latent on screen
            "inversion": dict(app.inversion, latent_file=app.view.latent_file),
            "panels": app.panels,
            "items": {tag: self._rect(tag) for tag in self.watched},
            "values": {tag: self._value(tag) for tag in self.watched},
            "errors": list(self.errors),
        }

    def write_state(self, now: float, force: bool = False) -> None:
        if not self.state_file or (now < self._next_state and not force):
            return
        self._next_state = now + STATE_INTERVAL_S
        atomic_write_text(self.state_file, json.dumps(self.state(), default=str))
