"""The viewer's look, shared by every panel and the file picker: the message colours of the dark and
light themes, the UI scale in use, tooltips, and the check that finds controls without one.
(A module of its own so that the file picker, which viewer/panels/common.py builds on, can use it.)"""

from __future__ import annotations

from typing import List, Optional, Tuple

import dearpygui.dearpygui as dpg

# The dark theme's message colours. Panels pass them as `color=` to texts; a light theme cannot
# restyle such a colour, so AppearancePanel swaps each of them for its PALETTES["light"] twin on
# every text (recolour_texts), and code that colours a text later asks colour(name) for the
# current theme's value.
MUTED = (150, 150, 150)
GOOD = (120, 210, 120)
BAD = (255, 110, 100)
CANCELLED = (235, 160, 60)          # orange: stopped on request, neither done (green) nor failed (red)
PALETTES = {
    "dark": {"MUTED": MUTED, "GOOD": GOOD, "BAD": BAD, "CANCELLED": CANCELLED},
    # darker twins that keep at least 4.5:1 contrast on the light theme's 240-grey background
    "light": {"MUTED": (90, 90, 90), "GOOD": (20, 115, 20), "BAD": (185, 25, 20), "CANCELLED": (165, 80, 0)},
}
# The progress bar's fill per finished state; a running bar keeps the theme's colour.
BAR_FILL = {"done": (70, 150, 70), "failed": (170, 60, 55), "cancelled": (110, 100, 90)}
_UI = {"theme": "dark", "scale": 1.0}       # what AppearancePanel applied last (set_ui)


def set_ui(theme: Optional[str] = None, scale: Optional[float] = None) -> None:
    """Record the theme and scale in use (AppearancePanel), for colour() and px()."""
    if theme is not None:
        _UI["theme"] = theme if theme in PALETTES else "dark"
    if scale is not None:
        _UI["scale"] = float(scale)


def current_theme() -> str:
    return _UI["theme"]


def colour(name: str) -> Tuple[int, int, int]:
    """The current theme's colour "MUTED", "GOOD", "BAD" or "CANCELLED"."""
    return PALETTES[_UI["theme"]][name]


def themed(rgb) -> Tuple[int, int, int]:
    """A colour of any theme's palette as the current theme's twin (other colours as they are)."""
    rgb = tuple(rgb)
    for palette in PALETTES.values():
        for name, value in palette.items():
            if value == rgb:
                return colour(name)
    return rgb


def px(pixels: float) -> int:
    """A size in pixels at the current UI scale (for widgets made after start-up: job rows, the picker)."""
    return int(round(pixels * _UI["scale"]))


def _rgb(value) -> Optional[Tuple[int, int, int]]:
    """A DearPyGui colour (floats 0..1, r < 0: the theme's own) as 0..255 integers, or None."""
    if not value or len(value) < 3 or value[0] < 0:
        return None
    return tuple(int(round(255 * c)) for c in value[:3])


def recolour_texts(theme: str) -> int:
    """Give every text coloured with another theme's palette colour this theme's twin; returns how
    many changed. Texts of other colours (and the theme's default colour) are left alone."""
    target = PALETTES.get(theme, PALETTES["dark"])
    twins = {colour_: target[name] for palette in PALETTES.values() for name, colour_ in palette.items()}
    changed = 0
    for item in dpg.get_all_items():
        if dpg.get_item_type(item) != "mvAppItemType::mvText":
            continue
        rgb = _rgb(dpg.get_item_configuration(item).get("color"))
        if rgb in twins and twins[rgb] != rgb:
            dpg.configure_item(item, color=twins[rgb])
            changed += 1
    return changed


TIP_WRAP = 360                     # pixels: a tooltip reads as a short paragraph, not one long line
TIP_DELAY_S = 0.3                  # a pointer passing over a control does not flash its tooltip


def tip(tag, text: str) -> None:
    """A tooltip on the control `tag`: what it does, shown while the pointer rests on it."""
    with dpg.tooltip(tag, tag=f"{tag}_help_tip" if isinstance(tag, str) else 0, delay=TIP_DELAY_S):
        dpg.add_text(text, wrap=TIP_WRAP)


# What counts as a control: everything a person clicks, types into or drags.
CONTROL_TYPES = frozenset(f"mvAppItemType::{name}" for name in (
    "mvButton", "mvImageButton", "mvCheckbox", "mvCombo", "mvRadioButton", "mvListbox", "mvInputText",
    "mvInputInt", "mvInputFloat", "mvInputDouble", "mvInputIntMulti", "mvInputFloatMulti", "mvInputDoubleMulti",
    "mvSliderInt", "mvSliderFloat", "mvSliderDouble", "mvSliderIntMulti", "mvSliderFloatMulti",
    "mvSliderDoubleMulti", "mvDragInt", "mvDragFloat", "mvDragDouble", "mvDragIntMulti", "mvDragFloatMulti",
    "mvDragDoubleMulti", "mvColorEdit", "mvKnobFloat"))
_TOOLTIP = "mvAppItemType::mvTooltip"


def controls_without_tooltip() -> List[str]:
    """Every control of the app (CONTROL_TYPES, shown or hidden) that has no tooltip, by alias, else
    label, else id. DearPyGui puts an item's tooltip right after it among its parent's children,
    so each control is checked against the items that follow it up to the next non-tooltip."""
    missing: List[str] = []
    for parent in dpg.get_all_items():
        for slot in (1,):
            children = dpg.get_item_children(parent, slot) or []
            for i, item in enumerate(children):
                if dpg.get_item_type(item) not in CONTROL_TYPES:
                    continue
                if i + 1 < len(children) and dpg.get_item_type(children[i + 1]) == _TOOLTIP:
                    continue
                missing.append(_name_of(item))
    return missing


def _name_of(item) -> str:
    alias = dpg.get_item_alias(item)
    if alias:
        return alias
    label = dpg.get_item_label(item)
    kind = dpg.get_item_type(item).rpartition("::")[2]
    parent = dpg.get_item_parent(item)
    where = f" in {dpg.get_item_alias(parent) or parent}" if parent else ""
    return f"{label!r} ({kind}{where})" if label else f"#{item} ({kind}{where})"


