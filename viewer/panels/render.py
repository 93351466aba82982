"""Render panel: what the image shows (rgb, depth, normals, opacity), at which resolution and
quality, and over which background."""

from __future__ import annotations

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.common import hint
from trigan.viewer.render_request import (
    BACKGROUNDS,
    MAX_RESOLUTION,
    MAX_SAMPLE_MULTIPLIER,
    MIN_RESOLUTION,
    MIN_SAMPLE_MULTIPLIER,
    MODES,
)

MODE, RESOLUTION, QUALITY, SAMPLES, BACKGROUND = ("render_mode", "render_resolution", "render_quality",
                                                  "render_samples", "render_background")
# What a resting view refines to; while anything moves the worker always renders previews.
QUALITY_CHOICES = ("exact", "preview")


class RenderPanel:
    def __init__(self, app):
        self.app = app

    def build(self) -> None:
        v = self.app.view
        dpg.add_combo(tag=MODE, label="show", items=list(MODES), default_value=v.mode, width=-90,
                      callback=lambda s, a: self.app.update_view(mode=a))
        dpg.add_slider_int(tag=RESOLUTION, label="resolution", min_value=MIN_RESOLUTION, max_value=MAX_RESOLUTION,
                           default_value=v.resolution, width=-90, callback=lambda s, a: self._resolution(a))
        dpg.add_combo(tag=QUALITY, label="quality", items=list(QUALITY_CHOICES), default_value=v.quality, width=-90,
                      callback=lambda s, a: self.app.update_view(quality=a))
        dpg.add_slider_float(tag=SAMPLES, label="samples x", min_value=MIN_SAMPLE_MULTIPLIER,
                             max_value=min(4.0, MAX_SAMPLE_MULTIPLIER), default_value=v.sample_multiplier,
                             width=-90, format="%.2f", callback=lambda s, a: self.app.update_view(
                                 sample_multiplier=round(float(a), 2)))
        dpg.add_combo(tag=BACKGROUND, label="background", items=list(BACKGROUNDS), default_value=v.background,
                      width=-90, callback=lambda s, a: self.app.update_view(background=a))
        hint("Fast previews while the camera or a value moves; at rest the view refines to the chosen "
             "quality. samples x scales the exact render's samples per ray.")

    def _resolution(self, value: int) -> None:
        value = int(min(max(value, MIN_RESOLUTION), MAX_RESOLUTION))
        self.app.update_view(resolution=value)

    def set_model(self, info) -> None:
        """Offer only the backgrounds the model supports (one with a background network: "model")."""
        choices = list(info.backgrounds)
        dpg.configure_item(BACKGROUND, items=choices)
        if self.app.view.background not in choices:
            dpg.set_value(BACKGROUND, choices[0])
            self.app.update_view(background=choices[0])

    def sync(self) -> None:
        v = self.app.view
        for tag, value in ((MODE, v.mode), (RESOLUTION, v.resolution), (QUALITY, v.quality),
                           (SAMPLES, v.sample_multiplier), (BACKGROUND, v.background)):
            dpg.set_value(tag, value)
