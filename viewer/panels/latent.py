"""Latent panel: seed (step and random), truncation psi, class (conditional models; truncation goes
toward that class's mean w), noise mode."""

from __future__ import annotations

import random

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.common import hint
from trigan.viewer.render_request import NOISE_MODES

SEED = "latent_seed"
PSI = "latent_psi"
CLASS = "latent_class"
CLASS_ROW = "latent_class_row"
NOISE = "latent_noise"
MAX_SEED = 2 ** 32 - 1


class LatentPanel:
    def __init__(self, app):
        self.app = app
        self._class_names = []

    def build(self) -> None:
        v = self.app.view
        with dpg.group(horizontal=True):
            # input_int's own - / + buttons step the seed
            dpg.add_input_int(tag=SEED, label="", default_value=v.seed, width=170, min_value=0, max_value=MAX_SEED,
                              min_clamped=True, max_clamped=True, callback=lambda s, a: self._set(seed=a))
            dpg.add_button(label="Random", tag="latent_seed_random",
                           callback=lambda: self._apply_seed(random.randrange(0, 100000)))
            dpg.add_text("seed")
        dpg.add_slider_float(tag=PSI, label="psi", default_value=v.psi, min_value=-0.5, max_value=1.5, width=-70,
                             format="%.2f", callback=lambda s, a: self._set(psi=round(float(a), 4)))
        with dpg.group(tag=CLASS_ROW, show=False):
            dpg.add_combo(tag=CLASS, label="class", items=[], width=-70,
                          callback=lambda s, a: self._set(class_index=self._class_names.index(a)))
            hint("Truncation pulls toward the chosen class's mean latent.")
        dpg.add_combo(tag=NOISE, label="noise", items=list(NOISE_MODES), default_value=v.noise_mode, width=-70,
                      callback=lambda s, a: self._set(noise_mode=a))

    def _set(self, **values) -> None:
        self.app.update_view(**values)

    def _apply_seed(self, seed: int) -> None:
        seed = min(max(int(seed), 0), MAX_SEED)
        dpg.set_value(SEED, seed)
        self._set(seed=seed)

    def step(self, delta: int) -> None:
        self._apply_seed(self.app.view.seed + delta)

    def set_classes(self, names) -> None:
        """A new model: show the class picker for conditional models, keep the class if it exists."""
        self._class_names = list(names)
        dpg.configure_item(CLASS_ROW, show=bool(names))
        dpg.configure_item(CLASS, items=self._class_names)
        if names:
            index = self.app.view.class_index
            index = index if index is not None and 0 <= index < len(names) else 0
            dpg.set_value(CLASS, self._class_names[index])
            self._set(class_index=index)
        else:
            self._set(class_index=None)

    def sync(self) -> None:
        """Show the app's values (after settings were restored or a script changed them)."""
        v = self.app.view
        dpg.set_value(SEED, v.seed)
        dpg.set_value(PSI, v.psi)
        dpg.set_value(NOISE, v.noise_mode)
        if self._class_names and v.class_index is not None and v.class_index < len(self._class_names):
            dpg.set_value(CLASS, self._class_names[v.class_index])
