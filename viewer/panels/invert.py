"""Invert panel: put a photo into the open model (training.inversion, as `trigan invert` does).

Pick an image (or several, separated by ";"), optionally its mask, the camera (estimated, or yaw and
pitch in degrees, which "from the view" copies from the camera on screen), the class of a
conditional model (or try all), the latent and tuning steps, W+, a VGG16 weights file for the
perceptual loss (optional: without one the fit uses pixels + SSIM) and the output folder, then
Start. The inversion runs as a background job (viewer.jobs.invert_images) on its own copy of the
model: a progress bar with Cancel, the stage and PSNR, and two thumbnails, the input as the model
sees it and the newest reconstruction. When it is done the view shows the result: the tuned model
(NAME.pti.ckpt) with the inverted latent (NAME.inversion.npz) at the camera found, to orbit and
export like any seed; "Back to seeds" returns to the model and seed shown before. Bad input is one
red line in the panel, and nothing is started.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, List, Optional, Sequence

import dearpygui.dearpygui as dpg
import numpy as np
from PIL import Image

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_INVERSION_STEPS, MAX_TUNE_HOLD
from trigan.viewer.panels.common import BAD, GOOD, MUTED, JobList, greyed_when_disabled, hint, path_field, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState

if TYPE_CHECKING:                     # annotations only: the jobs module loads torch
    from trigan.viewer.jobs import JobRunner

IMAGES, MASK, VGG, FOLDER = "invert_images", "invert_mask", "invert_vgg", "invert_folder"
CAMERA, YAW, PITCH, FROM_VIEW = "invert_camera", "invert_yaw", "invert_pitch", "invert_camera_from_view"
CLASS, STEPS, PTI_STEPS, WPLUS = "invert_class", "invert_steps", "invert_pti_steps", "invert_wplus"
PTI_HOLD = "invert_pti_hold"
VIDEO, MESH = "invert_video", "invert_mesh"
START, BACK, SHOW = "invert_start_button", "invert_back_button", "invert_show_button"
MESSAGE, STAGE, RESULT, SHOWING = "invert_message", "invert_stage", "invert_result", "invert_showing"
INPUT_IMAGE, RECON_IMAGE, THUMBS = "invert_input_image", "invert_reconstruction_image", "invert_thumbnails"
JOBS = "invert_jobs"
REMEMBERED = (IMAGES, MASK, VGG, FOLDER, CAMERA, YAW, PITCH, STEPS, PTI_STEPS, PTI_HOLD, WPLUS, VIDEO, MESH)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
WEIGHT_EXTENSIONS = (".pth", ".pt")
CAMERA_CHOICES = ("estimate", "yaw and pitch below")
TRY_ALL = "try all"
TIPS = {
    CAMERA: "estimate: the camera is found with the latent (several starting yaws); or take yaw and pitch below.",
    FROM_VIEW: "Take yaw and pitch from the camera on screen.",
    YAW: "The photo's yaw in degrees, trigan's convention (0 looks from +X).",
    PITCH: "The photo's pitch in degrees from straight up (90 = level).",
    CLASS: "A conditional model's class, or try all (each is tried, the best kept).",
    STEPS: "Optimisation steps of the latent (and camera) fit.",
    PTI_STEPS: "Steps tuning a copy of the model around the latent (pivotal tuning); 0: the latent alone.",
    PTI_HOLD: "How much the tuned model must keep the sides the photo does not show: tuning keeps the state "
              "scoring best on the photo's fit plus this times the other sides' change, the untuned model "
              "included (0: the best fit of the photo; docs/inversion.md).",
    WPLUS: "Fit a latent per generator layer (W+) instead of one for all (W): closer fits, less editable.",
    VIDEO: "Also write an orbit video of the result.",
    MESH: "Also write the result's coloured mesh.",
    START: "Check the fields and start the inversion as a background job (progress and Cancel below).",
    SHOW: "Show the newest result in the view again.",
    BACK: "Leave the inverted latent and go back to seeds on the model shown before.",
}
THUMB = 128                            # the thumbnails' side in pixels (two fit the Tasks panel's width)
# InversionSettings' defaults, written out as `trigan invert --help` writes them (tests/test_invert_cli.py checks)
DEFAULT_STEPS, DEFAULT_PTI_STEPS, DEFAULT_PTI_HOLD = 200, 80, 1.0


def split_images(text: str) -> List[str]:
    """The image paths of the field: one path, or several separated by ";" ("~" expanded)."""
    return [os.path.expanduser(p.strip()) for p in (text or "").split(";") if p.strip()]


def camera_spec(yaw_deg: float, pitch_deg: float) -> str:
    """trigan's camera text (radians, core.trajectories.parse_camera) of yaw and pitch in degrees."""
    for name, value in (("yaw", yaw_deg), ("pitch", pitch_deg)):
        if not math.isfinite(value):
            raise TriganError(f"camera {name} {value}: expected a number of degrees")
    if not 0.0 < pitch_deg < 180.0:
        raise TriganError(f"camera pitch {pitch_deg:g} deg: expected 0 < pitch < 180 (measured from straight "
                          "up, 90 = level)")
    return f"yaw={math.radians(yaw_deg)!r},pitch={math.radians(pitch_deg)!r}"


def class_choices(class_names: Sequence[str], c_dim: int) -> List[str]:
    """The class combo's items: "try all", then each class by its name (an unconditional model: none)."""
    if c_dim <= 0:
        return []
    return [TRY_ALL] + [f"{i}: {class_names[i]}" if i < len(class_names) else f"{i}: class {i}"
                        for i in range(c_dim)]


def class_of(choice: str) -> Optional[int]:
    """The class index of a combo item ("2: snowman" -> 2); None for "try all" or nothing."""
    head = (choice or "").split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


def thumbnail(image: Optional[np.ndarray], side: int = THUMB) -> np.ndarray:
    """RGBA float32 [side, side, 4] in [0, 1] of a uint8 [H, W, 3] picture (grey when there is none),
    the size of the panel's fixed texture: a picture of any size goes into the same texture."""
    out = np.full((side, side, 4), 0.2, dtype=np.float32)
    out[..., 3] = 1.0
    if image is None:
        return out
    resample = Image.NEAREST if max(image.shape[:2]) <= side else Image.BILINEAR   # small models: crisp pixels
    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8)).resize((side, side), resample)
    out[..., :3] = np.asarray(picture, dtype=np.float32) / 255.0
    return out




class InvertPanel:
    """runner: the viewer's JobRunner (start_inversion)."""

    def __init__(self, state: ViewerState, actions: ViewerActions, runner: "JobRunner"):
        self.state, self.actions, self.runner = state, actions, runner
        self.jobs: List = []
        self.job_list = JobList(JOBS, lambda: self.jobs)
        self._shown_job = None            # the job whose thumbnails are on screen
        self._shown_previews = (-1, None)  # (preview count, target) drawn of it
        self._handled = set()             # ids of finished jobs already acted on
        self._classes_for = None          # the (model path, class names) the class combo lists
        self._input = thumbnail(None)
        self._recon = thumbnail(None)

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> None:
        s = self.state.settings
        hint("Fit a photo into the open model: a latent, a camera and a tuned copy of the model "
             "(docs/inversion.md).")
        path_field(IMAGES, "image", extensions=IMAGE_EXTENSIONS, hint_text="a photo; several: separate with ;",
                   description="The photo to invert (several, separated by ;, are inverted one after the other).")
        path_field(MASK, "mask", extensions=IMAGE_EXTENSIONS, hint_text="optional: white = the object",
                   description="Optional, for a single photo: white = the object, black = background (an "
                               "RGBA photo's alpha is used without one).")
        with dpg.group(horizontal=True):
            dpg.add_combo(tag=CAMERA, items=list(CAMERA_CHOICES), default_value=CAMERA_CHOICES[0], width=-160,
                          callback=lambda: self._camera_fields())
            dpg.add_button(label="the view's", tag=FROM_VIEW, callback=self._camera_from_view)
            dpg.add_text("camera")
        with dpg.group(horizontal=True, tag=f"{CAMERA}_fields"):
            dpg.add_input_double(tag=YAW, label="yaw", default_value=0.0, step=0, format="%.1f", width=80)
            dpg.add_input_double(tag=PITCH, label="pitch (degrees; 90 = level)", default_value=90.0, step=0,
                                 format="%.1f", width=80)
        dpg.add_combo(tag=CLASS, label="class", items=[TRY_ALL], default_value=TRY_ALL, width=-90)
        dpg.add_input_int(tag=STEPS, label="latent steps", default_value=DEFAULT_STEPS, min_value=1,
                          max_value=MAX_INVERSION_STEPS, min_clamped=True, max_clamped=True, width=-90)
        dpg.add_input_int(tag=PTI_STEPS, label="tuning steps", default_value=DEFAULT_PTI_STEPS, min_value=0,
                          max_value=MAX_INVERSION_STEPS, min_clamped=True, max_clamped=True, width=-90)
        dpg.add_input_double(tag=PTI_HOLD, label="tuning hold", default_value=DEFAULT_PTI_HOLD, min_value=0.0,
                             max_value=MAX_TUNE_HOLD, min_clamped=True, max_clamped=True, step=0, format="%.2f",
                             width=-90)
        with dpg.group(horizontal=True):
            dpg.add_checkbox(tag=WPLUS, label="W+ (a latent per layer)", default_value=False)
            dpg.add_checkbox(tag=VIDEO, label="video", default_value=True)
            dpg.add_checkbox(tag=MESH, label="mesh", default_value=True)
        path_field(VGG, "VGG16", extensions=WEIGHT_EXTENSIONS, hint_text="optional: vgg16-397923af.pth",
                   description="Optional VGG16 weights (vgg16-397923af.pth) for the perceptual loss; never "
                               "downloaded. Without them the fit uses pixels + SSIM.")
        folder = s.last_export_folder or os.path.join(os.getcwd(), "exports")
        path_field(FOLDER, "folder", default=os.path.join(folder, "inversions"), directory=True,
                   hint_text="where the results are written",
                   description="Where the results are written (NAME.inversion.npz, NAME.pti.ckpt, video, mesh).")
        with dpg.group(horizontal=True):
            dpg.add_button(label="Start inversion", tag=START, callback=self.start)
            dpg.add_button(label="Show result", tag=SHOW, callback=self.show_result)
            dpg.add_button(label="Back to seeds", tag=BACK, callback=lambda: self.actions.show_seeds())
        for tag in (SHOW, BACK):
            dpg.bind_item_theme(tag, greyed_when_disabled())
        for tag, text in TIPS.items():
            tip(tag, text)
        dpg.add_text("", tag=MESSAGE, color=BAD, wrap=0)
        dpg.add_separator()
        with dpg.texture_registry():
            dpg.add_raw_texture(THUMB, THUMB, self._input, format=dpg.mvFormat_Float_rgba, tag=f"{INPUT_IMAGE}_tex")
            dpg.add_raw_texture(THUMB, THUMB, self._recon, format=dpg.mvFormat_Float_rgba, tag=f"{RECON_IMAGE}_tex")
        with dpg.table(tag=THUMBS, header_row=True, policy=dpg.mvTable_SizingFixedFit):
            dpg.add_table_column(label="input")
            dpg.add_table_column(label="reconstruction")
            with dpg.table_row():
                dpg.add_image(f"{INPUT_IMAGE}_tex", tag=INPUT_IMAGE, width=THUMB, height=THUMB)
                dpg.add_image(f"{RECON_IMAGE}_tex", tag=RECON_IMAGE, width=THUMB, height=THUMB)
        dpg.add_text("no inversion yet", tag=STAGE, color=MUTED, wrap=0)
        dpg.add_text("", tag=RESULT, color=GOOD, wrap=0)
        dpg.add_text("", tag=SHOWING, color=MUTED, wrap=0)
        dpg.add_separator()
        self.job_list.build()
        self.restore(s)
        self._camera_fields()

    def _camera_fields(self) -> None:
        dpg.configure_item(f"{CAMERA}_fields", show=dpg.get_value(CAMERA) != CAMERA_CHOICES[0])

    def _camera_from_view(self) -> None:
        pose = self.state.pose
        if pose is None:
            self.set_message("no model is open yet")
            return
        dpg.set_value(CAMERA, CAMERA_CHOICES[1])
        dpg.set_value(YAW, (math.degrees(pose.yaw) + 180.0) % 360.0 - 180.0)
        dpg.set_value(PITCH, math.degrees(pose.pitch))
        self._camera_fields()

    # -- starting --------------------------------------------------------------------------------------
    def set_message(self, text: str) -> None:
        text = (text or "").strip()
        dpg.set_value(MESSAGE, text.splitlines()[0] if text else "")

    def start(self) -> None:
        """Start an inversion of the chosen images into the open model (one red line if it cannot)."""
        try:
            job = self._start_job()
        except (TriganError, OSError, ValueError) as exc:
            self.set_message(str(exc))
            return
        self.set_message("")
        dpg.set_value(RESULT, "")           # the line of the last result until this one ends
        self.jobs.insert(0, job)

    def _start_job(self):
        info = self.state.model_info
        if info is None:
            raise TriganError("no model is open yet")
        images = split_images(dpg.get_value(IMAGES))
        if not images:
            raise TriganError("choose an image to invert: type its path, or pick it with ...")
        for path in images:
            if not os.path.isfile(path):
                raise TriganError(f"{path}: no such image file")
        mask = os.path.expanduser(dpg.get_value(MASK).strip()) or None
        if mask is not None and not os.path.isfile(mask):
            raise TriganError(f"{mask}: no such mask file")
        vgg = os.path.expanduser(dpg.get_value(VGG).strip()) or None
        folder = os.path.expanduser(dpg.get_value(FOLDER).strip())
        if not folder:
            raise TriganError("choose an output folder")
        camera = None
        if dpg.get_value(CAMERA) != CAMERA_CHOICES[0]:
            camera = camera_spec(float(dpg.get_value(YAW)), float(dpg.get_value(PITCH)))
        settings = {"steps": int(dpg.get_value(STEPS)), "pti_steps": int(dpg.get_value(PTI_STEPS)),
                    "tune_hold": float(dpg.get_value(PTI_HOLD)), "wplus": bool(dpg.get_value(WPLUS))}
        # the model in use when seeds are shown (an inverted latent's tuned model is a model too)
        return self.runner.start_inversion(info.file, images, folder, settings=settings, mask_path=mask,
                                           camera=camera, class_index=class_of(dpg.get_value(CLASS)),
                                           vgg_path=vgg, video=bool(dpg.get_value(VIDEO)),
                                           mesh=bool(dpg.get_value(MESH)))

    def show_result(self) -> None:
        """Show the newest finished inversion's result again (after Back to seeds, say)."""
        done = [j for j in self.jobs if j.state == "done" and j.result is not None]
        if not done:
            self.set_message("no finished inversion to show yet")
            return
        self.set_message("")
        self._show(done[0].result)

    def _show(self, outcome) -> None:
        self.actions.show_inversion(str(outcome.model_file), str(outcome.latent_file), outcome.pose)

    # -- every frame ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.job_list.tick()
        self._refresh_classes()
        job = self.jobs[0] if self.jobs else None
        if job is not None:
            self._draw_job(job)
            if job.finished and id(job) not in self._handled:
                self._handled.add(id(job))
                self._finished(job)
        latent = self.state.view.latent_file
        dpg.set_value(SHOWING, f"the view shows the inverted latent {os.path.basename(latent)}" if latent
                      else "the view shows seeds")
        dpg.configure_item(BACK, enabled=latent is not None)
        dpg.configure_item(SHOW, enabled=any(j.state == "done" and j.result is not None for j in self.jobs))

    def _finished(self, job) -> None:
        if job.state == "done" and job.result is not None:
            dpg.set_value(RESULT, job.result.line)
            self._show(job.result)         # the view goes to the result at once
        elif job.state == "failed":
            self.set_message(job.message)    # next to Start, in red: what to fix before trying again

    def _draw_job(self, job) -> None:
        detail = job.detail or {}
        if job.state == "running":
            stage = detail.get("stage")
            text = (f"{detail.get('image', '')}: {stage} step {detail.get('step')}/{detail.get('total')}, "
                    f"PSNR {detail.get('psnr', float('nan')):.1f} dB" if stage else job.message or "starting")
        else:
            text = {"done": "done", "failed": "failed: see the job below",
                    "cancelled": "cancelled: nothing written for the image in progress"}.get(job.state, job.state)
        dpg.set_value(STAGE, text)
        new_job = job is not self._shown_job
        self._shown_job = job
        count, target = self._shown_previews
        if new_job or job.target is not target:
            np.copyto(self._input, thumbnail(job.target))
        if new_job or job.preview_count != count or job.target is not target:
            np.copyto(self._recon, thumbnail(job.preview))
        self._shown_previews = (job.preview_count, job.target)

    def _refresh_classes(self) -> None:
        info = self.state.model_info
        key = None if info is None else (info.file, tuple(info.class_names), info.c_dim)
        if key == self._classes_for:
            return
        self._classes_for = key
        items = class_choices(info.class_names, info.c_dim) if info is not None else []
        dpg.configure_item(CLASS, items=items or ["(unconditional)"], enabled=bool(items))
        if dpg.get_value(CLASS) not in items:
            dpg.set_value(CLASS, items[0] if items else "(unconditional)")

    # -- app hooks -----------------------------------------------------------------------------------
    def any_running(self) -> bool:
        return any(not j.finished for j in self.jobs)

    def inversion_state(self) -> dict:
        """What the state file reports under "inversion" (automation.py): the panel's jobs, newest
        first, with their stage, step, PSNR, preview count and outcome."""
        out = []
        for j in self.jobs:
            outcome = j.result
            out.append({"state": j.state, "progress": j.progress, "message": j.message, "label": j.label,
                        "detail": dict(j.detail or {}), "previews": j.preview_count,
                        "has_target": j.target is not None,
                        "result": None if outcome is None else {
                            "name": outcome.name, "latent_file": str(outcome.latent_file),
                            "model_file": str(outcome.model_file), "class_index": outcome.class_index,
                            "yaw": outcome.pose.yaw, "pitch": outcome.pose.pitch, "line": outcome.line,
                            "outputs": {k: str(v) for k, v in outcome.outputs.items()}}})
        return {"jobs": out, "message": dpg.get_value(MESSAGE), "stage_line": dpg.get_value(STAGE)}

    def store_settings(self, s) -> None:
        s.panels = dict(s.panels or {}, invert={tag: dpg.get_value(tag) for tag in REMEMBERED})

    def restore(self, s) -> None:
        """The last choices (a value of the wrong type is skipped, the widget keeps its default)."""
        saved = (s.panels or {}).get("invert")
        if not isinstance(saved, dict):
            return
        for tag, value in saved.items():
            if tag in REMEMBERED and isinstance(value, type(dpg.get_value(tag))):
                dpg.set_value(tag, value)

    def shutdown(self) -> None:
        for job in self.jobs:
            job.cancel()
