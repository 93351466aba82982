"""Controls > Interface: the UI scale (text and widgets larger for high-DPI screens) and the colour
theme (dark or light). Both apply at once, are saved in the settings (ViewerSettings.ui_scale and
.theme) and are applied again at the next start, from the first frame drawn.

How a scale applies (DearPyGui has one built-in bitmap font, 13 px):
- the font: dpg.set_global_font_scale(scale);
- spacing and padding: the app's global theme carries ImGui's default style sizes times the scale;
- widgets sized in pixels (a field's width, the room a negative width leaves for its label): every
  control's and progress bar's width is set to its width at scale 1 times the scale, so a label
  still fits beside its field. Widgets made later size themselves with common.px().

How a theme applies: the light theme is ImGui's own light style (StyleColorsLight) as the global
theme. Message colours that panels set per text (common.MUTED, GOOD, BAD, CANCELLED) cannot be
themed, so every text with one of them gets its light twin (common.PALETTES); texts made later are
swept once a second while the light theme is on, and common.colour() hands new code the current
theme's colour.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import dearpygui.dearpygui as dpg

from trigan.viewer.panels.common import CONTROL_TYPES, hint, recolour_texts, set_ui, tip
from trigan.viewer.panels.interface import ViewerActions, ViewerState
from trigan.viewer.settings import THEMES, UI_SCALE_MAX, UI_SCALE_MIN

SCALE, THEME = "appearance_scale", "appearance_theme"
GLOBAL_THEME = "appearance_global_theme"
SCALE_STEP = 0.25
SWEEP_SECONDS = 1.0              # light theme: texts coloured since the last sweep get their light twin
_RESIZED = CONTROL_TYPES | {"mvAppItemType::mvProgressBar"}
# ImGui's default style sizes (what DearPyGui draws with at scale 1), scaled with the text.
STYLE_SIZES = {
    "mvStyleVar_WindowPadding": (8, 8), "mvStyleVar_FramePadding": (4, 3), "mvStyleVar_ItemSpacing": (8, 4),
    "mvStyleVar_ItemInnerSpacing": (4, 4), "mvStyleVar_IndentSpacing": (21,), "mvStyleVar_ScrollbarSize": (14,),
    "mvStyleVar_GrabMinSize": (12,), "mvStyleVar_CellPadding": (4, 2),
}


def _rgba(r, g, b, a=1.0) -> Tuple[int, int, int, int]:
    return tuple(int(round(255 * c)) for c in (r, g, b, a))


# Dear ImGui's StyleColorsLight (imgui_draw.cpp, MIT licence), as 0..255 RGBA.
LIGHT_COLOURS = {
    "mvThemeCol_Text": _rgba(0, 0, 0), "mvThemeCol_TextDisabled": _rgba(0.60, 0.60, 0.60),
    "mvThemeCol_WindowBg": _rgba(0.94, 0.94, 0.94), "mvThemeCol_ChildBg": _rgba(0, 0, 0, 0),
    "mvThemeCol_PopupBg": _rgba(1, 1, 1, 0.98), "mvThemeCol_Border": _rgba(0, 0, 0, 0.30),
    "mvThemeCol_BorderShadow": _rgba(0, 0, 0, 0), "mvThemeCol_FrameBg": _rgba(1, 1, 1),
    "mvThemeCol_FrameBgHovered": _rgba(0.26, 0.59, 0.98, 0.40), "mvThemeCol_FrameBgActive": _rgba(0.26, 0.59, 0.98, 0.67),
    "mvThemeCol_TitleBg": _rgba(0.96, 0.96, 0.96), "mvThemeCol_TitleBgActive": _rgba(0.82, 0.82, 0.82),
    "mvThemeCol_TitleBgCollapsed": _rgba(1, 1, 1, 0.51), "mvThemeCol_MenuBarBg": _rgba(0.86, 0.86, 0.86),
    "mvThemeCol_ScrollbarBg": _rgba(0.98, 0.98, 0.98, 0.53), "mvThemeCol_ScrollbarGrab": _rgba(0.69, 0.69, 0.69, 0.80),
    "mvThemeCol_ScrollbarGrabHovered": _rgba(0.49, 0.49, 0.49, 0.80),
    "mvThemeCol_ScrollbarGrabActive": _rgba(0.49, 0.49, 0.49), "mvThemeCol_CheckMark": _rgba(0.26, 0.59, 0.98),
    "mvThemeCol_SliderGrab": _rgba(0.26, 0.59, 0.98, 0.78), "mvThemeCol_SliderGrabActive": _rgba(0.46, 0.54, 0.80, 0.60),
    "mvThemeCol_Button": _rgba(0.26, 0.59, 0.98, 0.40), "mvThemeCol_ButtonHovered": _rgba(0.26, 0.59, 0.98),
    "mvThemeCol_ButtonActive": _rgba(0.06, 0.53, 0.98), "mvThemeCol_Header": _rgba(0.26, 0.59, 0.98, 0.31),
    "mvThemeCol_HeaderHovered": _rgba(0.26, 0.59, 0.98, 0.80), "mvThemeCol_HeaderActive": _rgba(0.26, 0.59, 0.98),
    "mvThemeCol_Separator": _rgba(0.39, 0.39, 0.39, 0.62), "mvThemeCol_SeparatorHovered": _rgba(0.14, 0.44, 0.80, 0.78),
    "mvThemeCol_SeparatorActive": _rgba(0.14, 0.44, 0.80), "mvThemeCol_ResizeGrip": _rgba(0.35, 0.35, 0.35, 0.17),
    "mvThemeCol_ResizeGripHovered": _rgba(0.26, 0.59, 0.98, 0.67),
    "mvThemeCol_ResizeGripActive": _rgba(0.26, 0.59, 0.98, 0.95),
    "mvThemeCol_Tab": _rgba(0.76, 0.80, 0.84, 0.93), "mvThemeCol_TabHovered": _rgba(0.26, 0.59, 0.98, 0.80),
    "mvThemeCol_TabActive": _rgba(0.60, 0.73, 0.88), "mvThemeCol_TabUnfocused": _rgba(0.92, 0.93, 0.94, 0.99),
    "mvThemeCol_TabUnfocusedActive": _rgba(0.74, 0.82, 0.91), "mvThemeCol_PlotLines": _rgba(0.39, 0.39, 0.39),
    "mvThemeCol_PlotLinesHovered": _rgba(1.0, 0.43, 0.35), "mvThemeCol_PlotHistogram": _rgba(0.90, 0.70, 0.0),
    "mvThemeCol_PlotHistogramHovered": _rgba(1.0, 0.45, 0.0), "mvThemeCol_TableHeaderBg": _rgba(0.78, 0.87, 0.98),
    "mvThemeCol_TableBorderStrong": _rgba(0.57, 0.57, 0.64), "mvThemeCol_TableBorderLight": _rgba(0.68, 0.68, 0.74),
    "mvThemeCol_TableRowBg": _rgba(0, 0, 0, 0), "mvThemeCol_TableRowBgAlt": _rgba(0.30, 0.30, 0.30, 0.09),
    "mvThemeCol_TextSelectedBg": _rgba(0.26, 0.59, 0.98, 0.35), "mvThemeCol_DragDropTarget": _rgba(0.26, 0.59, 0.98, 0.95),
}


def build_global_theme(theme: str, scale: float) -> int:
    """The app's global theme: the light colours (dark: DearPyGui's own) and the style sizes times
    the scale. Replaces the one made before."""
    if dpg.does_item_exist(GLOBAL_THEME):
        dpg.delete_item(GLOBAL_THEME)
    with dpg.theme(tag=GLOBAL_THEME):
        with dpg.theme_component(dpg.mvAll):
            if theme == "light":
                for name, rgba in LIGHT_COLOURS.items():
                    dpg.add_theme_color(getattr(dpg, name), rgba, category=dpg.mvThemeCat_Core)
            for name, size in STYLE_SIZES.items():
                dpg.add_theme_style(getattr(dpg, name), *(round(v * scale) for v in size),
                                    category=dpg.mvThemeCat_Core)
    return dpg.get_alias_id(GLOBAL_THEME)


class AppearancePanel:
    def __init__(self, state: ViewerState, actions: ViewerActions, runner=None):
        self.state, self.actions, self.runner = state, actions, runner
        s = state.settings
        self.scale = min(max(float(s.ui_scale), UI_SCALE_MIN), UI_SCALE_MAX)
        self.theme = s.theme if s.theme in THEMES else "dark"
        self._applied: Optional[Tuple[float, str]] = None    # (scale, theme) on screen
        self._widths: Dict[int, float] = {}                   # item -> its width at scale 1
        self._next_sweep = 0.0

    def build(self) -> None:
        with dpg.group(horizontal=True):
            # typed (applied on Enter) or stepped by SCALE_STEP with the - / + buttons
            dpg.add_input_float(tag=SCALE, default_value=self.scale, min_value=UI_SCALE_MIN, max_value=UI_SCALE_MAX,
                                min_clamped=True, max_clamped=True, step=SCALE_STEP, step_fast=2 * SCALE_STEP,
                                format="%.2f", width=120, on_enter=True, callback=lambda s, a: self.set_scale(a))
            dpg.add_text("UI scale")
        tip(SCALE, f"How large text and widgets are drawn, {UI_SCALE_MIN:g} to {UI_SCALE_MAX:g} (1 = normal); for "
                   f"high-DPI screens. Type a value and press Enter, or step it by {SCALE_STEP:g}. Applies at once "
                   "and is saved.")
        with dpg.group(horizontal=True):
            dpg.add_radio_button(tag=THEME, items=list(THEMES), default_value=self.theme, horizontal=True,
                                 callback=lambda s, a: self.set_theme(a))
            dpg.add_text("theme")
        tip(THEME, "Dark or light colours for the whole window. Applies at once and is saved.")
        hint("F1 or ? shows every mouse action and key.")

    # -- changes -------------------------------------------------------------------------------------
    def set_scale(self, scale: Optional[float]) -> None:
        """A new scale (held within UI_SCALE_MIN..UI_SCALE_MAX; to 0.01, as the field shows it)."""
        if scale is not None and scale == scale:                 # not None, not NaN
            self.scale = round(min(max(float(scale), UI_SCALE_MIN), UI_SCALE_MAX), 2)

    def set_theme(self, theme: str) -> None:
        if theme in THEMES:
            self.theme = theme

    def _apply(self) -> None:
        old_scale = self._applied[0] if self._applied is not None else 1.0
        dpg.set_global_font_scale(self.scale)
        dpg.bind_theme(build_global_theme(self.theme, self.scale))
        self._resize_widgets(old_scale)
        set_ui(theme=self.theme, scale=self.scale)
        recolour_texts(self.theme)
        self._applied = (self.scale, self.theme)

    def _resize_widgets(self, old_scale: float) -> None:
        """Every control's pixel width (negative: the room left for its label) times the new scale."""
        if self.scale == old_scale:
            return
        alive = set()
        for item in dpg.get_all_items():
            if dpg.get_item_type(item) not in _RESIZED:
                continue
            width = dpg.get_item_configuration(item).get("width") or 0
            if width == 0 and item not in self._widths:
                continue                         # sized by ImGui itself: it follows the font
            alive.add(item)
            base = self._widths.setdefault(item, width / old_scale)
            dpg.configure_item(item, width=int(round(base * self.scale)))
        self._widths = {item: w for item, w in self._widths.items() if item in alive}

    # -- app hooks -----------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        # The first tick comes after the whole window is built: the restored choices apply to
        # every panel before the first frame is drawn.
        if self._applied != (self.scale, self.theme):
            self._apply()
            self._next_sweep = now + SWEEP_SECONDS
        elif self.theme != "dark" and now >= self._next_sweep:
            recolour_texts(self.theme)
            self._next_sweep = now + SWEEP_SECONDS

    def store_settings(self, s) -> None:
        s.ui_scale, s.theme = float(self.scale), self.theme

    def panel_state(self) -> dict:
        applied = self._applied or (None, None)
        return {"ui_scale": self.scale, "theme": self.theme, "applied_scale": applied[0], "applied_theme": applied[1],
                "font_scale": round(float(dpg.get_global_font_scale()), 4)}

    def shutdown(self) -> None:
        pass
