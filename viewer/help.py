"""The shortcut sheet: a window listing every mouse action and key of the viewer. F1 or `?` opens it
(F1 again closes it), Esc or its Close button closes it, and so does the "Shortcuts (F1)" button in
Controls > Interface open it. The keys never act while a text field takes the keyboard
(viewer.panels.view.text_entry_active): typing `?` into a field types a question mark.

panel_state() also reports the controls of the whole window that have no tooltip
(viewer.panels.common.controls_without_tooltip), refreshed at most once a second.
"""

from __future__ import annotations

import time
from typing import List, Optional, Sequence, Tuple

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.common import colour, controls_without_tooltip, px, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.panels.view import text_entry_active

WINDOW = "help_window"
OPEN_BUTTON, CLOSE_BUTTON = "help_open_button", "help_close_button"
HEADER = "interface_header"           # the app's Controls > Interface header (the button goes there)
MISSING_REFRESH_S = 1.0
INPUT_COLUMN = 200                    # pixels at scale 1: the longest input ("ctrl+click a step button") fits
# (section, rows of (input, what it does)). Keep in step with docs/viewer.md "Mouse and keys".
SHORTCUTS: Sequence[Tuple[str, Sequence[Tuple[str, str]]]] = (
    ("Mouse over the image", (
        ("left drag", "orbit: across the image's shorter side turns half a circle"),
        ("right or middle drag", "pan: the point under the cursor follows it"),
        ("wheel", "zoom: the radius by a factor 1.1 per step"),
        ("double-click", "back to the model's start view"),
    )),
    ("Keys over the image (or with the View focused)", (
        ("arrow keys", "orbit by 5 degrees"),
        ("+ / -", "zoom one wheel step"),
        ("R", "back to the start view"),
    )),
    ("Keys anywhere in the window", (
        ("F1 or ?", "show or hide this sheet"),
        ("Esc", "close this sheet"),
    )),
    ("Fields", (
        ("Enter", "apply a typed value (a seed, a path); leaving the field applies a seed too"),
        ("ctrl+click a step button", "a larger step (psi 0.25, yaw 45 degrees ...)"),
        ("pointer on a control", "rest it there: the control's tooltip says what it does"),
    )),
)
NOTE = "No key acts while you type in a field: a seed typed with the pointer on the image never moves the camera."


class HelpSheet:
    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions
        self._missing: List[str] = []
        self._missing_at = -1e9
        self._down: dict = {}                # key -> held at the last tick

    # -- building ------------------------------------------------------------------------------------
    def build(self) -> None:
        if dpg.does_item_exist(HEADER):
            dpg.add_button(label="Shortcuts (F1)", tag=OPEN_BUTTON, parent=HEADER, callback=self.open)
            tip(OPEN_BUTTON, "Show every mouse action and key of the viewer (F1 or ? anywhere, not while typing).")
        with dpg.window(tag=WINDOW, label="Shortcuts", show=False, no_saved_settings=True, no_collapse=True,
                        width=px(640), height=px(540)):
            for section, rows in SHORTCUTS:
                dpg.add_text(section, color=colour("MUTED"))
                # the same first-column width in every section's table, so the actions line up
                with dpg.table(header_row=False, policy=dpg.mvTable_SizingFixedFit):
                    dpg.add_table_column(width_fixed=True, init_width_or_weight=px(INPUT_COLUMN))
                    dpg.add_table_column(width_stretch=True)
                    for what, does in rows:
                        with dpg.table_row():
                            dpg.add_text(what)
                            dpg.add_text(does, wrap=0)
                dpg.add_spacer(height=px(4))
            dpg.add_text(NOTE, wrap=0, color=colour("MUTED"))
            dpg.add_button(label="Close (Esc)", tag=CLOSE_BUTTON, callback=self.close)
            tip(CLOSE_BUTTON, "Close this sheet (Esc, or F1 again).")

    # -- open and close ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return dpg.does_item_exist(WINDOW) and bool(dpg.is_item_shown(WINDOW))

    def open(self) -> None:
        vw, vh = dpg.get_viewport_client_width(), dpg.get_viewport_client_height()
        w, h = min(px(640), max(300, vw - 40)), min(px(540), max(200, vh - 80))
        dpg.configure_item(WINDOW, show=True, width=w, height=h, pos=(max(0, (vw - w) // 2), max(0, (vh - h) // 3)))
        dpg.focus_item(WINDOW)

    def close(self) -> None:
        dpg.configure_item(WINDOW, show=False)

    def tick(self, now: float) -> None:
        # A key acts once per press (a held key's repeats do not toggle the sheet on and off).
        down = {key: bool(dpg.is_key_down(key)) for key in (dpg.mvKey_F1, dpg.mvKey_Slash, dpg.mvKey_Escape)}
        pressed = {key for key, is_down in down.items() if is_down and not self._down.get(key)}
        self._down = down
        if not pressed or text_entry_active():
            return
        shift = any(dpg.is_key_down(k) for k in (dpg.mvKey_LShift, dpg.mvKey_RShift, dpg.mvKey_ModShift))
        if dpg.mvKey_F1 in pressed or (shift and dpg.mvKey_Slash in pressed):
            self.close() if self.is_open else self.open()
        elif self.is_open and dpg.mvKey_Escape in pressed:
            self.close()

    # -- for scripts and tests -----------------------------------------------------------------------
    def missing_tooltips(self, now: Optional[float] = None) -> List[str]:
        """controls_without_tooltip(), recomputed at most once a MISSING_REFRESH_S (it walks every item)."""
        now = time.monotonic() if now is None else now
        if now - self._missing_at >= MISSING_REFRESH_S:
            self._missing, self._missing_at = controls_without_tooltip(), now
        return list(self._missing)

    def panel_state(self) -> dict:
        return {"open": self.is_open, "missing_tooltips": self.missing_tooltips()}
