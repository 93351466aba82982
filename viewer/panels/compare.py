"""Compare tab: a grid in the View instead of the single picture: several seeds, classes or psi
values of the open model, two models, or the latest and best snapshots of the open model's run,
side by side at the one camera (they orbit together), each cell labelled, refining cell by cell
(viewer/compare.py renders it).

The app asks `grid_request(base)` every frame for the request to render: None while the grid is
off (or its values are refused: one red line here), else a GridRequest around the single view's
request, so the Render panel's mode, resolution and quality apply to every cell. The values typed
for each kind, the kind and the other model's path are kept in the settings; the grid itself
starts off (a grid of 16 cold latents is a slow first picture).
"""

from __future__ import annotations

from typing import Dict, Optional

import dearpygui.dearpygui as dpg

from trigan.core.errors import TriganError
from trigan.viewer.compare import DEFAULT_VALUES, KIND_LABELS, KINDS, MAX_CELLS, grid_from_values
from trigan.viewer.panels.common import MUTED, colour, hint, path_field, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.render_request import RenderRequest

ENABLED = "compare_enabled"
KIND = "compare_kind"
VALUES = "compare_values"
VALUES_ROW = "compare_values_row"
VALUES_HINT = "compare_values_hint"
MODEL = "compare_model"
MODEL_ROW = "compare_model_row"
MESSAGE = "compare_message"
SETTINGS_KEY = "compare"
MAX_TEXT = 400                      # characters of a restored values text or path (settings are hand-editable)

VALUE_HINTS = {
    "seeds": f"seeds like 0-3 or 1,5,9 (at most {MAX_CELLS})",
    "classes": f"'all' or classes like 0-3 (at most {MAX_CELLS})",
    "psi": f"psi values like 0.5,0.7,1 (at most {MAX_CELLS})",
}
KIND_HINTS = {
    "models": "The open model beside another checkpoint or run folder (its best snapshot, else its latest).",
    "snapshots": "latest.ckpt beside best.ckpt of the training run the open model belongs to.",
}


def restored_choices(stored) -> dict:
    """The Compare tab's saved choices, each checked; a bad value falls back to its default."""
    stored = stored if isinstance(stored, dict) else {}
    kind = stored.get("kind")
    texts = dict(DEFAULT_VALUES)
    for k, text in (stored.get("values") if isinstance(stored.get("values"), dict) else {}).items():
        if k in texts and isinstance(text, str) and len(text) <= MAX_TEXT:
            texts[k] = text
    other = stored.get("other_model")
    return {"kind": kind if kind in KINDS else "seeds", "texts": texts,
            "other_model": other if isinstance(other, str) and len(other) <= MAX_TEXT else ""}


class ComparePanel:
    def __init__(self, state: ViewerState, actions: ViewerActions, runner=None):
        self.state, self.actions, self.runner = state, actions, runner
        choices = restored_choices((self.state.settings.panels or {}).get(SETTINGS_KEY))
        self.kind: str = choices["kind"]
        self.texts: Dict[str, str] = choices["texts"]
        self.other_model: str = choices["other_model"]
        self.enabled = False
        self._key = None                 # what the grid below was made from
        self._grid = None
        self._error: Optional[str] = None

    # -- widgets -----------------------------------------------------------------------------------------
    def build(self) -> None:
        dpg.add_checkbox(tag=ENABLED, label="Show the compare grid in the View", default_value=False,
                         callback=lambda s, a: self.set_enabled(bool(a)))
        tip(ENABLED, "On: the View shows a grid of cells (the values below) at the one camera; they orbit "
                     "together. Off: the single view of the Latent panel's values.")
        dpg.add_combo(tag=KIND, label="compare", items=[KIND_LABELS[k] for k in KINDS],
                      default_value=KIND_LABELS[self.kind], width=-70,
                      callback=lambda s, a: self.set_kind(self._kind_of(a)))
        tip(KIND, "What differs between the cells: seeds, classes (conditional models) or psi values of the "
                  "open model, the open model beside another one, or the latest beside the best snapshot of "
                  "its training run.")
        with dpg.group(tag=VALUES_ROW):
            dpg.add_input_text(tag=VALUES, label="values", default_value=self.texts.get(self.kind, ""), width=-70,
                               on_enter=True,
                               hint=VALUE_HINTS.get(self.kind, ""), callback=lambda s, a: self.enter_values(a))
            tip(VALUES, "The cells' values, applied on Enter or when the field loses focus: seeds like 0-3 or "
                        f"1,5,9; classes 'all' or 0-3; psi 0.5,0.7,1. At most {MAX_CELLS} cells.")
            with dpg.item_handler_registry(tag=f"{VALUES}_handlers"):
                dpg.add_item_deactivated_after_edit_handler(callback=lambda: self.enter_values(dpg.get_value(VALUES)))
            dpg.bind_item_handler_registry(VALUES, f"{VALUES}_handlers")
        with dpg.group(tag=MODEL_ROW):
            path_field(MODEL, "model", default=self.other_model, extensions=(".ckpt", ".pkl"),
                       on_pick=self.set_other_model, hint_text="another checkpoint or run folder",
                       description="The model shown beside the open one (Enter or a pick applies it): a "
                                   "checkpoint, an official .pkl, or a run folder (its best snapshot).")
        dpg.add_text("", tag=VALUES_HINT, color=MUTED, wrap=0)
        dpg.add_text("", tag=MESSAGE, color=MUTED, wrap=0)
        hint("Every cell shares the camera and the Render panel's mode, resolution and quality. Cells show a "
             "preview first, then refine one by one; finished cells are kept, so orbiting back is quick.")
        self._show_kind()

    @staticmethod
    def _kind_of(label: str) -> str:
        return next((k for k in KINDS if KIND_LABELS[k] == label), "seeds")

    def _show_kind(self) -> None:
        dpg.configure_item(VALUES_ROW, show=self.kind in VALUE_HINTS)
        dpg.configure_item(MODEL_ROW, show=self.kind == "models")
        dpg.configure_item(VALUES, hint=VALUE_HINTS.get(self.kind, ""))
        dpg.set_value(VALUES_HINT, KIND_HINTS.get(self.kind, ""))
        dpg.configure_item(VALUES_HINT, show=self.kind in KIND_HINTS)

    # -- what the controls do ------------------------------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        if dpg.does_item_exist(ENABLED) and dpg.get_value(ENABLED) != self.enabled:
            dpg.set_value(ENABLED, self.enabled)
        self._changed()

    def set_kind(self, kind: str) -> None:
        if kind not in KINDS:
            return
        self.kind = kind
        if kind in self.texts and not dpg.is_item_active(VALUES):
            dpg.set_value(VALUES, self.texts[kind])
        self._show_kind()
        self._changed()

    def enter_values(self, text) -> None:
        if self.kind in self.texts:
            self.texts[self.kind] = str(text)[:MAX_TEXT]
        self._changed()

    def set_other_model(self, path) -> None:
        self.other_model = str(path).strip()[:MAX_TEXT]
        self._changed()

    def _changed(self) -> None:
        """New choices: forget the grid (the next frame makes it again) and check them at once, so a
        refused value is said as it is entered, not only once the grid is on."""
        self._key = self._grid = None
        self._error = None
        info = self.state.model_info
        if info is not None:
            try:
                self._make(RenderRequest(model_path=info.path))
            except TriganError as exc:
                self._error = str(exc)
        self._show_message()

    # -- the grid --------------------------------------------------------------------------------------------
    def _make(self, base):
        info = self.state.model_info
        return grid_from_values(base, self.kind, self.texts.get(self.kind, ""),
                                c_dim=0 if info is None else info.c_dim,
                                class_names=() if info is None else tuple(info.class_names),
                                model_file="" if info is None else info.file, other_model=self.other_model)

    def grid_request(self, base):
        """The compare grid's request around `base` (the single view's request), or None: no grid."""
        if not self.enabled:
            return None
        info = self.state.model_info
        key = (base, self.kind, self.texts.get(self.kind), self.other_model,
               None if info is None else (info.path, info.file, info.c_dim, tuple(info.class_names)))
        if key != self._key:
            self._key = key
            try:
                self._grid, self._error = self._make(base), None
            except TriganError as exc:
                self._grid, self._error = None, str(exc)
            self._show_message()
        return self._grid

    def _show_message(self) -> None:
        if not dpg.does_item_exist(MESSAGE):
            return
        if self._error:
            text, tone = f"{self._error}" + (" (the View shows the single view)" if self.enabled else ""), "BAD"
        elif self.enabled and self._grid is not None:
            text, tone = f"{len(self._grid.cells)} cells: {', '.join(self._grid.labels)}", "MUTED"
        else:
            text, tone = "", "MUTED"
        dpg.set_value(MESSAGE, text)
        dpg.configure_item(MESSAGE, color=colour(tone))       # the current theme's (dark or light)

    def tick(self, now: float) -> None:
        pass

    # -- settings, state -----------------------------------------------------------------------------------
    def store_settings(self, s) -> None:
        s.panels[SETTINGS_KEY] = {"kind": self.kind, "values": dict(self.texts), "other_model": self.other_model}

    def panel_state(self) -> dict:
        """For scripts and the GUI tests: the choices, the cells' labels, the message, and the cells
        (label and box in image pixels) of the frame on screen when it is a grid."""
        frame = self.state.last_frame
        shown = None
        if frame is not None and isinstance(frame.stats, dict) and "cells" in frame.stats:
            shown = {"cells": frame.stats["cells"], "grid": frame.stats.get("grid"),
                     "quality": frame.request.quality}
        return {"enabled": self.enabled, "kind": self.kind, "values": self.texts.get(self.kind, ""),
                "other_model": self.other_model,
                "cells": [] if self._grid is None else list(self._grid.labels),
                "message": self._error or (dpg.get_value(MESSAGE) if dpg.does_item_exist(MESSAGE) else ""),
                "shown": shown}

    def shutdown(self) -> None:
        pass
