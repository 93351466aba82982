"""Camera panel: yaw/pitch (degrees here; radians inside), radius and fov as numbers, the front/side/
top/back presets and reset, and a camera drawn from the model's camera distribution (the learned
one of a 3DGP model). The fields follow the camera whenever the mouse or keys move it.

Each number is an input field with - / + step buttons: click into it and type an exact value (it
applies as it is typed), or step it. Values outside what the camera allows are clamped by the
OrbitController (pitch short of the poles, radius within the zoom range, fov FOV_MIN..FOV_MAX) and
the field then shows the clamped value once it is left; yaw is shown as the same direction in
-180..180.
"""

from __future__ import annotations

import math

import dearpygui.dearpygui as dpg

from trigan.core.cameras import Pose
from trigan.viewer.orbit import FOV_MAX, FOV_MIN, PRESETS
from trigan.viewer.panels.common import hint, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState

YAW, PITCH, RADIUS, FOV = "camera_yaw", "camera_pitch", "camera_radius", "camera_fov"
LABEL_WIDTH = 80
# tag -> (label, step, fast step, format, how a typed number becomes an OrbitController.set value)
FIELDS = {
    YAW: ("yaw deg", 5.0, 45.0, "%.1f", lambda v: {"yaw": math.radians(v)}),
    PITCH: ("pitch deg", 5.0, 15.0, "%.1f", lambda v: {"pitch": math.radians(v)}),
    # A radius of 0 or less (on the way to typing 0.5, say) becomes the nearest one the zoom allows.
    RADIUS: ("radius", 0.05, 0.5, "%.3f", lambda v: {"radius": max(v, 1e-9)}),
    FOV: ("fov deg", 1.0, 5.0, "%.1f", lambda v: {"fov": min(max(v, FOV_MIN), FOV_MAX)}),
}


FIELD_TIPS = {
    YAW: "Yaw in degrees, around the vertical axis (0 looks from +X). Type a value or step it by 5 (ctrl+click: 45).",
    PITCH: "Pitch in degrees from straight up: 90 is level, smaller looks down from above. Stops short of the poles.",
    RADIUS: "The camera's distance from the look-at point (the wheel zooms it by 1.1 per step).",
    FOV: f"Field of view in degrees, {FOV_MIN:g}..{FOV_MAX:g}: narrower magnifies, independently of the radius.",
}


def shown_values(pose: Pose) -> dict:
    """What the fields show for a camera pose (degrees for the angles)."""
    return {YAW: math.degrees(pose.yaw), PITCH: math.degrees(pose.pitch), RADIUS: pose.radius, FOV: pose.fov}


class CameraPanel:
    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions
        self._shown_version = -1

    def build(self) -> None:
        for tag, (label, step, fast, fmt, _) in FIELDS.items():
            limits = {"min_value": FOV_MIN, "max_value": FOV_MAX, "min_clamped": True, "max_clamped": True} \
                if tag == FOV else {}
            dpg.add_input_double(tag=tag, label=label, step=step, step_fast=fast, format=fmt, width=-LABEL_WIDTH,
                                 callback=lambda s, a: self.field_changed(s, a), **limits)
        with dpg.group(horizontal=True):
            for name in PRESETS:
                dpg.add_button(label=name, tag=f"camera_{name}", callback=lambda s, a, u: self._preset(u),
                               user_data=name)
            dpg.add_button(label="reset", tag="camera_reset", callback=self._reset)
        dpg.add_button(label="draw from the model's cameras", tag="camera_draw",
                       callback=lambda: self.actions.draw_camera())
        tip("camera_draw", "A camera from the distribution the model was trained with, for this seed and class: "
                           "a 3DGP model's learned camera generator applied to a prior camera, else a prior camera.")
        for tag, text in FIELD_TIPS.items():
            tip(tag, text)
        for name in PRESETS:
            tip(f"camera_{name}", f"Look at the object from the {name} (same radius and fov).")
        tip("camera_reset", "Back to the model's start view (also: double-click the image, or R).")
        hint("Type a number into a field or step it with - / +. Image: left-drag orbits, right/middle-drag "
             "pans, wheel zooms, double-click resets; arrows orbit, +/- zoom, R resets (not while typing in "
             "a field). Pitch is measured from straight up (90 = level).")

    def field_changed(self, tag, value) -> None:
        """A typed or stepped number: move the camera there (the OrbitController clamps it)."""
        if self.state.pose is None or value is None:
            return
        self.actions.move_camera(lambda orbit: orbit.set(**FIELDS[tag][4](float(value))))
        # Show the clamped value even when the camera did not move (say, radius beyond the zoom range).
        self._shown_version = -1

    def _preset(self, name: str) -> None:
        self.actions.move_camera(lambda orbit: orbit.preset(name))

    def _reset(self) -> None:
        self.actions.move_camera(lambda orbit: orbit.reset())

    def tick(self) -> None:
        pose, version = self.state.pose, self.state.pose_version
        if pose is None or version == self._shown_version:
            return
        pending = False
        # Leave a field alone while the user is typing in it (or holding its step button); it is
        # brought in line once they leave it.
        for tag, value in shown_values(pose).items():
            if dpg.is_item_active(tag):
                pending = True
            else:
                dpg.set_value(tag, value)
        self._shown_version = -1 if pending else version
