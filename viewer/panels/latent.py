"""Latent panel: seed (typed, stepped with - / +, or random), truncation psi, class (conditional
models; truncation goes toward that class's mean w), noise mode.

The seed is a text field that we parse ourselves: DearPyGui's input_int holds an int32, so its
max_value 2**32 - 1 becomes -1 and every step or typed value turns into -1. A seed that does not
parse, or lies outside 0..MAX_SEED, is refused with one line beside the field; the last good seed
stays in use until a valid one is entered (which removes the message at once).
"""

from __future__ import annotations

import os
import random

import dearpygui.dearpygui as dpg

from trigan.core.errors import TriganError
from trigan.core.limits import MAX_SEED  # RenderRequest's range too
from trigan.viewer.panels.common import BAD, hint, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.render_request import NOISE_MODES

SEED = "latent_seed"
SEED_MINUS, SEED_PLUS, SEED_RANDOM = "latent_seed_minus", "latent_seed_plus", "latent_seed_random"
SEED_MESSAGE, SEED_LABEL = "latent_seed_message", "latent_seed_label"
INVERTED_NOTE = "latent_inverted_note"    # shown while the view shows an inverted latent, not the seed
PSI = "latent_psi"
CLASS = "latent_class"
CLASS_ROW = "latent_class_row"
NOISE = "latent_noise"
RANDOM_SEED_LIMIT = 100_000         # Random draws below this: short seeds are easy to note down
PSI_MIN, PSI_MAX, PSI_STEP = -1.0, 2.0, 0.05
LABEL_WIDTH = 70                    # room right of the fields for their labels ("noise", "class")


def parse_seed(text) -> int:
    """The seed a person typed: a whole number 0..MAX_SEED (spaces around it are fine).
    Anything else raises TriganError with one line naming the value and the range."""
    raw = str(text).strip()
    expected = f"expected a whole number from 0 to {MAX_SEED}"
    if not raw.isdigit() or not raw.isascii():           # no sign, no point, no exponent, no letters
        raise TriganError(f"seed {raw!r}: {expected}")
    seed = int(raw)
    if seed > MAX_SEED:
        raise TriganError(f"seed {raw}: {expected}")
    return seed


def stepped_seed(seed: int, delta: int) -> int:
    """seed + delta, held within 0..MAX_SEED (- at 0 stays 0, + at MAX_SEED stays there)."""
    return min(max(int(seed) + int(delta), 0), MAX_SEED)


def inverted_note(latent_file) -> str:
    """The line under the seed while an inverted latent is shown ("" while the view shows seeds)."""
    if not latent_file:
        return ""
    name = os.path.basename(str(latent_file)).split(".inversion")[0]
    return (f"The view shows the inverted latent {name}, not this seed. A new seed, psi or class "
            f"goes back to seeds.")


class LatentPanel:
    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions
        self._seed_shown = state.view.seed     # the seed the field last showed (tick)
        self._class_names = []

    def build(self) -> None:
        v = self.state.view
        with dpg.group(horizontal=True):
            # decimal: the field takes only digits (and + - * /, which parse_seed refuses with a message).
            dpg.add_input_text(tag=SEED, default_value=str(v.seed), width=110, decimal=True, on_enter=True,
                               callback=lambda s, a: self.enter_seed(a))
            dpg.add_button(label="-", tag=SEED_MINUS, width=22, callback=lambda: self.step(-1))
            dpg.add_button(label="+", tag=SEED_PLUS, width=22, callback=lambda: self.step(1))
            dpg.add_button(label="Random", tag=SEED_RANDOM,
                           callback=lambda: self._apply_seed(random.randrange(RANDOM_SEED_LIMIT)))
            dpg.add_text("seed", tag=SEED_LABEL)
        # A typed seed counts on Enter and also when the field loses focus after an edit.
        with dpg.item_handler_registry(tag=f"{SEED}_handlers"):
            dpg.add_item_deactivated_after_edit_handler(callback=lambda: self.enter_seed(dpg.get_value(SEED)))
        dpg.bind_item_handler_registry(SEED, f"{SEED}_handlers")
        dpg.add_text("", tag=SEED_MESSAGE, color=BAD, wrap=0, show=False)
        dpg.add_text("", tag=INVERTED_NOTE, wrap=0, show=False)
        # An input with step buttons rather than a slider: a value can be typed, and ctrl+click is hidden.
        dpg.add_input_double(tag=PSI, label="psi", default_value=v.psi, min_value=PSI_MIN, max_value=PSI_MAX,
                             min_clamped=True, max_clamped=True, step=PSI_STEP, step_fast=0.25, format="%.2f",
                             width=-LABEL_WIDTH, callback=lambda s, a: self._set(psi=round(float(a), 4)))
        tip(SEED, "The seed of the latent: a whole number 0..4294967295. Type it and press Enter (or leave "
                  "the field); a value that is not one is refused beside the field.")
        tip(SEED_MINUS, "The previous seed (seed - 1).")
        tip(SEED_PLUS, "The next seed (seed + 1).")
        tip(SEED_RANDOM, f"A random seed below {RANDOM_SEED_LIMIT}.")
        tip(PSI, f"Truncation psi, {PSI_MIN:g}..{PSI_MAX:g}: 1 = none, 0.7 is usual, 0 = the mean latent. "
                 f"Type a value or step it by {PSI_STEP:g} (ctrl+click: by 0.25).")
        with dpg.group(tag=CLASS_ROW, show=False):
            dpg.add_combo(tag=CLASS, label="class", items=[], width=-LABEL_WIDTH,
                          callback=lambda s, a: self._set(class_index=self._class_names.index(a)))
            hint("Truncation pulls toward the chosen class's mean latent.")
        dpg.add_combo(tag=NOISE, label="noise", items=list(NOISE_MODES), default_value=v.noise_mode,
                      width=-LABEL_WIDTH, callback=lambda s, a: self._set(noise_mode=a))
        tip(CLASS, "The class of a conditional model (by name where the model names its classes).")
        tip(NOISE, "The generator's per-layer noise: const (fixed maps, the same picture every time), random "
                   "(new noise each render) or none.")

    def _set(self, **values) -> None:
        self.actions.update_view(**values)

    # -- the seed ------------------------------------------------------------------------------------
    def enter_seed(self, text) -> None:
        """A typed seed: use it, or refuse it with a message and keep the last good one."""
        try:
            seed = parse_seed(text)
        except TriganError as exc:
            self._seed_message(f"{exc} (still using {self.state.view.seed})")
            return
        self._apply_seed(seed)

    def _apply_seed(self, seed: int) -> None:
        seed = stepped_seed(seed, 0)
        if not dpg.is_item_active(SEED):        # never rewrite the text under a person's cursor
            dpg.set_value(SEED, str(seed))
        self._seed_message(None)
        self._set(seed=seed)

    def _seed_message(self, text) -> None:
        dpg.set_value(SEED_MESSAGE, text or "")
        dpg.configure_item(SEED_MESSAGE, show=bool(text))

    def step(self, delta: int) -> None:
        self._apply_seed(stepped_seed(self.state.view.seed, delta))

    def seed_message(self) -> str:
        return dpg.get_value(SEED_MESSAGE) or ""

    # -- classes and restored values ------------------------------------------------------------------
    def set_classes(self, names) -> None:
        """A new model: show the class picker for conditional models, keep the class if it exists."""
        self._class_names = list(names)
        dpg.configure_item(CLASS_ROW, show=bool(names))
        dpg.configure_item(CLASS, items=self._class_names)
        if names:
            index = self.state.view.class_index
            index = index if index is not None and 0 <= index < len(names) else 0
            dpg.set_value(CLASS, self._class_names[index])
            self._set(class_index=index)
        else:
            self._set(class_index=None)

    def tick(self) -> None:
        """Follow a seed changed from elsewhere (the Interpolate tab's seed sweep): the field shows it,
        unless it is being typed into. Only a change of the seed in use rewrites the field, so a
        refused text stays for the person to correct. While an inverted latent is on screen the seed
        field is not what the view shows: a line under it says so, and what a new seed does."""
        self._show_inverted_note(self.state.view.latent_file)
        seed = self.state.view.seed
        if seed != self._seed_shown and not dpg.is_item_active(SEED):
            self._seed_shown = seed
            if dpg.get_value(SEED) != str(seed):
                dpg.set_value(SEED, str(seed))
                self._seed_message(None)

    def _show_inverted_note(self, latent_file) -> None:
        text = inverted_note(latent_file)
        if dpg.get_value(INVERTED_NOTE) != text:
            dpg.set_value(INVERTED_NOTE, text)
            dpg.configure_item(INVERTED_NOTE, show=bool(text))

    def sync(self) -> None:
        """Show the viewer's values (after settings were restored or a script changed them)."""
        v = self.state.view
        dpg.set_value(SEED, str(v.seed))
        self._seed_message(None)
        dpg.set_value(PSI, v.psi)
        dpg.set_value(NOISE, v.noise_mode)
        if self._class_names and v.class_index is not None and v.class_index < len(self._class_names):
            dpg.set_value(CLASS, self._class_names[v.class_index])
