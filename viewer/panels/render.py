"""Render panel: what the image shows (rgb, depth, normals, opacity), at which resolution and
quality, and over which background.

The resolution is a choice among the sizes people use (RESOLUTIONS), not a slider that lands on 123
or 258. A resolution from the settings file that is not one of them (any 64..1024 is valid) is
kept as it is and listed among the choices, so reopening the viewer never changes it behind the
user's back.
"""

from __future__ import annotations

from typing import List

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.common import hint
from trigan.viewer.panels.interface import ViewerActions, ViewerState
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
RESOLUTIONS = (64, 128, 256, 384, 512, 768, 1024)
SAMPLES_STEP = 0.25
LABEL_WIDTH = 90


def resolution_choices(current: int) -> List[str]:
    """The combo's items: RESOLUTIONS, plus `current` in its place when it is another valid size."""
    sizes = set(RESOLUTIONS)
    if MIN_RESOLUTION <= int(current) <= MAX_RESOLUTION:
        sizes.add(int(current))
    return [str(size) for size in sorted(sizes)]


def parse_resolution(text) -> int:
    """A combo item back to pixels (the items are the numbers themselves)."""
    return int(min(max(int(str(text).strip()), MIN_RESOLUTION), MAX_RESOLUTION))


class RenderPanel:
    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions

    def build(self) -> None:
        v = self.state.view
        dpg.add_combo(tag=MODE, label="show", items=list(MODES), default_value=v.mode, width=-LABEL_WIDTH,
                      callback=lambda s, a: self.actions.update_view(mode=a))
        dpg.add_combo(tag=RESOLUTION, label="resolution", items=resolution_choices(v.resolution),
                      default_value=str(v.resolution), width=-LABEL_WIDTH,
                      callback=lambda s, a: self._resolution(a))
        dpg.add_combo(tag=QUALITY, label="quality", items=list(QUALITY_CHOICES), default_value=v.quality,
                      width=-LABEL_WIDTH, callback=lambda s, a: self.actions.update_view(quality=a))
        # An input with step buttons: the multiplier can be typed (a slider hides that behind ctrl+click).
        dpg.add_input_double(tag=SAMPLES, label="samples x", min_value=MIN_SAMPLE_MULTIPLIER,
                             max_value=MAX_SAMPLE_MULTIPLIER, min_clamped=True, max_clamped=True,
                             default_value=v.sample_multiplier, step=SAMPLES_STEP, step_fast=1.0, format="%.2f",
                             width=-LABEL_WIDTH,
                             callback=lambda s, a: self.actions.update_view(sample_multiplier=round(float(a), 2)))
        dpg.add_combo(tag=BACKGROUND, label="background", items=list(BACKGROUNDS), default_value=v.background,
                      width=-LABEL_WIDTH, callback=lambda s, a: self.actions.update_view(background=a))
        hint("Fast previews while the camera or a value moves; at rest the view refines to the chosen "
             f"quality. samples x ({MIN_SAMPLE_MULTIPLIER:g}..{MAX_SAMPLE_MULTIPLIER:g}) scales the exact "
             "render's samples per ray.")

    def _resolution(self, value) -> None:
        try:
            resolution = parse_resolution(value)
        except ValueError:            # not a number (a script's mistake): show what is in use again
            dpg.set_value(RESOLUTION, str(self.state.view.resolution))
            return
        dpg.configure_item(RESOLUTION, items=resolution_choices(resolution))
        dpg.set_value(RESOLUTION, str(resolution))
        self.actions.update_view(resolution=resolution)

    def set_model(self, info) -> None:
        """Offer only the backgrounds the model supports (one with a background network: "model")."""
        choices = list(info.backgrounds)
        dpg.configure_item(BACKGROUND, items=choices)
        if self.state.view.background not in choices:
            dpg.set_value(BACKGROUND, choices[0])
            self.actions.update_view(background=choices[0])

    def sync(self) -> None:
        v = self.state.view
        dpg.configure_item(RESOLUTION, items=resolution_choices(v.resolution))
        for tag, value in ((MODE, v.mode), (RESOLUTION, str(v.resolution)), (QUALITY, v.quality),
                           (SAMPLES, v.sample_multiplier), (BACKGROUND, v.background)):
            dpg.set_value(tag, value)
