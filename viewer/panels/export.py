"""Export panel: a screenshot of the current frame, a video along a trajectory (one seed, or several
as a grid), and a marching-cubes mesh. Each runs as a background job (viewer.jobs) with a progress
bar and a Cancel button; the row shows the output path when it is done. Jobs load their own copy of
the model, so the view keeps rendering meanwhile. While the view shows an inverted latent (the Invert
tab), the video and the mesh are of that latent, named after its file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, List

import dearpygui.dearpygui as dpg

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_FRAMES
from trigan.core.mesh import FORMATS as MESH_FORMATS
from trigan.core.mesh import parse_level
from trigan.core.selection import parse_int_list
from trigan.core.trajectories import DEFAULT_FRAMES
from trigan.core.trajectories import NAMED as TRAJECTORIES
from trigan.viewer.desktop import open_folder
from trigan.viewer.panels.common import BAD, MUTED, JobList, hint, path_field, tip
from trigan.viewer.panels.interface import ViewerState

if TYPE_CHECKING:                     # annotations only: the jobs module loads torch
    from trigan.viewer.jobs import JobRunner

FOLDER = "export_folder"
SHOT = "export_screenshot_button"
VIDEO_TRAJ, VIDEO_FRAMES, VIDEO_FPS, VIDEO_RES = "video_trajectory", "video_frames", "video_fps", "video_resolution"
VIDEO_SEEDS, VIDEO_BUTTON, VIDEO_AROUND = "video_seeds", "export_video_button", "video_around_camera"
MESH_RES, MESH_LEVEL, MESH_FORMAT, MESH_COLOURS = "mesh_resolution", "mesh_threshold", "mesh_format", "mesh_colours"
MESH_BUTTON = "export_mesh_button"
MESSAGE = "export_message"
OPEN_FOLDER, OPEN_MESSAGE = "export_open_folder", "export_open_message"
TIPS = {
    OPEN_FOLDER: "Show the export folder in the desktop's file manager.",
    SHOT: "Save the frame on screen as a PNG at its rendered resolution (a background job).",
    VIDEO_TRAJ: "The camera path of the video (see docs/render.md); choosing one sets its usual frame count.",
    VIDEO_FRAMES: "How many frames the video has.",
    VIDEO_FPS: "Frames per second of the video file.",
    VIDEO_RES: "The side of the video's frames in pixels (16..1024).",
    VIDEO_SEEDS: "Empty: the seed on screen. Several seeds (0-3 or 1,5,9) make one video with the seeds in a grid.",
    VIDEO_AROUND: "On: move around the camera on screen (its look-at point and pivot too). Off: around the "
                  "model's mean pose.",
    VIDEO_BUTTON: "Render the video as `trigan render --vis video` does, as a background job (progress and Cancel "
                  "below).",
    MESH_RES: "Marching-cubes grid resolution per side (16..1024): finer is slower.",
    MESH_LEVEL: "The density threshold of the surface: auto (Otsu on the density grid) or a number.",
    MESH_FORMAT: "ply, obj, glb, or npy (the density volume itself).",
    MESH_COLOURS: "Colour the mesh's vertices from the model's colours.",
    MESH_BUTTON: "Extract the mesh as `trigan mesh` does, as a background job.",
}
REMEMBERED = (VIDEO_TRAJ, VIDEO_FRAMES, VIDEO_FPS, VIDEO_RES, VIDEO_SEEDS, VIDEO_AROUND, MESH_RES, MESH_LEVEL, MESH_FORMAT,
              MESH_COLOURS)


def unique_path(folder: str, stem: str, ext: str) -> str:
    """folder/stem.ext, or stem-1.ext, stem-2.ext ... so an export never overwrites an earlier one."""
    path = os.path.join(folder, f"{stem}.{ext}")
    n = 1
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}-{n}.{ext}")
        n += 1
    return path


class ExportPanel:
    def __init__(self, state: ViewerState, runner: "JobRunner"):
        self.state, self.runner = state, runner
        self.jobs: List = []
        self.job_list = JobList("export_jobs", lambda: self.jobs)

    def build(self) -> None:
        s = self.state.settings
        folder = s.last_export_folder or os.path.join(os.getcwd(), "exports")
        path_field(FOLDER, "folder", default=folder, directory=True, hint_text="where exports are written",
                   description="Where the exports are written (created at the first export); files are never "
                               "overwritten: -1, -2 ... are added to a name already taken.")
        dpg.add_button(label="Open folder", tag=OPEN_FOLDER, callback=self.open_folder)
        dpg.add_text("", tag=OPEN_MESSAGE, color=BAD, wrap=0, show=False)
        dpg.add_button(label="Save screenshot (PNG)", tag=SHOT, callback=self._screenshot)
        dpg.add_separator()
        dpg.add_text("Video", color=MUTED)
        dpg.add_combo(tag=VIDEO_TRAJ, label="trajectory", items=list(TRAJECTORIES), default_value="front_circle",
                      width=-90, callback=lambda s, a: dpg.set_value(VIDEO_FRAMES, DEFAULT_FRAMES.get(a, 64)))
        dpg.add_input_int(tag=VIDEO_FRAMES, label="frames", default_value=DEFAULT_FRAMES["front_circle"],
                          min_value=1, max_value=MAX_FRAMES, min_clamped=True, max_clamped=True, width=-90)
        dpg.add_input_int(tag=VIDEO_FPS, label="fps", default_value=30, min_value=1, max_value=120, min_clamped=True,
                          max_clamped=True, width=-90)
        dpg.add_input_int(tag=VIDEO_RES, label="resolution", default_value=256, min_value=16, max_value=1024,
                          min_clamped=True, max_clamped=True, width=-90)
        dpg.add_input_text(tag=VIDEO_SEEDS, label="seeds", width=-90,
                           hint="empty: the current seed; 0-3 makes a grid")
        dpg.add_checkbox(tag=VIDEO_AROUND, label="around the current camera",
                         default_value=True)
        hint("The video shows what the Render panel shows (rgb, depth or normals), exact renders.")
        dpg.add_button(label="Export video (mp4)", tag=VIDEO_BUTTON, callback=self._video)
        dpg.add_separator()
        dpg.add_text("Mesh", color=MUTED)
        dpg.add_input_int(tag=MESH_RES, label="grid", default_value=256, min_value=16, max_value=1024, min_clamped=True,
                          max_clamped=True, width=-90)
        dpg.add_input_text(tag=MESH_LEVEL, label="threshold", default_value="auto", width=-90)
        dpg.add_combo(tag=MESH_FORMAT, label="format", items=list(MESH_FORMATS), default_value="ply", width=-90)
        dpg.add_checkbox(tag=MESH_COLOURS, label="vertex colours", default_value=True)
        hint("threshold: auto (Otsu on the density grid) or a density value; see docs/meshes.md.")
        dpg.add_button(label="Export mesh", tag=MESH_BUTTON, callback=self._mesh)
        dpg.add_text("", tag=MESSAGE, color=BAD, wrap=0)
        dpg.add_separator()
        self.job_list.build()
        for tag, text in TIPS.items():
            tip(tag, text)
        self.restore(s)

    # -- helpers -------------------------------------------------------------------------------------
    def _folder(self) -> str:
        folder = os.path.expanduser(dpg.get_value(FOLDER).strip())
        if not folder:
            raise TriganError("choose an export folder")
        os.makedirs(folder, exist_ok=True)
        return folder

    def _model(self):
        info = self.state.model_info
        if info is None:
            raise TriganError("no model is open yet")
        return info

    def _stem(self, what: str) -> str:
        info, v = self._model(), self.state.view
        if v.latent_file:                  # an inverted latent: NAME.inversion.npz -> NAME-what
            return f"{os.path.basename(v.latent_file).split('.inversion')[0]}-{what}"
        name = os.path.splitext(os.path.basename(info.file))[0]
        cls = f"-c{v.class_index}" if v.class_index is not None else ""
        return f"{name}-{what}-seed{v.seed}{cls}"

    def _launch(self, make_job) -> None:
        try:
            job = make_job()
        except (TriganError, OSError, ValueError) as exc:
            dpg.set_value(MESSAGE, str(exc))
            return
        dpg.set_value(MESSAGE, "")
        self.jobs.insert(0, job)

    def open_folder(self) -> None:
        """The export folder in the desktop's file manager (started detached: never waits)."""
        problem = open_folder(dpg.get_value(FOLDER))
        dpg.set_value(OPEN_MESSAGE, problem)
        dpg.configure_item(OPEN_MESSAGE, show=bool(problem))

    # -- the three exports ---------------------------------------------------------------------------
    def _screenshot(self) -> None:
        def make():
            frame = self.state.last_frame
            if frame is None:
                raise TriganError("nothing rendered yet")
            path = unique_path(self._folder(), self._stem("shot"), "png")
            return self.runner.start_screenshot(frame, path)
        self._launch(make)

    def _video(self) -> None:
        def make():
            info, v = self._model(), self.state.view
            text = dpg.get_value(VIDEO_SEEDS).strip()
            if v.latent_file and text:
                raise TriganError("the view shows an inverted latent: the video is of it (empty the seeds "
                                  "field, or go back to seeds in the Invert tab)")
            seeds = parse_int_list(text, "seeds") if text else [v.seed]
            traj = dpg.get_value(VIDEO_TRAJ)
            path = unique_path(self._folder(), self._stem(f"{traj}" + ("-grid" if len(seeds) > 1 else "")), "mp4")
            # around the camera on screen, its look-at point and panned pivot included (None: the
            # model's start view)
            base = self.state.pose if dpg.get_value(VIDEO_AROUND) else None
            output = v.mode if v.mode in ("rgb", "depth", "normals") else "rgb"
            return self.runner.start_video(info.path, seeds, v.class_index, v.psi, traj,
                                           int(dpg.get_value(VIDEO_FRAMES)), int(dpg.get_value(VIDEO_FPS)),
                                           int(dpg.get_value(VIDEO_RES)), path, noise_mode=v.noise_mode,
                                           base_pose=base, output=output, latent_file=v.latent_file)
        self._launch(make)

    def _mesh(self) -> None:
        def make():
            info, v = self._model(), self.state.view
            fmt = dpg.get_value(MESH_FORMAT)
            level = parse_level(dpg.get_value(MESH_LEVEL).strip() or "auto")
            path = unique_path(self._folder(), self._stem("mesh"), fmt)
            return self.runner.start_mesh(info.path, v.seed, v.class_index, v.psi, int(dpg.get_value(MESH_RES)),
                                          level, fmt, bool(dpg.get_value(MESH_COLOURS)), path,
                                          noise_mode=v.noise_mode, latent_file=v.latent_file)
        self._launch(make)

    # -- app hooks -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.job_list.tick()

    def any_running(self) -> bool:
        return bool(self.runner.active)

    def job_states(self) -> list:
        jobs = self.runner.jobs
        listed = {id(j) for j in self.job_list.shown()}       # "Clear finished" takes rows away
        return [{"kind": j.kind, "label": j.label, "state": j.state, "progress": j.progress, "message": j.message,
                 "output_path": str(j.output_path) if j.output_path else None, "listed": id(j) in listed}
                for j in jobs]

    def store_settings(self, s) -> None:
        s.last_export_folder = dpg.get_value(FOLDER).strip() or None
        s.export = {tag: dpg.get_value(tag) for tag in REMEMBERED}

    def restore(self, s) -> None:
        """The last export choices (a value of the wrong type is skipped, the widget keeps its default)."""
        for tag, value in (s.export or {}).items():
            if tag in REMEMBERED and isinstance(value, type(dpg.get_value(tag))):
                dpg.set_value(tag, value)

    def shutdown(self) -> None:
        self.runner.cancel_all(wait=2.0)
