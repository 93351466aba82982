"""Render panel: what the image shows (rgb, depth, normals, opacity), at which resolution and
quality, and over which background.

Depth and opacity pictures are coloured by the view (viewer/depth_display.py): the colormap,
normalise (the range from the frame), invert and a typed min/max (depth) live here, shown while the
mode is depth or opacity, and are saved in the settings (`panels["display"]`). Changing them
re-colours the frame on screen; nothing is rendered again.

The resolution is a choice among the sizes people use (RESOLUTIONS), not a slider that lands on 123
or 258. A resolution from the settings file that is not one of them (any 64..1024 is valid) is
kept as it is and listed among the choices, so reopening the viewer never changes it behind the
user's back.
"""

from __future__ import annotations

from typing import List

import dearpygui.dearpygui as dpg

from trigan.core.colormaps import COLORMAPS
from trigan.core.errors import TriganError
from trigan.viewer.depth_display import GEOMETRY_MODES, DisplayValues
from trigan.viewer.panels.common import BAD, hint, tip
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
# How depth / opacity are coloured (ImageView.display): shown while the mode is one of those.
DISPLAY_GROUP, COLORMAP, NORMALIZE, INVERT = ("display_group", "display_colormap", "display_normalize",
                                              "display_invert")
RANGE_GROUP, RANGE_MIN, RANGE_MAX, DISPLAY_MESSAGE = ("display_range", "display_min", "display_max",
                                                      "display_message")
SETTINGS_KEY = "display"


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
                      callback=lambda s, a: self._mode(a))
        tip(MODE, "What the image shows: the colours (rgb), the distance to the surface (depth), the surface "
                  "normals, or how opaque each pixel is (opacity).")
        self._build_display()
        dpg.add_combo(tag=RESOLUTION, label="resolution", items=resolution_choices(v.resolution),
                      default_value=str(v.resolution), width=-LABEL_WIDTH,
                      callback=lambda s, a: self._resolution(a))
        tip(RESOLUTION, "Pixels a side of the rendered image. Larger is sharper and slower.")
        dpg.add_combo(tag=QUALITY, label="quality", items=list(QUALITY_CHOICES), default_value=v.quality,
                      width=-LABEL_WIDTH, callback=lambda s, a: self.actions.update_view(quality=a))
        tip(QUALITY, "What a resting view refines to: exact (every ray marched fully) or preview (fast). While "
                     "the camera moves the view always shows previews.")
        # An input with step buttons: the multiplier can be typed (a slider hides that behind ctrl+click).
        dpg.add_input_double(tag=SAMPLES, label="samples x", min_value=MIN_SAMPLE_MULTIPLIER,
                             max_value=MAX_SAMPLE_MULTIPLIER, min_clamped=True, max_clamped=True,
                             default_value=v.sample_multiplier, step=SAMPLES_STEP, step_fast=1.0, format="%.2f",
                             width=-LABEL_WIDTH,
                             callback=lambda s, a: self.actions.update_view(sample_multiplier=round(float(a), 2)))
        tip(SAMPLES, f"Scales the exact render's samples per ray ({MIN_SAMPLE_MULTIPLIER:g}..{MAX_SAMPLE_MULTIPLIER:g}):"
                     " more samples, finer detail, slower.")
        dpg.add_combo(tag=BACKGROUND, label="background", items=list(BACKGROUNDS), default_value=v.background,
                      width=-LABEL_WIDTH, callback=lambda s, a: self.actions.update_view(background=a))
        tip(BACKGROUND, "What shows behind the object: white, black, or the model's own background.")
        hint("Fast previews while the camera or a value moves; at rest the view refines to the chosen "
             f"quality. samples x ({MIN_SAMPLE_MULTIPLIER:g}..{MAX_SAMPLE_MULTIPLIER:g}) scales the exact "
             "render's samples per ray.")

    # -- depth / opacity display -----------------------------------------------------------------------
    def _display(self) -> DisplayValues:
        return self.state.display or DisplayValues()

    def _build_display(self) -> None:
        restored = DisplayValues.from_dict(self.state.settings.panels.get(SETTINGS_KEY))
        self.actions.set_display(**restored.as_dict())
        d = restored
        with dpg.group(tag=DISPLAY_GROUP, show=self.state.view.mode in GEOMETRY_MODES):
            dpg.add_combo(tag=COLORMAP, label="colormap", items=list(COLORMAPS), default_value=d.colormap,
                          width=-LABEL_WIDTH, callback=lambda s, a: self._set_display(colormap=a))
            tip(COLORMAP, "The colours of depth and opacity: gray, viridis or turbo. The legend under the image "
                          "shows the range they span.")
            with dpg.group(horizontal=True):
                dpg.add_checkbox(tag=NORMALIZE, label="normalise", default_value=d.normalize,
                                 callback=lambda s, a: self._normalize(bool(a)))
                tip(NORMALIZE, "Stretch the colours over the depth of the visible object (opacity: over its "
                               "smallest..largest value). Off: depth uses the typed min/max.")
                dpg.add_checkbox(tag=INVERT, label="invert", default_value=d.invert,
                                 callback=lambda s, a: self._set_display(invert=bool(a)))
                tip(INVERT, "Swap the ends of the colormap (normally near and opaque are the bright end).")
            with dpg.group(tag=RANGE_GROUP, horizontal=True):
                for tag, label, value in ((RANGE_MIN, "min", d.range_min), (RANGE_MAX, "max", d.range_max)):
                    dpg.add_input_double(tag=tag, label=label, default_value=0.0 if value is None else value,
                                         step=0, format="%.4f", width=90, on_enter=True,
                                         callback=lambda s, a: self._typed_range())
                tip(RANGE_MIN, "The depth (world units) drawn at the near end of the colormap when normalise is off. "
                               "Press Enter to apply; min must be below max.")
                tip(RANGE_MAX, "The depth (world units) drawn at the far end of the colormap when normalise is off. "
                               "Press Enter to apply; min must be below max.")
            dpg.add_text("", tag=DISPLAY_MESSAGE, color=BAD, wrap=0, show=False)
        self._sync_display()

    def _mode(self, mode) -> None:
        self.actions.update_view(mode=mode)
        self._sync_display()

    def _set_display(self, **values) -> bool:
        """Hand new display values to the view; a refused one leaves one red line here."""
        try:
            DisplayValues(**{**self._display().as_dict(), **values})      # one-line refusal before the view sees it
            self.actions.set_display(**values)
        except TriganError as exc:
            self._message(str(exc))
            return False
        self._message("")
        self._sync_display()
        return True

    @staticmethod
    def _message(text: str) -> None:
        """A refused display value in one red line under the controls (hidden while there is none)."""
        dpg.set_value(DISPLAY_MESSAGE, text)
        dpg.configure_item(DISPLAY_MESSAGE, show=bool(text))

    def _normalize(self, on: bool) -> None:
        # Off: the view keeps the range it was showing (ImageView.set_display), ready to be edited.
        self._set_display(normalize=on)

    def _typed_range(self) -> None:
        low, high = float(dpg.get_value(RANGE_MIN)), float(dpg.get_value(RANGE_MAX))
        if not low < high:
            self._message(f"depth range {low:g}..{high:g}: expected min < max")
            return
        self._set_display(normalize=False, range_min=low, range_max=high)

    def _sync_display(self) -> None:
        """The display controls from the view's values; shown for depth and opacity only, the range
        for depth while normalise is off."""
        mode = self.state.view.mode
        d = self._display()
        dpg.configure_item(DISPLAY_GROUP, show=mode in GEOMETRY_MODES)
        # the typed range only matters with normalise off (turning it off keeps the range on screen)
        dpg.configure_item(RANGE_GROUP, show=mode == "depth" and not d.normalize)
        dpg.set_value(COLORMAP, d.colormap)
        dpg.set_value(NORMALIZE, d.normalize)
        dpg.set_value(INVERT, d.invert)
        for tag, value in ((RANGE_MIN, d.range_min), (RANGE_MAX, d.range_max)):
            if value is not None:
                dpg.set_value(tag, value)

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

    def store_settings(self, s) -> None:
        """The display choices (colormap ...) go with the settings; the render values are ViewValues."""
        s.panels[SETTINGS_KEY] = self._display().as_dict()

    def sync(self) -> None:
        v = self.state.view
        dpg.configure_item(RESOLUTION, items=resolution_choices(v.resolution))
        for tag, value in ((MODE, v.mode), (RESOLUTION, str(v.resolution)), (QUALITY, v.quality),
                           (SAMPLES, v.sample_multiplier), (BACKGROUND, v.background)):
            dpg.set_value(tag, value)
        self._sync_display()
