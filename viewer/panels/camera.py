"""Camera panel: numeric yaw/pitch (degrees here; radians inside), radius and fov, the front/side/
top/back presets and reset, and a camera drawn from the model's camera distribution (the learned
one of a 3DGP model). The fields follow the camera whenever the mouse or keys move it."""

from __future__ import annotations

import math

import dearpygui.dearpygui as dpg

from trigan.viewer.orbit import FOV_MAX, FOV_MIN, PRESETS
from trigan.viewer.panels.common import hint

YAW, PITCH, RADIUS, FOV = "camera_yaw", "camera_pitch", "camera_radius", "camera_fov"


class CameraPanel:
    def __init__(self, app):
        self.app = app
        self._shown_version = -1

    def build(self) -> None:
        dpg.add_drag_float(tag=YAW, label="yaw deg", speed=0.5, format="%.1f", width=-80,
                           callback=lambda s, a: self._set(yaw=math.radians(a)))
        dpg.add_drag_float(tag=PITCH, label="pitch deg", speed=0.5, format="%.1f", width=-80,
                           callback=lambda s, a: self._set(pitch=math.radians(a)))
        dpg.add_drag_float(tag=RADIUS, label="radius", speed=0.005, format="%.3f", width=-80, min_value=0.01,
                           callback=lambda s, a: self._set(radius=a))
        dpg.add_slider_float(tag=FOV, label="fov deg", min_value=FOV_MIN, max_value=min(FOV_MAX, 90.0), width=-80,
                             format="%.1f", callback=lambda s, a: self._set(fov=a))
        with dpg.group(horizontal=True):
            for name in PRESETS:
                dpg.add_button(label=name, tag=f"camera_{name}", callback=lambda s, a, u: self._preset(u),
                               user_data=name)
            dpg.add_button(label="reset", tag="camera_reset", callback=self._reset)
        dpg.add_button(label="draw from the model's cameras", tag="camera_draw",
                       callback=lambda: self.app.draw_camera())
        with dpg.tooltip("camera_draw"):
            dpg.add_text("A camera from the distribution the model was trained with, for this seed and class:\n"
                         "a 3DGP model's learned camera generator applied to a prior camera, else a prior camera.")
        hint("Image: left-drag orbits, right/middle-drag pans, wheel zooms, double-click resets; "
             "arrows orbit, +/- zoom, R resets. Pitch is measured from straight up (90 = level).")

    def _set(self, **values) -> None:
        orbit = self.app.orbit
        if orbit is not None:
            self.app.camera_input(lambda: orbit.set(**values))

    def _preset(self, name: str) -> None:
        if self.app.orbit is not None:
            self.app.camera_input(lambda: self.app.orbit.preset(name))

    def _reset(self) -> None:
        if self.app.orbit is not None:
            self.app.camera_input(self.app.orbit.reset)

    def tick(self) -> None:
        orbit = self.app.orbit
        if orbit is None or orbit.version == self._shown_version:
            return
        s = orbit.state
        # Leave a field alone while the user is dragging or typing in it.
        for tag, value in ((YAW, math.degrees(s.yaw)), (PITCH, math.degrees(s.pitch)), (RADIUS, s.radius),
                           (FOV, s.fov)):
            if not dpg.is_item_active(tag):
                dpg.set_value(tag, value)
        self._shown_version = orbit.version
