"""The desktop viewer: a DearPyGui window around the render worker, the export jobs and the run monitor.

The GUI thread only draws and reads input. Once per frame it:

1. runs the queued widget callbacks (manual callback management: they run here, in this thread);
2. turns mouse and keys over the image into camera moves (panels/view.py -> move_camera ->
   OrbitController, which edits the camera's core.cameras.Pose);
3. builds the RenderRequest of what the controls show and submits it when it changed: quality
   "preview" while anything moves (camera, sliders), "exact" once it has rested REST_SECONDS;
4. copies the worker's newest frame into a raw texture (a memcpy into the numpy buffer DearPyGui
   draws from);
5. draws the frame, and records how long all of it took.

Models load in the worker, exports run in job threads, training runs as its own process followed
through its run directory, so nothing here waits on a network.

Panels see the app only through panels/interface.py (ViewerState: what they read, ViewerActions:
what they ask for); the scripting hooks (automation.py) read `snapshot()`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Optional

import dearpygui.dearpygui as dpg

from trigan import assets
from trigan.core.cameras import Pose
from trigan.core.checkpoint_meta import resolve_model_path
from trigan.core.errors import TriganError
from trigan.viewer.automation import Automation, ViewerSnapshot
from trigan.viewer.display import Display
from trigan.viewer.glfw_hooks import GlfwHooks
from trigan.viewer.help import HelpSheet
from trigan.viewer.jobs import JobRunner
from trigan.viewer.orbit import OrbitController
from trigan.viewer.panels.appearance import AppearancePanel
from trigan.viewer.panels.camera import CameraPanel
from trigan.viewer.panels.camera_path import CameraPathPanel
from trigan.viewer.panels.compare import ComparePanel
from trigan.viewer.panels.export import ExportPanel
from trigan.viewer.panels.interface import CameraMove
from trigan.viewer.panels.interpolate import InterpolatePanel
from trigan.viewer.panels.invert import InvertPanel
from trigan.viewer.panels.latent import LatentPanel
from trigan.viewer.panels.model import ModelPanel
from trigan.viewer.panels.render import RenderPanel
from trigan.viewer.panels.status import StatusBar, Timing, bar_height, describe_work
from trigan.viewer.panels.training import TrainingPanel
from trigan.viewer.panels.view import ImageView
from trigan.viewer.render_request import QUALITIES, ViewValues
from trigan.viewer.render_worker import InfoError, RenderWorker, WorkerStatus
from trigan.viewer.scene import Scene
from trigan.viewer.settings import LAYOUT_FILE, layout_path, load_settings, save_settings
from trigan.viewer.window_geometry import Rect, fit_window, tile_panels

REST_SECONDS = 0.15                 # camera and values unchanged this long -> the exact render
LATENT_VALUES = ("seed", "class_index", "psi", "noise_mode")   # what an inverted latent replaces
# Frame pacing. While someone moves the mouse or types: up to ACTIVE_FPS. While only the machine
# works (a render, a model loading, an export, a training run): WORKING_FPS, enough for progress
# bars, leaving the processor to the work. Idle: one frame every IDLE_REDRAW_S. Where the GLFW hooks
# work, the waits end at the first input event, so the window answers at once however slow it draws.
ACTIVE_FPS, WORKING_FPS, IDLE_REDRAW_S, IDLE_AFTER_S = 60.0, 10.0, 1.0, 1.0
FALLBACK_IDLE_FPS = 5.0             # without the hooks an idle loop must still look for input
# ImGui keys a window's saved position and size by its id, so the windows get fixed ids (far above
# the ids DearPyGui hands out) and a layout file stays valid when widgets are added elsewhere.
WINDOW_IDS = {"controls_window": 7_000_001, "view_window": 7_000_002, "tasks_window": 7_000_003,
              "status_window": 7_000_004}


# Priorities (Linux nice values, relative to the GUI thread). Export jobs and training runs started
# here run BACKGROUND_NICE lower: nobody watches them frame by frame, and the window must stay first.
# The view's render worker runs at VIEW_WORKER_NICE, by default the GUI's own: the user is waiting
# for its frames, and at +5 an exact frame starved behind other nice-0 work on the machine (2-5x
# slower than `trigan render`, docs/viewer.md has the measurement), while the GUI thread, which
# sleeps most of each frame, kept its frame time either way. TRIGAN_VIEW_WORKER_NICE overrides it.
BACKGROUND_NICE = 5
VIEW_WORKER_NICE = 0


def view_worker_nice() -> int:
    """VIEW_WORKER_NICE, or TRIGAN_VIEW_WORKER_NICE where it holds a whole number 0..19."""
    text = os.environ.get("TRIGAN_VIEW_WORKER_NICE", "").strip()
    if text.isdigit() and int(text) <= 19:
        return int(text)
    if text:
        print(f"trigan view: TRIGAN_VIEW_WORKER_NICE={text!r}: expected a whole number 0..19; using "
              f"{VIEW_WORKER_NICE}", file=sys.stderr)
    return VIEW_WORKER_NICE


def lower_thread_priority(step: int = BACKGROUND_NICE) -> None:
    """Let the calling thread give way to the GUI thread when the CPU is busy (Linux keeps a nice
    value per thread, and threads it starts inherit it, torch's worker threads included). Lowering
    one's own priority needs no privileges; elsewhere, or if refused, nothing changes."""
    if not sys.platform.startswith("linux") or os.environ.get("TRIGAN_VIEW_NO_NICE"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step))
    except (OSError, AttributeError):
        pass


def _at_lower_priority(fn, step: int = BACKGROUND_NICE):
    def run(*args, **kwargs):
        if step:
            lower_thread_priority(step)
        return fn(*args, **kwargs)
    return run


class BackgroundJobs(JobRunner):
    """The viewer's export jobs: each job thread starts by lowering its own priority (see
    lower_thread_priority)."""

    def start(self, kind, label, fn, *args, **kwargs):
        return super().start(kind, label, _at_lower_priority(fn), *args, **kwargs)


def demo_checkpoint() -> Path:
    """The bundled demo model (assets/demo.ckpt)."""
    return Path(assets.__file__).resolve().parent / "demo.ckpt"


class ViewerApp:
    """One viewer window. `run()` blocks until the window closes and returns an exit status.

    It implements panels/interface.py's ViewerState and ViewerActions (the panels are handed it as
    those, and use nothing else of it) and automation.py's AutomationHost."""

    def __init__(self, model_path=None, settings_path=None, latest: bool = False, device=None,
                 state_file=None, control_file=None):
        self.settings_path = settings_path
        self.settings = load_settings(settings_path)
        self.requested_model = str(model_path) if model_path else None
        self.latest = bool(latest)
        self.device = device
        self.device_name = device or "auto"
        self.state_file, self.control_file = state_file, control_file
        self.view = self._restored_values()
        self.orbit = None                 # OrbitController, once the model's start pose is known
        self.model_info = None            # the worker's scene.ModelInfo of the open model
        self._model_source = None         # what is being opened: (path for the worker, as typed)
        self._submitted = None
        self._last_base = None
        self._last_change = 0.0
        self._shown_frame = None
        self._shown_partial = None        # the refining (partial) frame on screen, if any
        self.last_frame = None            # newest frame without an error (screenshots)
        self.frame_count = 0
        self._quit = False
        self._bugs_seen = set()
        self._class_start = None          # (model path, class) whose start camera was asked for
        self._camera_draw = None          # the key of the camera asked of the worker (draw_camera)
        self._draws = 0
        self._last_input = time.monotonic()
        self._startup_notes = []          # said in the Model panel once the window is up
        self._created = time.monotonic()
        self.startup = {"window_s": None, "first_image_s": None, "first_exact_s": None}
        self._tiled_for = None            # the window size the panels were last fitted to
        self._pending_inversion = None    # (latent file, pose) to show once its model has loaded
        self._seeds_model = None          # the model shown before an inverted latent (Back to seeds)
        self.hooks = GlfwHooks()

    # -- settings --------------------------------------------------------------------------------------
    def _restored_values(self) -> ViewValues:
        s, v = self.settings, ViewValues()
        restored = {}
        for f in fields(ViewValues):
            value = getattr(s, f.name, None)
            if value is not None:
                restored[f.name] = value
        try:
            candidate = replace(v, **restored)
            # Values from an older or hand-edited file must still make a valid request.
            candidate.request(model_path="x")
            if candidate.quality not in QUALITIES:
                raise TriganError("quality")
            return candidate
        except (TriganError, TypeError):
            return v

    def _store_settings(self) -> None:
        s = self.settings
        for name, value in asdict(self.view).items():
            if hasattr(s, name):
                setattr(s, name, value)
        s.window_width, s.window_height = int(dpg.get_viewport_width()), int(dpg.get_viewport_height())
        s.window_x, s.window_y = (int(v) for v in dpg.get_viewport_pos())
        for panel in self._panels_with_settings():
            panel.store_settings(s)
        save_settings(s, self.settings_path)       # warns (never raises) when the folder is read-only

    def _panels_with_settings(self):
        """The panels that remember choices in the settings file (store_settings(s))."""
        return (self.render_panel, self.export_panel, self.training_panel, self.invert_panel, self.compare_panel,
                self.interpolate_panel, self.camera_path_panel, self.appearance_panel)

    def first_model(self) -> str:
        """What opens at start: the model named on the command line, else the last one opened (if it
        is still there), else the bundled demo."""
        if self.requested_model:
            return self.requested_model
        last = self.settings.last_model
        if last and os.path.exists(os.path.expanduser(last)):
            return last
        if last:
            self._startup_notes.append(f"the last model, {last}, is gone; opened the demo model")
        return str(demo_checkpoint())

    def layout_file(self) -> Path:
        return Path(self.settings_path).parent / LAYOUT_FILE if self.settings_path else layout_path()

    # -- actions the panels call --------------------------------------------------------------------------
    def update_view(self, **values) -> None:
        """New control values. Values no render request could take are refused with one line in the
        view (the old ones stay in use); good ones clear that line at once."""
        old_class = self.view.class_index
        if self.view.latent_file is not None and "latent_file" not in values and any(
                name in values and values[name] != getattr(self.view, name) for name in LATENT_VALUES):
            # a new seed, class or psi means seeds again: leave the inverted latent for them
            self.show_seeds()
        candidate = replace(self.view, **values)
        try:
            candidate.request(model_path="-")
        except TriganError as exc:
            self.image.set_error(str(exc), source="values")
            return
        self.view = candidate
        self.image.set_error(None, source="values")
        if self.view.class_index != old_class and self.model_info is not None and self.view.class_index is not None:
            # A 3DGP model's start camera depends on the class (its mean posterior camera): ask the
            # worker for it; reset and double-click then return to that class's pose.
            self._class_start = (self.model_info.path, self.view.class_index)
            self.worker.open(*self._class_start)

    def _poll_class_start(self) -> None:
        if self._class_start is None or self.orbit is None:
            return
        info = self.worker.model_info(*self._class_start)
        if info is None:
            return
        self._class_start = None
        start = getattr(info, "start_pose", None)
        if start is not None and info.path == getattr(self.model_info, "path", None):
            self.orbit.set_start(start, reset=False)

    def draw_camera(self) -> None:
        """Move to a camera drawn from the model's camera distribution for the current seed and class
        (the learned one of a 3DGP model); the worker draws it, the next frames pick it up."""
        if self.model_info is None or self.orbit is None:
            return
        self._draws += 1
        self._camera_draw = self.worker.draw_camera(self.model_info.path, self.view.seed, self.view.class_index,
                                                    self._draws)

    def _poll_camera_draw(self) -> None:
        if self._camera_draw is None or self.orbit is None:
            return
        drawn = self.worker.drawn_camera(self._camera_draw)
        if drawn is None:
            return
        self._camera_draw = None
        if isinstance(drawn, InfoError):
            self.image.set_error(drawn.error, source="camera_draw")
            return
        self.image.set_error(None, source="camera_draw")
        self.move_camera(lambda orbit: orbit.set(yaw=drawn.yaw, pitch=drawn.pitch, radius=drawn.radius,
                                                 fov=drawn.fov, look_at=drawn.look_at, pivot=drawn.pivot))

    def move_camera(self, move: CameraMove) -> None:
        """Apply a camera change (a callable taking the OrbitController); bad numbers become a
        message. Nothing happens before the first model's start pose is known."""
        if self.orbit is None:
            return
        try:
            move(self.orbit)
        except (TriganError, ValueError) as exc:
            self.image.set_error(str(exc), source="camera")
            return
        self.image.set_error(None, source="camera")

    def open_model(self, source: str, latest: bool = False, keep_camera: bool = False) -> None:
        """Ask the worker to load a model (file or run directory); the panels update when it lands."""
        source = os.path.expanduser(str(source).strip())
        try:
            target = str(resolve_model_path(source, latest=True)) if latest and os.path.isdir(source) else source
            if not os.path.exists(target):
                raise TriganError(f"{target}: no such file or folder")
        except TriganError as exc:
            self.model_panel.set_message(str(exc))
            return
        self._model_source = (target, source, keep_camera)
        self.worker.open(target)
        self.model_panel.show_loading(source)

    def reload_model(self) -> None:
        """Read the open checkpoint again (a training run replaced it) and re-render the view."""
        if self.model_info is None:
            return
        self.worker.forget_info(self.model_info.path)
        self.worker.refresh()
        self._submitted = None
        self.open_model(self.model_info.path, keep_camera=True)

    def show_inversion(self, model_file: str, latent_file: str, pose: Optional[Pose] = None) -> None:
        """Show an inverted latent on its model (the tuned NAME.pti.ckpt, or the model it was
        inverted into): the model opens in the worker as any other, and once it has loaded the view
        takes the latent file and the camera found (which reset and double-click then return to)."""
        if self.view.latent_file is None and self.model_info is not None:
            self._seeds_model = self.model_info.path          # where Back to seeds returns
        self._pending_inversion = (str(latent_file), pose)
        self.open_model(model_file, keep_camera=True)

    def set_display(self, **values) -> None:
        """How the view shows a frame (colormap, range ...: viewer/depth_display.py), not what is rendered."""
        self.image.set_display(**values)

    @property
    def display(self):
        """The view's display values (colormap, range ...)."""
        return self.image.display

    def show_seeds(self) -> None:
        """Back from an inverted latent to seeds on the model shown before it."""
        self._pending_inversion = None
        if self.view.latent_file is None:
            return
        self.view = replace(self.view, latent_file=None)
        back, self._seeds_model = self._seeds_model, None
        if back is not None and (self.model_info is None or back != self.model_info.path):
            self.open_model(back)

    def _show_pending_inversion(self) -> None:
        """The model of a shown inversion has loaded: the view takes its latent and camera."""
        latent, pose = self._pending_inversion
        self._pending_inversion = None
        self.view = replace(self.view, latent_file=latent)
        if pose is not None:
            self.orbit.set_start(pose, reset=True)

    def _poll_model(self) -> None:
        if self._model_source is None:
            return
        target, source, keep_camera = self._model_source
        info = self.worker.model_info(target)
        if info is None:
            return
        self._model_source = None
        if isinstance(info, InfoError):
            # The previous model stays in use: the panel goes back to it and says why in red.
            self._pending_inversion = None
            self.model_panel.show_failed(info.error, self.model_info)
            self.image.set_error(info.error, source="model")
            return
        self.model_info = info
        self.device_name = info.device
        if self.orbit is None:
            self.orbit = OrbitController(info.start_pose)
        else:
            self.orbit.set_start(info.start_pose, reset=not keep_camera)
        self.latent_panel.set_classes([info.class_names[i] if i < len(info.class_names) else f"class {i}"
                                       for i in range(info.c_dim)])
        self.render_panel.set_model(info)
        self._remember_model(source)
        self.model_panel.show_info(info, self.settings.recent_files)
        self.image.set_error(None)
        if self._startup_notes:
            self.model_panel.set_message("; ".join(self._startup_notes))
            self._startup_notes = []
        if self._pending_inversion is not None:
            self._show_pending_inversion()

    def _remember_model(self, source: str) -> None:
        self.settings.add_recent(source)

    def _report_bug(self, exc: Exception) -> None:
        """A bug in a panel must not close the window (a run or an export may be going on):
        print its traceback once and show one line in the view."""
        text = f"{type(exc).__name__}: {exc}"
        if text not in self._bugs_seen:
            self._bugs_seen.add(text)
            traceback.print_exc()
        self.image.set_error(f"internal error (details on stderr): {text}")

    # -- what panels and scripts read (ViewerState, snapshot) -----------------------------------------
    @property
    def pose(self) -> Optional[Pose]:
        """The camera (None until the first model's start pose is known)."""
        return None if self.orbit is None else self.orbit.pose

    @property
    def pose_version(self) -> int:
        return 0 if self.orbit is None else self.orbit.version

    def worker_status(self) -> Optional[WorkerStatus]:
        return self.worker.status()

    def worker_busy(self) -> bool:
        return self.worker.busy

    def snapshot(self) -> ViewerSnapshot:
        """The state the state file reports (automation.py)."""
        return ViewerSnapshot(
            frames=self.frame_count, model_info=self.model_info, model_loading=self._model_source is not None,
            view=self.view, pose=self.pose, pose_version=self.pose_version, last_frame=self.last_frame,
            shown_frame=self._shown_frame, shown_partial=self._shown_partial, worker_status=self.worker_status(),
            worker_busy=self.worker_busy(), image_rect=self.image.image_rect(), timing=self.timing.snapshot(),
            startup=dict(self.startup), jobs=self.export_panel.job_states(), training=self.training_panel.runs_state(),
            inversion=self.invert_panel.inversion_state(),
            panels={"compare": self.compare_panel.panel_state(), "interpolate": self.interpolate_panel.panel_state(),
                    "camera_path": self.camera_path_panel.panel_state(),
                    "appearance": self.appearance_panel.panel_state(), "help": self.help_sheet.panel_state(),
                    "display": self.image.panel_state()})

    def quit(self) -> None:
        self._quit = True

    # -- the frame loop -----------------------------------------------------------------------------------
    def current_request(self, now: float):
        """The request the controls describe, with the quality the motion state calls for."""
        if self.model_info is None or self.orbit is None:
            return None
        v = self.view
        try:
            base = v.request(self.model_info.path, pose=self.orbit.pose, quality="exact")
        except TriganError as exc:
            self.image.set_error(str(exc), source="request")
            return None
        self.image.set_error(None, source="request")
        # A compare grid (the Compare tab) renders several cells at this camera instead of one view.
        base = self.compare_panel.grid_request(base) or base
        if base != self._last_base:
            self._last_base, self._last_change = base, now
        # Previews while anything moves; at rest, refine to the chosen quality, but only after this
        # view's preview has been shown: an exact request would cancel the preview in flight and
        # leave the old picture up for the whole exact render.
        moving = self.image.dragging or now - self._last_change < REST_SECONDS
        shown = self._shown_frame
        previewed = shown is not None and shown.request.with_values(quality="exact") == base
        quality = "preview" if moving or not previewed else v.quality
        return base if quality == "exact" else base.with_values(quality="preview")

    def _show_latest(self, now: float) -> None:
        frame = self.worker.latest()
        self._show_work()
        # (_shown_partial: the intermediate frame on screen, see Frame.partial)
        if frame is None or frame is self._shown_frame or frame is self._shown_partial:
            return
        if frame.partial:
            # a first look or a step of a refinement: on screen, but neither the view's preview (the
            # exact request waits for that, see current_request) nor a frame to export or time
            self._shown_partial = frame
            self.image.show_frame(frame)
            return
        self._shown_partial = None
        self._shown_frame = frame
        if frame.error:
            self.image.set_error(f"render failed: {frame.error}", source="render")
            return
        self.image.show_frame(frame)
        self.image.set_error(None, source="render")
        self.last_frame = frame
        self.timing.frame_arrived(frame.request.quality, frame.ms, now)
        self.status.frame_shown(frame)
        self._show_work()

    def _show_work(self) -> None:
        """The View's info line: what the worker is doing while it works (loading, building the
        caches, an exact frame's progress and time left), else which frame is on screen."""
        work = describe_work(self.worker.status(), self.device_name)
        frame = self.last_frame
        if work is not None:
            self.image.set_info(work)
        elif frame is not None:
            r = frame.request
            self.image.set_info(f"{r.quality} {frame.ms:.0f} ms  {r.resolution}x{r.resolution} {r.mode}  "
                                f"({frame.path_used})")
        elif self._model_source is None and self.model_info is None:
            self.image.set_info("")      # the first model failed to open: no "loading" left behind
        elif self._model_source is None:
            # loaded, and the worker has not picked up the first request yet: still a sign of life
            self.image.set_info("starting the first render ...")

    def frame(self) -> None:
        start = time.perf_counter()
        now = time.monotonic()
        marks = [("start", start)]

        def mark(name):
            marks.append((name, time.perf_counter()))
        try:
            dpg.run_callbacks(dpg.get_callback_queue())
            if self.automation is not None:
                self.automation.poll(now)
            self.image.poll_input()
            self._poll_model()
            self._poll_class_start()
            self._poll_camera_draw()
            mark("input")
            self.camera_panel.tick()
            self.latent_panel.tick()
            self.export_panel.tick(now)
            self.training_panel.tick(now)
            self.invert_panel.tick(now)
            for panel in (self.compare_panel, self.interpolate_panel, self.camera_path_panel, self.appearance_panel,
                          self.help_sheet):
                panel.tick(now)
            mark("panels")
            request = self.current_request(now)
            if request is not None and request != self._submitted:
                self.worker.submit(request)
                self._submitted = request
            self._show_latest(now)
            mark("frame")
            self._keep_panels_on_screen()
            self.image.layout()
            self.status.tick(now)
        except Exception as exc:  # noqa: BLE001 - a bug in one frame is shown in the window, not a closed viewer
            self._report_bug(exc)
        mark("layout")
        dpg.render_dearpygui_frame()
        mark("draw")
        self.frame_count += 1
        self._note_startup()
        phases = {name: 1000.0 * (t - marks[i][1]) for i, (name, t) in enumerate(marks[1:])}
        # "Rendering" covers a whole drag: previews may finish between GUI frames, but the user is
        # making the worker render all the time.
        rendering = self.worker.busy or self.image.dragging
        exporting = self.export_panel.any_running()
        self.timing.gui_frame(1000.0 * (time.perf_counter() - start), rendering=rendering,
                              exporting=exporting, training=self.training_panel.any_alive(),
                              now=now, phases=phases)
        if self.automation is not None:
            self.automation.write_state(now)
        self._pace(start, working=rendering or exporting or self._model_source is not None
                   or self.training_panel.any_alive())

    def _note_startup(self) -> None:
        """Seconds from the app's creation to its first drawn frame, first picture and first
        finished exact frame (benchmarks/viewer.py and the state file report them)."""
        t = time.monotonic() - self._created
        marks = self.startup
        if marks["window_s"] is None:
            marks["window_s"] = t
        frame = self.last_frame
        if (frame is not None or self._shown_partial is not None) and marks["first_image_s"] is None:
            marks["first_image_s"] = t           # a first look (partial frame) counts: it is a picture
        if (frame is not None and marks["first_exact_s"] is None and frame.request.quality == "exact"
                and not getattr(frame, "partial", False)):
            marks["first_exact_s"] = t

    def frame_interval(self, now: float, working: bool) -> float:
        """Seconds from the start of one frame to the next (see ACTIVE_FPS). Without vsync (a virtual
        display, some drivers) the loop would otherwise draw as fast as it can: a software OpenGL
        then takes a whole core from the render worker, the exports and training."""
        if now - self._last_input < IDLE_AFTER_S or self.image.dragging:
            return 1.0 / ACTIVE_FPS
        if working:
            return 1.0 / WORKING_FPS
        return IDLE_REDRAW_S if self.hooks.available else 1.0 / FALLBACK_IDLE_FPS

    def _pace(self, start: float, working: bool) -> None:
        if self._quit:
            return
        rest = self.frame_interval(time.monotonic(), working) - (time.perf_counter() - start)
        if rest <= 0:
            return
        if self.hooks.available:
            self.hooks.wait(rest)          # returns early on input: the next frame handles it
        else:
            time.sleep(rest)

    def files_dropped(self, paths) -> None:
        """Files dropped on the window (GLFW's drop callback, in the GUI thread): open the model."""
        self._last_input = time.monotonic()
        self.model_panel.open_dropped(list(paths))

    def note_input(self, *args) -> None:
        """Someone (a person, or a script through the control file) acts: full frame rate for a while."""
        self._last_input = time.monotonic()

    # -- building and running -----------------------------------------------------------------------------
    @staticmethod
    def _tiles(width: int, height: int, scale: float):
        """The panels' rectangles at a UI scale (wider side columns and a taller status bar for larger text)."""
        return tile_panels(width, height, scale=scale, status_height=bar_height(scale))

    def tile_panels(self, width: int, height: int) -> None:
        """Put the Controls, View and Tasks columns and the status bar back into a width x height
        window (at start when a saved layout does not fit, whenever the window is resized, and when
        the UI scale changes)."""
        scale = float(dpg.get_global_font_scale())
        for name, rect in self._tiles(width, height, scale).items():
            if name != "status_window":              # the status bar anchors itself (StatusBar.place)
                dpg.configure_item(name, pos=(rect.x, rect.y), width=rect.width, height=rect.height)
        self._tiled_for = (width, height, scale)

    def _keep_panels_on_screen(self) -> None:
        """After a resize or a new UI scale, or once at start (a layout saved on a larger screen),
        re-tile the panels when one of them sticks out of the window."""
        size = (dpg.get_viewport_client_width(), dpg.get_viewport_client_height())
        key = (*size, float(dpg.get_global_font_scale()))
        if size[0] <= 0 or size[1] <= 0 or key == self._tiled_for:
            return
        first = self._tiled_for is None
        self._tiled_for = key
        if not first:
            self.tile_panels(*size)
            return
        screen = Rect(0, 0, size[0], size[1])
        for name in ("controls_window", "view_window", "tasks_window"):
            x, y = dpg.get_item_pos(name)
            rect = Rect(int(x), int(y), int(dpg.get_item_width(name)), int(dpg.get_item_height(name)))
            if not screen.contains(rect):
                self.tile_panels(*size)
                return

    def _build(self, size) -> None:
        w, h = size
        tiles = self._tiles(w, h, self.settings.ui_scale)      # the scale the Interface header applies at start
        self.timing = Timing()
        # Panels get the app as ViewerState / ViewerActions (panels/interface.py) and what they drive.
        self.image = ImageView(self, self)
        self.model_panel, self.latent_panel = ModelPanel(self, self), LatentPanel(self, self)
        self.camera_panel, self.render_panel = CameraPanel(self, self), RenderPanel(self, self)
        self.export_panel = ExportPanel(self, self.jobs)
        self.training_panel = TrainingPanel(self, self.jobs, open_model=self.model_panel.open,
                                            retire_texture=self.image.retire_texture)
        self.invert_panel = InvertPanel(self, self, self.jobs)
        self.compare_panel = ComparePanel(self, self)
        self.interpolate_panel = InterpolatePanel(self, self, self.jobs)
        self.camera_path_panel = CameraPathPanel(self, self, self.jobs)
        self.appearance_panel = AppearancePanel(self, self)
        self.help_sheet = HelpSheet(self, self)
        self.status = StatusBar(self, self.timing)
        c = tiles["controls_window"]
        with dpg.window(label="Controls", tag=WINDOW_IDS["controls_window"], pos=(c.x, c.y), width=c.width,
                        height=c.height, no_close=True):
            with dpg.collapsing_header(label="Model", default_open=True):
                self.model_panel.build()
            with dpg.collapsing_header(label="Latent", default_open=True):
                self.latent_panel.build()
            with dpg.collapsing_header(label="Camera", default_open=True):
                self.camera_panel.build()
            with dpg.collapsing_header(label="Render", default_open=True):
                self.render_panel.build()
            with dpg.collapsing_header(label="Interface", tag="interface_header", default_open=False):
                self.appearance_panel.build()
        v, t = tiles["view_window"], tiles["tasks_window"]
        self.image.build(pos=(v.x, v.y), size=(v.width, v.height), window_id=WINDOW_IDS["view_window"])
        with dpg.window(label="Tasks", tag=WINDOW_IDS["tasks_window"], pos=(t.x, t.y),
                        width=t.width, height=t.height, no_close=True):
            with dpg.tab_bar(tag="tasks_tabs"):
                with dpg.tab(label="Export", tag="tab_export"):
                    self.export_panel.build()
                with dpg.tab(label="Compare", tag="tab_compare"):
                    self.compare_panel.build()
                with dpg.tab(label="Interpolate", tag="tab_interpolate"):
                    self.interpolate_panel.build()
                with dpg.tab(label="Camera path", tag="tab_camera_path"):
                    self.camera_path_panel.build()
                with dpg.tab(label="Training", tag="tab_training"):
                    self.training_panel.build()
                with dpg.tab(label="Invert", tag="tab_invert"):
                    self.invert_panel.build()
        self.status.build(window_id=WINDOW_IDS["status_window"])
        self.help_sheet.build()
        with dpg.handler_registry():         # any mouse or key activity keeps the full frame rate
            dpg.add_mouse_move_handler(callback=self.note_input)
            dpg.add_mouse_click_handler(callback=self.note_input)
            dpg.add_mouse_wheel_handler(callback=self.note_input)
            dpg.add_key_press_handler(callback=self.note_input)
        for name, uuid in WINDOW_IDS.items():
            dpg.add_alias(name, uuid)

    def run(self, display: Display) -> int:
        """display: the one check_display() of this start (cli/view.py), which found a screen."""
        device = self.device
        # The factory runs in the worker's thread: it sets that thread's priority (see
        # VIEW_WORKER_NICE), then builds the scene.
        self.worker = RenderWorker(scene_factory=_at_lower_priority(lambda: Scene(device=device),
                                                                    step=view_worker_nice()))
        self.jobs = BackgroundJobs(device=device)
        dpg.create_context()
        try:
            layout = self.layout_file()
            # Manual callback management: widget callbacks run inside frame(), in this thread.
            # With a layout file DearPyGui places the windows from it (and ignores the default
            # positions below), so it is only named when there is one to restore.
            if layout.is_file():
                dpg.configure_app(manual_callback_management=True, init_file=str(layout), load_init_file=True)
            else:
                dpg.configure_app(manual_callback_management=True)
            s = self.settings
            area = display.work_area
            saved_size = None if s.window_width is None or s.window_height is None else (s.window_width,
                                                                                         s.window_height)
            place = fit_window(None if area is None else Rect(*area), saved_size, (s.window_x, s.window_y))
            dpg.create_viewport(title="trigan viewer", width=place.width, height=place.height,
                                x_pos=place.x, y_pos=place.y, vsync=True)
            self._build((place.width, place.height))
            self.automation = Automation(self, self.state_file, self.control_file) \
                if (self.state_file or self.control_file) else None
            dpg.setup_dearpygui()
            dpg.show_viewport()
            if self.hooks.attach():
                self.hooks.on_drop(self.files_dropped)
                if self.automation is not None:
                    self.automation.watch_commands(self.hooks.wake)
            if self.settings.problem:
                self.image.set_error(self.settings.problem)
            model = self.first_model()
            self.open_model(model, latest=self.latest)
            # a sign of life from the first frame on: the worker's own status takes over in a moment
            self.image.set_info(f"loading {os.path.basename(str(model).rstrip(os.sep)) or model} ...")
            while dpg.is_dearpygui_running() and not self._quit:
                self.frame()
            self._store_settings()
            try:
                layout.parent.mkdir(parents=True, exist_ok=True)
                dpg.save_init_file(str(layout))
            except OSError as exc:
                print(f"trigan view: could not save the window layout: {exc}", file=sys.stderr)
        finally:
            if getattr(self, "automation", None) is not None:
                self.automation.close()
            self.hooks.detach()
            self.worker.stop(timeout=2.0)
            for panel in ("export_panel", "training_panel", "invert_panel", "compare_panel", "interpolate_panel",
                          "camera_path_panel"):
                if hasattr(self, panel):
                    getattr(self, panel).shutdown()
            dpg.destroy_context()
        return 0


def run_viewer(display: Display, model_path=None, *, latest: bool = False, device=None, settings_path=None,
               state_file=None, control_file=None) -> int:
    """Open the viewer window (blocking) on the screen `display` (viewer.display.check_display(),
    which the caller made before importing DearPyGui and found without a problem)."""
    app = ViewerApp(model_path, settings_path=settings_path, latest=latest, device=device,
                    state_file=state_file, control_file=control_file)
    code = app.run(display)
    _exit_past_native_threads(code)
    return code


def _exit_past_native_threads(code: int, wait_s: float = 10.0) -> None:
    """The window is closed and the settings saved. A render or export thread may still be inside
    a step that cannot be cancelled (building a latent's caches, a mesh's marching cubes): give it
    wait_s to end, then leave with os._exit, because Python's normal exit would tear down torch's
    thread pools under a running thread and abort the process ("terminate called ...")."""
    deadline = time.monotonic() + wait_s
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.daemon]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and t.name.startswith("trigan") for t in others):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
