"""Interpolate panel: the view between the current latent and another one, in w
(viewer/interpolation.py).

"From" is what the Latent panel shows (its seed with class and psi, or the inverted latent of the
Invert tab); "to" is a seed or an inverted latent file (NAME.inversion.npz). The t slider (or its
typed value) moves between them: t = 0 is the current latent, 1 the other one; the view's request
carries the mix (render_request.LatentMix) while "show the interpolation" is ticked. Animate moves t
0 -> 1 -> 0 (ping-pong) once per period, taking a new t only after the previous one's frame has
arrived, so a slow render skips values instead of queueing them. Seed sweep steps the Latent panel's
seed by one every interval (again only once the last seed's frame is on screen). Export renders
t = 0 .. 1 at the current camera into a video (mp4 or gif) as a background job with its own list.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, List, Optional

import dearpygui.dearpygui as dpg

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_FRAMES, MAX_SEED
from trigan.viewer.interpolation import export_interpolation
from trigan.viewer.panels.common import BAD, MUTED, JobList, hint, path_field, tip
from trigan.viewer.panels.export import unique_path
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.panels.latent import parse_seed
from trigan.viewer.render_request import LatentMix

if TYPE_CHECKING:                     # annotations only
    from trigan.viewer.jobs import JobRunner

FROM = "interp_from"
TO_KIND, TO_SEED, TO_FILE = "interp_to_kind", "interp_to_seed", "interp_to_file"
ENABLED, OFF = "interp_enabled", "interp_off"
T_SLIDER, T_VALUE = "interp_t", "interp_t_value"
ANIMATE, PERIOD = "interp_animate", "interp_period"
SWEEP, INTERVAL = "interp_sweep", "interp_interval"
FOLDER, FRAMES, FPS, RESOLUTION, FORMAT = "interp_folder", "interp_frames", "interp_fps", "interp_resolution", "interp_format"
EXPORT = "interp_export_button"
MESSAGE, STATUS = "interp_message", "interp_status"
JOBS = "interp_jobs"

TO_KINDS = ("seed", "inverted latent file")
FORMATS = ("mp4", "gif")
T_DECIMALS = 3                  # t is rounded to this: a value seen again reuses the worker's cached field
MIN_PERIOD, MAX_PERIOD = 0.5, 600.0
MIN_INTERVAL, MAX_INTERVAL = 0.2, 3600.0
MAX_FRAME_WAIT = 30.0           # a frame that never comes (an error) stalls animate/sweep no longer than this
MAX_VIDEO_RESOLUTION = 1024

# What store_settings keeps, with each value's default and its check (a bad value read back: the default).
DEFAULTS = {"to_kind": TO_KINDS[0], "to_seed": 1, "to_file": "", "t": 0.5, "period": 4.0, "interval": 2.0,
            "frames": 60, "fps": 30, "resolution": 256, "format": FORMATS[0], "folder": ""}
CHECKS = {
    "to_kind": lambda v: v in TO_KINDS,
    "to_seed": lambda v: isinstance(v, int) and 0 <= v <= MAX_SEED,
    "to_file": lambda v: isinstance(v, str) and len(v) < 4096,
    "t": lambda v: isinstance(v, (int, float)) and 0.0 <= v <= 1.0,
    "period": lambda v: isinstance(v, (int, float)) and MIN_PERIOD <= v <= MAX_PERIOD,
    "interval": lambda v: isinstance(v, (int, float)) and MIN_INTERVAL <= v <= MAX_INTERVAL,
    "frames": lambda v: isinstance(v, int) and 2 <= v <= MAX_FRAMES,
    "fps": lambda v: isinstance(v, int) and 1 <= v <= 120,
    "resolution": lambda v: isinstance(v, int) and 16 <= v <= MAX_VIDEO_RESOLUTION,
    "format": lambda v: v in FORMATS,
    "folder": lambda v: isinstance(v, str) and len(v) < 4096,
}


def restored_settings(stored) -> dict:
    """The panel's stored values, each checked: a missing or bad one is its default."""
    stored = stored if isinstance(stored, dict) else {}
    out = {}
    for key, default in DEFAULTS.items():
        value = stored.get(key, default)
        if isinstance(value, bool) or not CHECKS[key](value):
            value = default
        out[key] = value
    return out


def ping_pong(phase: float) -> float:
    """t of an animation `phase` periods in: 0 -> 1 over the first half, back to 0 over the second."""
    x = phase % 1.0
    return 1.0 - abs(1.0 - 2.0 * x)


def rounded_t(value) -> float:
    """A typed or dragged t, checked (0..1) and rounded to T_DECIMALS."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise TriganError(f"t {value!r}: expected a number from 0 to 1") from None
    if not (math.isfinite(t) and 0.0 <= t <= 1.0):
        raise TriganError(f"t {value!r}: expected a number from 0 to 1")
    return round(t, T_DECIMALS)


def next_seed(seed: int) -> int:
    """The sweep's next seed (after MAX_SEED it starts again at 0)."""
    return 0 if seed >= MAX_SEED else seed + 1


class InterpolatePanel:
    """runner: the viewer's JobRunner (start: the export job)."""

    def __init__(self, state: ViewerState, actions: ViewerActions, runner: "JobRunner" = None):
        self.state, self.actions, self.runner = state, actions, runner
        self.jobs: List = []
        self.job_list = JobList(JOBS, lambda: self.jobs)
        self.t = DEFAULTS["t"]
        self.enabled = False
        self.animating = False
        self.sweeping = False
        self.message = ""
        self._sent: Optional[LatentMix] = None      # the mix last handed to the view
        self._sent_at = 0.0                         # when (monotonic seconds)
        self._anim_start = 0.0                      # the animation's phase origin
        self._swept_seed: Optional[int] = None      # the seed the sweep set last
        self._sweep_due = 0.0
        self._now = 0.0

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> None:
        values = restored_settings(self.state.settings.panels.get("interpolate"))
        self.t = float(values["t"])
        hint("Move in w between the latent on screen (t = 0) and another seed or inverted latent (t = 1).")
        dpg.add_text("", tag=FROM, color=MUTED, wrap=0)
        dpg.add_combo(tag=TO_KIND, label="to", items=list(TO_KINDS), default_value=values["to_kind"], width=-90,
                      callback=lambda: self._to_changed())
        tip(TO_KIND, "The far end (t = 1): a seed (with the Latent panel's class, psi and noise) or an inverted "
                     "latent file written by the Invert tab or `trigan invert` (NAME.inversion.npz).")
        # a text field, as the Latent panel's: seeds go up to 2^32 - 1, past what an input_int holds
        dpg.add_input_text(tag=TO_SEED, label="to seed", default_value=str(values["to_seed"]), decimal=True,
                           width=-90, on_enter=True, callback=lambda: self._to_changed())
        tip(TO_SEED, "The seed at t = 1 (press Enter). Same class, psi and noise mode as the current seed.")
        with dpg.group(tag=f"{TO_FILE}_row"):
            path_field(TO_FILE, "to file", default=values["to_file"], extensions=(".npz",),
                       on_pick=lambda path: self._to_changed(), hint_text="NAME.inversion.npz",
                       description="The far end (t = 1): an inverted latent file (NAME.inversion.npz); "
                                   "press Enter after typing.")
        dpg.add_checkbox(tag=ENABLED, label="show the interpolation", default_value=False,
                         callback=lambda s, a: self.set_enabled(bool(a)))
        tip(ENABLED, "On: the view shows the latent at t between the current latent and the far end. Off: the "
                     "current latent alone.")
        dpg.add_slider_float(tag=T_SLIDER, label="t", default_value=self.t, min_value=0.0, max_value=1.0,
                             format="%.3f", width=-90, callback=lambda s, a: self.set_t(a))
        tip(T_SLIDER, "0 = the current latent, 1 = the far end; drag it (ctrl+click to type). Moving it turns the "
                      "interpolation on.")
        dpg.add_input_float(tag=T_VALUE, label="t typed", default_value=self.t, format="%.3f", step=0.05,
                            width=-90, on_enter=True, callback=lambda s, a: self.set_t(a))
        tip(T_VALUE, "t as a number from 0 to 1 (press Enter), or step it by 0.05 with the - and + buttons.")
        with dpg.group(horizontal=True):
            dpg.add_checkbox(tag=ANIMATE, label="animate", callback=lambda s, a: self.set_animating(bool(a)))
            tip(ANIMATE, "Move t 0 -> 1 -> 0 again and again; a new t only once the last one's frame is on screen.")
            dpg.add_input_float(tag=PERIOD, label="s period", default_value=values["period"], min_value=MIN_PERIOD,
                                max_value=MAX_PERIOD, min_clamped=True, max_clamped=True, format="%.1f", step=0,
                                width=70)
            tip(PERIOD, f"Seconds for one 0 -> 1 -> 0 round trip ({MIN_PERIOD:g}..{MAX_PERIOD:g}).")
        with dpg.group(horizontal=True):
            dpg.add_checkbox(tag=SWEEP, label="seed sweep", callback=lambda s, a: self.set_sweeping(bool(a)))
            tip(SWEEP, "Step the Latent panel's seed by one every interval (after the last seed's frame is shown).")
            dpg.add_input_float(tag=INTERVAL, label="s interval", default_value=values["interval"],
                                min_value=MIN_INTERVAL, max_value=MAX_INTERVAL, min_clamped=True, max_clamped=True,
                                format="%.1f", step=0, width=70)
            tip(INTERVAL, f"Seconds between two seeds of the sweep ({MIN_INTERVAL:g}..{MAX_INTERVAL:g}).")
        dpg.add_button(label="Off (back to the current latent)", tag=OFF, callback=lambda: self.turn_off())
        tip(OFF, "Stop animating and sweeping and show the current latent alone.")
        dpg.add_text("", tag=STATUS, color=MUTED, wrap=0)
        dpg.add_separator()
        dpg.add_text("Video of the interpolation (t = 0 .. 1 at the current camera)", color=MUTED)
        folder = values["folder"] or self.state.settings.last_export_folder or os.path.join(os.getcwd(), "exports")
        path_field(FOLDER, "folder", default=folder, directory=True, hint_text="where the video is written",
                   description="The folder the interpolation video is written to.")
        dpg.add_input_int(tag=FRAMES, label="frames", default_value=values["frames"], min_value=2,
                          max_value=MAX_FRAMES, min_clamped=True, max_clamped=True, width=-90)
        tip(FRAMES, "Frames from t = 0 to t = 1, both ends included.")
        dpg.add_input_int(tag=FPS, label="fps", default_value=values["fps"], min_value=1, max_value=120,
                          min_clamped=True, max_clamped=True, width=-90)
        tip(FPS, "Frames per second of the video.")
        dpg.add_input_int(tag=RESOLUTION, label="resolution", default_value=values["resolution"], min_value=16,
                          max_value=MAX_VIDEO_RESOLUTION, min_clamped=True, max_clamped=True, width=-90)
        tip(RESOLUTION, "Width and height of the video in pixels.")
        dpg.add_combo(tag=FORMAT, label="format", items=list(FORMATS), default_value=values["format"], width=-90)
        tip(FORMAT, "mp4 (H.264) or an animated gif.")
        dpg.add_button(label="Export interpolation video", tag=EXPORT, callback=lambda: self.export())
        tip(EXPORT, "Render t = 0 .. 1 at the current camera (exact renders; rgb, depth or normals as the Render "
                    "panel shows) as a background job. Never overwrites: a taken name gets -1, -2 ...")
        dpg.add_text("", tag=MESSAGE, color=BAD, wrap=0)
        self.job_list.build()
        self._to_fields()

    # -- the far end ---------------------------------------------------------------------------------
    def _to_fields(self) -> None:
        seed = dpg.get_value(TO_KIND) == TO_KINDS[0]
        dpg.configure_item(TO_SEED, show=seed)
        dpg.configure_item(f"{TO_FILE}_row", show=not seed)

    def _to_changed(self) -> None:
        self._to_fields()
        if self.enabled:
            self._send(self.t)

    def far_end(self, t: float) -> LatentMix:
        """The mix of the controls at t; TriganError (one line) for a far end no request takes."""
        if dpg.get_value(TO_KIND) == TO_KINDS[0]:
            return LatentMix(t, seed=self.to_seed())
        path = os.path.expanduser(dpg.get_value(TO_FILE).strip())
        if not path:
            raise TriganError("choose an inverted latent file (NAME.inversion.npz) as the far end")
        if not path.endswith(".npz"):
            raise TriganError(f"{path}: expected an inverted latent file NAME.inversion.npz")
        if not os.path.isfile(path):
            raise TriganError(f"{path}: no such file")
        return LatentMix(t, latent_file=os.path.abspath(path))

    def to_seed(self) -> int:
        """The typed far seed; TriganError (one line) for text that is not a seed."""
        try:
            return parse_seed(dpg.get_value(TO_SEED))
        except TriganError as exc:
            raise TriganError(f"to {exc}") from None

    # -- t and the view ------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.message = text
        dpg.set_value(MESSAGE, text)

    def _send(self, t: float) -> bool:
        """Hand the view the mix at t (shown in the slider and the typed field); False after a refusal."""
        try:
            mix = self.far_end(t)
        except TriganError as exc:
            self._say(str(exc))
            return False
        self._say("")
        self.t = t
        if not dpg.is_item_active(T_SLIDER):       # never move the slider under a person's pointer
            dpg.set_value(T_SLIDER, t)
        if not dpg.is_item_active(T_VALUE):
            dpg.set_value(T_VALUE, t)
        self._sent, self._sent_at = mix, self._now
        self.actions.update_view(mix=mix)
        return True

    def set_t(self, value) -> None:
        """A t from the slider or the typed field: shown at once (turning the interpolation on)."""
        try:
            t = rounded_t(value)
        except TriganError as exc:
            self._say(str(exc))
            return
        if self.animating:
            self.set_animating(False)
        if not self.enabled:
            self.set_enabled(True, t)
        else:
            self._send(t)

    def set_enabled(self, on: bool, t: Optional[float] = None) -> None:
        if on and self._send(self.t if t is None else t):
            self.enabled = True
        else:
            self.enabled = False
            self.animating = False
            dpg.set_value(ANIMATE, False)
            self._sent = None
            if self.state.view.mix is not None:
                self.actions.update_view(mix=None)
        dpg.set_value(ENABLED, self.enabled)

    def turn_off(self) -> None:
        self.set_sweeping(False)
        self.set_enabled(False)

    def set_animating(self, on: bool) -> None:
        if on and not self.enabled:
            self.set_enabled(True)
        self.animating = bool(on) and self.enabled
        dpg.set_value(ANIMATE, self.animating)
        if self.animating:
            # start where t is now, on the way up
            self._anim_start = self._now - self._period() * self.t / 2.0

    def set_sweeping(self, on: bool) -> None:
        self.sweeping = bool(on)
        dpg.set_value(SWEEP, self.sweeping)
        self._swept_seed = None
        self._sweep_due = self._now + self._interval()

    def _period(self) -> float:
        return min(max(float(dpg.get_value(PERIOD)), MIN_PERIOD), MAX_PERIOD)

    def _interval(self) -> float:
        return min(max(float(dpg.get_value(INTERVAL)), MIN_INTERVAL), MAX_INTERVAL)

    def _frame_arrived(self, **values) -> bool:
        """Whether the newest finished frame on screen is of these request values (or it has waited
        MAX_FRAME_WAIT since the last change, e.g. on an error frame)."""
        frame = self.state.last_frame
        if frame is not None and all(getattr(frame.request, k, None) == v for k, v in values.items()):
            return True
        return self._now - self._sent_at > MAX_FRAME_WAIT

    # -- every frame ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now = now
        self.job_list.tick()
        self._show_from()
        if self.enabled and self.state.view.mix is None:
            # someone else (a restart of the model, ...) dropped the mix: the panel follows
            self.enabled = self.animating = False
            dpg.set_value(ENABLED, False)
            dpg.set_value(ANIMATE, False)
        if self.animating and self._frame_arrived(mix=self._sent):
            t = round(ping_pong((now - self._anim_start) / self._period()), T_DECIMALS)
            if self._sent is None or t != self._sent.t:
                self._send(t)
        if self.sweeping:
            self._sweep(now)
        dpg.set_value(STATUS, self._status_line())

    def _sweep(self, now: float) -> None:
        seed = self.state.view.seed
        if now < self._sweep_due:
            return
        if self._swept_seed is not None and not self._frame_arrived(seed=self._swept_seed):
            return
        self._swept_seed = next_seed(seed)
        self._sent_at = now
        self._sweep_due = now + self._interval()
        self.actions.update_view(seed=self._swept_seed)

    def _show_from(self) -> None:
        v = self.state.view
        if v.latent_file:
            text = f"from: the inverted latent {os.path.basename(v.latent_file)} (t = 0)"
        else:
            cls = "" if v.class_index is None else f", class {v.class_index}"
            text = f"from: seed {v.seed}{cls}, psi {v.psi:g} (the Latent panel; t = 0)"
        if dpg.get_value(FROM) != text:
            dpg.set_value(FROM, text)

    def _status_line(self) -> str:
        parts = []
        if self.enabled:
            parts.append(f"showing t = {self.t:.3f}")
        if self.animating:
            parts.append("animating")
        if self.sweeping:
            parts.append(f"sweeping: seed {self.state.view.seed}")
        return ", ".join(parts)

    # -- the video -----------------------------------------------------------------------------------
    def _stem(self, mix: LatentMix) -> str:
        info, v = self.state.model_info, self.state.view
        if v.latent_file:
            start = os.path.basename(v.latent_file).split(".inversion")[0]
        else:
            name = os.path.splitext(os.path.basename(info.file))[0]
            cls = f"-c{v.class_index}" if v.class_index is not None else ""
            start = f"{name}-seed{v.seed}{cls}"
        end = (os.path.basename(mix.latent_file).split(".inversion")[0] if mix.latent_file
               else f"seed{mix.seed}")
        return f"{start}-interp-{end}"

    def export(self) -> None:
        try:
            job = self._start_export()
        except (TriganError, OSError, ValueError) as exc:
            dpg.set_value(MESSAGE, str(exc))
            self.message = str(exc)
            return
        self._say("")
        self.jobs.insert(0, job)

    def _start_export(self):
        info, pose = self.state.model_info, self.state.pose
        if info is None or pose is None:
            raise TriganError("no model is open yet")
        mix = self.far_end(0.0)
        request = self.state.view.request(info.path, pose=pose).with_values(mix=mix)
        folder = os.path.expanduser(dpg.get_value(FOLDER).strip())
        if not folder:
            raise TriganError("choose a folder for the video")
        os.makedirs(folder, exist_ok=True)
        fmt = dpg.get_value(FORMAT)
        path = unique_path(folder, self._stem(mix), fmt)
        output = request.mode if request.mode in ("rgb", "depth", "normals") else "rgb"
        frames = int(dpg.get_value(FRAMES))
        label = f"interpolation video {os.path.basename(path)} ({frames} frames)"
        return self.runner.start("video", label, export_interpolation, info.path, request, frames,
                                 float(dpg.get_value(FPS)), int(dpg.get_value(RESOLUTION)), path, fmt=fmt,
                                 output=output, device=self.state.device)

    # -- app hooks -----------------------------------------------------------------------------------
    def store_settings(self, s) -> None:
        s.panels["interpolate"] = {
            "to_kind": dpg.get_value(TO_KIND), "to_seed": self._stored_seed(),
            "to_file": dpg.get_value(TO_FILE), "t": float(self.t), "period": float(dpg.get_value(PERIOD)),
            "interval": float(dpg.get_value(INTERVAL)), "frames": int(dpg.get_value(FRAMES)),
            "fps": int(dpg.get_value(FPS)), "resolution": int(dpg.get_value(RESOLUTION)),
            "format": dpg.get_value(FORMAT), "folder": dpg.get_value(FOLDER)}

    def _stored_seed(self) -> int:
        try:
            return self.to_seed()
        except TriganError:
            return DEFAULTS["to_seed"]

    def panel_state(self) -> dict:
        frame = self.state.last_frame
        frame_mix = getattr(frame.request, "mix", None) if frame is not None else None
        to_seed = self._stored_seed() if dpg.does_item_exist(TO_SEED) else None
        to_file = dpg.get_value(TO_FILE) if dpg.does_item_exist(TO_FILE) else None
        return {"t": self.t, "enabled": self.enabled, "to": dpg.get_value(TO_KIND) if dpg.does_item_exist(TO_KIND)
                else None, "to_seed": to_seed, "to_file": to_file, "animating": self.animating,
                "sweeping": self.sweeping, "message": self.message,
                "view_mix": _mix_dict(self.state.view.mix), "frame_mix": _mix_dict(frame_mix),
                "frame_seed": getattr(frame.request, "seed", None) if frame is not None else None,
                "jobs": [{"label": j.label, "state": j.state, "progress": j.progress, "message": j.message,
                          "output_path": str(j.output_path) if j.output_path else None} for j in self.jobs]}

    def shutdown(self) -> None:
        for job in self.jobs:
            if not job.finished:
                job.cancel()


def _mix_dict(mix) -> Optional[dict]:
    if mix is None:
        return None
    return {"t": mix.t, "seed": mix.seed, "latent_file": mix.latent_file}
