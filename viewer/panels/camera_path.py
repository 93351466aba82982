"""Camera path tab: a keyframe editor for a video's camera move.

"Add current camera" appends the view's camera (yaw, pitch, fov, radius) as a keyframe with the time
it takes to reach the next one; the list shows each keyframe with its duration (typed, Enter) and
Go to / Up / Down / Delete buttons. Play moves the view's camera along the path in real time (the
same Hermite spline `trigan render --trajectory FILE` samples), the time slider scrubs it. Save and
Load read and write the keyframe JSON of core.trajectories, look-at point and pivot included.
Export video renders the path as `trigan render --vis video --trajectory FILE` does, in a
background job, and writes the keyframe file beside the video so the command can redo it pixel for
pixel. The model lives in viewer/camera_path.py.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, List, Optional

import dearpygui.dearpygui as dpg

from trigan.core.cameras import Pose
from trigan.core.errors import TriganError
from trigan.viewer.camera_path import DEFAULT_DURATION, MAX_DURATION, MIN_DURATION, CameraPath
from trigan.viewer.panels.common import BAD, GOOD, MUTED, JobList, hint, path_field, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState

if TYPE_CHECKING:                     # annotations only: the jobs module loads torch
    from trigan.viewer.jobs import JobRunner

ADD, CLEAR, LIST, SUMMARY = "path_add", "path_clear", "path_list", "path_summary"
PLAY, TIME, LOOP = "path_play", "path_time", "path_loop"
FILE, SAVE, LOAD = "path_file", "path_save", "path_load"
FPS, RESOLUTION, FORMAT, EXPORT = "path_fps", "path_resolution", "path_format", "path_export"
MESSAGE, JOBS = "path_message", "path_jobs"
VIDEO_FORMATS = ("mp4", "gif")
SETTINGS_KEY = "camera_path"
ROW_CONTROLS = ("duration", "goto", "up", "down", "delete")


def row_tag(index: int, control: str) -> str:
    """The tag of a keyframe row's control: path_row_2_up, path_row_0_duration ..."""
    return f"path_row_{index}_{control}"


def video_output(view_mode: str) -> str:
    """What the video shows: the Render panel's mode where a video can show it (rgb, depth,
    normals), else rgb, as the Export panel's video does."""
    return view_mode if view_mode in ("rgb", "depth", "normals") else "rgb"


def free_stem(folder: str, stem: str, suffixes) -> str:
    """stem, or stem-1, stem-2 ... so that no folder/stem.SUFFIX exists for any of `suffixes`
    (the keyframe file and its video are named together; an export never overwrites)."""
    name, n = stem, 1
    while any(os.path.lexists(os.path.join(folder, f"{name}.{ext}")) for ext in suffixes):
        name, n = f"{stem}-{n}", n + 1
    return name


class CameraPathPanel:
    def __init__(self, state: ViewerState, actions: ViewerActions, runner: Optional["JobRunner"] = None):
        self.state, self.actions, self.runner = state, actions, runner
        self.path = CameraPath()
        self.jobs: List = []
        self.job_list = JobList(JOBS, lambda: self.jobs)
        self.playing = False
        self.time = 0.0
        self._play_origin = 0.0            # monotonic time at which the path's t = 0 (while playing)
        self._message = ""
        self._shown_rows = -1              # how many rows the list widgets were built for

    # -- building --------------------------------------------------------------------------------------
    def build(self) -> None:
        with dpg.group(horizontal=True):
            dpg.add_button(label="Add current camera", tag=ADD, callback=self._add)
            tip(ADD, "Append the view's camera (yaw, pitch, fov, radius) as the last keyframe, 1 s before "
                     "the next one. The first keyframe also fixes the point the path orbits (its pan).")
            dpg.add_button(label="Clear", tag=CLEAR, callback=self._clear)
            tip(CLEAR, "Remove every keyframe.")
        dpg.add_text("", tag=SUMMARY, color=MUTED)
        dpg.add_group(tag=LIST)
        dpg.add_separator()
        with dpg.group(horizontal=True):
            dpg.add_button(label="Play", tag=PLAY, callback=self._toggle_play, width=60)
            tip(PLAY, "Move the view's camera along the path in real time (Stop halts it where it is).")
            dpg.add_checkbox(label="loop", tag=LOOP, default_value=False)
            tip(LOOP, "Start again from the first keyframe when the preview reaches the end.")
        dpg.add_slider_float(tag=TIME, label="time (s)", min_value=0.0, max_value=1.0, default_value=0.0,
                             format="%.2f", width=-70, callback=self._scrub)
        tip(TIME, "Scrub the path: the view shows the camera at this time (stops the preview).")
        dpg.add_separator()
        default_file = os.path.join(self.state.settings.last_export_folder or os.path.join(os.getcwd(), "exports"),
                                    "camera-path.json")
        path_field(FILE, "file", default=default_file, extensions=(".json",),
                   hint_text="a keyframe file (.json)")
        if not dpg.does_item_exist(f"{FILE}_browse_help_tip"):     # path_field may bring its own
            tip(f"{FILE}_browse", "Choose the keyframe file to save to or load from.")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Save keyframes", tag=SAVE, callback=self._save)
            tip(SAVE, "Write the keyframes (all four values and the time of each, plus the path's look-at "
                      "point and pivot) to the file: `trigan render --trajectory FILE` reads it.")
            dpg.add_button(label="Load keyframes", tag=LOAD, callback=self._load)
            tip(LOAD, "Replace the keyframes with the file's (a keyframe file of trigan render).")
        dpg.add_separator()
        dpg.add_text("Video along the path", color=MUTED)
        dpg.add_input_int(tag=FPS, label="fps", default_value=30, min_value=1, max_value=120, min_clamped=True,
                          max_clamped=True, width=-90)
        tip(FPS, "Frames per second: the video has round(path seconds x fps) + 1 frames.")
        dpg.add_input_int(tag=RESOLUTION, label="resolution", default_value=256, min_value=16, max_value=1024,
                          min_clamped=True, max_clamped=True, width=-90)
        tip(RESOLUTION, "Image size of the video in pixels (square).")
        dpg.add_combo(tag=FORMAT, label="format", items=list(VIDEO_FORMATS), default_value="mp4", width=-90)
        tip(FORMAT, "mp4 (H.264) or an animated gif.")
        dpg.add_button(label="Export video along the path", tag=EXPORT, callback=self._export)
        tip(EXPORT, "Render the path as a video of the current latent (seed, class, psi, Render mode) in the "
                    "background; the keyframe file is written beside it, so trigan render can redo it.")
        hint("The video and its .json go to the keyframe file's folder.")
        dpg.add_text("", tag=MESSAGE, color=BAD, wrap=0)
        dpg.add_separator()
        self.job_list.build()
        self.restore(self.state.settings)
        self._refresh_list()

    def _refresh_list(self) -> None:
        """Rebuild the keyframe rows (after add, move, delete, load: a handful of widgets)."""
        for i in range(max(self._shown_rows, 0)):        # tooltips live outside the list group
            for control in ROW_CONTROLS:
                tooltip = f"{row_tag(i, control)}_help_tip"
                if dpg.does_item_exist(tooltip):
                    dpg.delete_item(tooltip)
        dpg.delete_item(LIST, children_only=True)
        for i, yaw, pitch, radius, fov, duration in self.path.rows():
            with dpg.group(parent=LIST):
                dpg.add_text(f"{i}: yaw {yaw:.1f}  pitch {pitch:.1f} deg  radius {radius:.3f}  fov {fov:.1f}",
                             tag=row_tag(i, "text"))
                with dpg.group(horizontal=True):
                    dpg.add_input_float(tag=row_tag(i, "duration"), default_value=duration, step=0, format="%.2f",
                                        label="s", width=60, on_enter=True, callback=self._duration, user_data=i)
                    tip(row_tag(i, "duration"), f"Seconds from keyframe {i} to the next ({MIN_DURATION:g}.."
                                                f"{MAX_DURATION:g}); type and press Enter. The last keyframe's "
                                                "counts once another follows it.")
                    dpg.add_button(label="Go to", tag=row_tag(i, "goto"), callback=self._goto, user_data=i)
                    tip(row_tag(i, "goto"), f"Move the view's camera to keyframe {i}.")
                    dpg.add_button(label="Up", tag=row_tag(i, "up"), callback=self._move, user_data=(i, -1))
                    tip(row_tag(i, "up"), f"Swap keyframe {i} with the one before it.")
                    dpg.add_button(label="Down", tag=row_tag(i, "down"), callback=self._move, user_data=(i, 1))
                    tip(row_tag(i, "down"), f"Swap keyframe {i} with the one after it.")
                    dpg.add_button(label="Delete", tag=row_tag(i, "delete"), callback=self._delete, user_data=i)
                    tip(row_tag(i, "delete"), f"Remove keyframe {i}.")
        self._shown_rows = len(self.path)
        n, seconds = len(self.path), self.path.duration
        dpg.set_value(SUMMARY, "no keyframes yet: orbit to a view and Add current camera" if n == 0 else
                      f"{n} keyframe{'s' * (n != 1)}, {seconds:.2f} s")
        dpg.configure_item(TIME, max_value=max(seconds, 1e-3))
        self.time = min(self.time, seconds)
        dpg.set_value(TIME, self.time)

    # -- messages --------------------------------------------------------------------------------------
    def _say(self, text: str, colour=BAD) -> None:
        self._message = text
        dpg.set_value(MESSAGE, text)
        dpg.configure_item(MESSAGE, color=colour)

    def _guard(self, action) -> bool:
        """Run an edit; a refused value becomes the panel's one red line. True when it went through."""
        try:
            action()
        except (TriganError, OSError, ValueError) as exc:
            self._say(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        return True

    # -- editing ---------------------------------------------------------------------------------------
    def _add(self) -> None:
        pose = self.state.pose
        if pose is None:
            self._say("no camera yet: wait for the model to load")
            return
        notes = []
        if self._guard(lambda: notes.append(self.path.add(pose, DEFAULT_DURATION))):
            self._say(notes[0] or f"added keyframe {len(self.path) - 1}", MUTED if notes[0] is None else BAD)
            self._refresh_list()

    def _clear(self) -> None:
        self._stop()
        self.path.clear()
        self.time = 0.0
        self._say("cleared", MUTED)
        self._refresh_list()

    def _duration(self, sender, value, index) -> None:
        if self._guard(lambda: self.path.set_duration(index, value)):
            self._say(f"keyframe {index}: {self.path.keyframes[index].duration:g} s to the next", MUTED)
            self._refresh_list()
        else:
            dpg.set_value(sender, self.path.keyframes[index].duration)

    def _move(self, sender, app_data, user_data) -> None:
        index, step = user_data
        if self._guard(lambda: self.path.move(index, step)):
            self._say("", MUTED)
            self._refresh_list()

    def _delete(self, sender, app_data, index) -> None:
        if self._guard(lambda: self.path.delete(index)):
            self._say(f"deleted keyframe {index}", MUTED)
            self._refresh_list()

    def _goto(self, sender, app_data, index) -> None:
        if not 0 <= index < len(self.path):
            return
        self._stop()
        self.time = float(self.path.times()[index])
        dpg.set_value(TIME, self.time)
        self._show_pose(self.path.pose_at(self.time))

    # -- preview ---------------------------------------------------------------------------------------
    def _show_pose(self, pose: Pose) -> None:
        self.actions.move_camera(lambda orbit: orbit.set(yaw=pose.yaw, pitch=pose.pitch, radius=pose.radius,
                                                         fov=pose.fov, look_at=pose.look_at, pivot=pose.pivot))

    def _toggle_play(self) -> None:
        if self.playing:
            self._stop()
            return
        if len(self.path) < 2:
            self._say(f"{len(self.path)} keyframe(s): a path needs at least two to play")
            return
        if self.time >= self.path.duration:
            self.time = 0.0
        self._play_origin = time.monotonic() - self.time
        self.playing = True
        dpg.configure_item(PLAY, label="Stop")
        self._say("", MUTED)

    def _stop(self) -> None:
        self.playing = False
        dpg.configure_item(PLAY, label="Play")

    def _scrub(self, sender, value) -> None:
        self._stop()
        if not len(self.path):
            return
        self.time = min(max(float(value), 0.0), self.path.duration)
        self._show_pose(self.path.pose_at(self.time))

    def _advance(self, now: float) -> None:
        """While playing: the camera at the path's time now (wall clock, so the preview takes the
        path's real duration however fast frames render)."""
        if len(self.path) < 2:
            self._stop()
            return
        seconds = self.path.duration
        t = max(0.0, now - self._play_origin)
        if t >= seconds:
            if dpg.get_value(LOOP):
                t = math.fmod(t, seconds)
                self._play_origin = now - t
            else:
                t = seconds
                self._stop()
        self.time = t
        dpg.set_value(TIME, t)
        self._show_pose(self.path.pose_at(t))

    # -- files -----------------------------------------------------------------------------------------
    def _file(self) -> str:
        text = os.path.expanduser(dpg.get_value(FILE).strip())
        if not text:
            raise TriganError("choose a keyframe file (.json)")
        return text

    def _save(self) -> None:
        saved = []
        if self._guard(lambda: saved.append(self.path.save(self._file()))):
            self._say(f"saved {len(self.path)} keyframes to {saved[0]}", GOOD)

    def _load(self) -> None:
        base = self.state.pose or Pose()
        loaded = []
        if self._guard(lambda: loaded.append(CameraPath.load(self._file(), base))):
            self._stop()
            self.path, self.time = loaded[0], 0.0
            self._say(f"loaded {len(self.path)} keyframes", GOOD)
            self._refresh_list()

    # -- export ----------------------------------------------------------------------------------------
    def _export(self) -> None:
        started = []
        if self._guard(lambda: started.append(self._start_export())):
            job, video, keyframes = started[0]
            self.jobs.insert(0, job)
            self._say(f"rendering {os.path.basename(video)} along {os.path.basename(keyframes)}", MUTED)

    def _start_export(self):
        info, view = self.state.model_info, self.state.view
        if info is None:
            raise TriganError("no model is open yet")
        if self.runner is None:
            raise TriganError("exports are not available here")
        fps, fmt = int(dpg.get_value(FPS)), dpg.get_value(FORMAT)
        self.path.trajectory(fps)                          # too short / too long: refused before any file
        folder = os.path.dirname(os.path.abspath(self._file()))
        os.makedirs(folder, exist_ok=True)
        stem = free_stem(folder, self._stem(), ("json", fmt))
        keyframes = self.path.save(os.path.join(folder, f"{stem}.json"))
        # frames=None: the file's times and the fps set the frame count, as `trigan render --fps` does;
        # the file carries the look-at point and pivot, so the base pose only fills what it lacks.
        video = os.path.join(folder, f"{stem}.{fmt}")
        job = self.runner.start_video(info.path, [view.seed], view.class_index, view.psi, str(keyframes), None, fps,
                                      int(dpg.get_value(RESOLUTION)), video, fmt=fmt, noise_mode=view.noise_mode,
                                      base_pose=self.state.pose, output=video_output(view.mode),
                                      latent_file=view.latent_file)
        return job, video, str(keyframes)

    def _stem(self) -> str:
        info, view = self.state.model_info, self.state.view
        path_name = os.path.splitext(os.path.basename(dpg.get_value(FILE).strip()))[0] or "camera-path"
        if view.latent_file:               # an inverted latent: NAME.inversion.npz -> NAME-path
            return f"{os.path.basename(view.latent_file).split('.inversion')[0]}-{path_name}"
        model = os.path.splitext(os.path.basename(info.file))[0]
        cls = f"-c{view.class_index}" if view.class_index is not None else ""
        return f"{model}-seed{view.seed}{cls}-{path_name}"

    # -- app hooks -------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.job_list.tick()
        if self.playing:
            self._advance(now)

    def panel_state(self) -> dict:
        times = self.path.times()
        return {
            "keyframes": [dict(yaw=k.yaw, pitch=k.pitch, fov=k.fov, radius=k.radius, duration=k.duration,
                               time=float(t)) for k, t in zip(self.path.keyframes, times, strict=True)],
            "look_at": list(self.path.look_at), "pivot": list(self.path.pivot),
            "duration": self.path.duration, "playing": self.playing, "time": self.time, "message": self._message,
            "jobs": [{"state": j.state, "progress": j.progress, "message": j.message, "label": j.label,
                      "output_path": str(j.output_path) if j.output_path else None} for j in self.jobs],
        }

    def store_settings(self, s) -> None:
        s.panels[SETTINGS_KEY] = {"file": dpg.get_value(FILE), "fps": dpg.get_value(FPS),
                                  "resolution": dpg.get_value(RESOLUTION), "format": dpg.get_value(FORMAT),
                                  "loop": dpg.get_value(LOOP),
                                  "path": self.path.to_json() if len(self.path) else None}

    def restore(self, s) -> None:
        """The last session's file, video choices and keyframes; a value of the wrong kind keeps the
        default (settings files are edited by hand too)."""
        saved = (s.panels or {}).get(SETTINGS_KEY)
        if not isinstance(saved, dict):
            return
        checks = {FILE: lambda v: isinstance(v, str), LOOP: lambda v: isinstance(v, bool),
                  FPS: lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 120,
                  RESOLUTION: lambda v: isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 1024,
                  FORMAT: lambda v: v in VIDEO_FORMATS}
        for key, tag in (("file", FILE), ("fps", FPS), ("resolution", RESOLUTION), ("format", FORMAT),
                         ("loop", LOOP)):
            if key in saved and checks[tag](saved[key]):
                dpg.set_value(tag, saved[key])
        if saved.get("path") is not None:
            try:
                self.path = CameraPath.from_json(saved["path"], "saved camera path", self.state.pose or Pose())
            except (TriganError, ValueError, TypeError):
                self.path = CameraPath()

    def shutdown(self) -> None:
        for job in self.jobs:
            if not job.finished:
                job.cancel()
