"""The image area: shows the newest frame in a raw texture and turns mouse and keys over it into
camera moves (`ViewerActions.move_camera`; the maths is OrbitController's).

Mouse input is polled once per GUI frame rather than taken from global drag handlers, so that only
drags that *start* on the image move the camera (a slider dragged past the image does not), and the
wheel and keys only act while the pointer is over the image (keys also while the view window has
the focus), and keys never while a text field anywhere in the window is being typed into
(`text_entry_active`), so typing a seed with the pointer resting on the image never moves the camera.

Errors shown in red above the image have a source (ERROR_SOURCES): a newer good result of the same
source clears its message (a good frame clears a render error, a good camera input a camera error).
Their line is reserved whether or not there is an error, and holds one line (the full text is in a
tooltip), so the image never moves when a message comes or goes.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

import dearpygui.dearpygui as dpg
import numpy as np

from trigan.viewer.panels.interface import ViewerActions, ViewerState

WINDOW = "view_window"
IMAGE = "view_image"
OVERLAY = "view_overlay"
ERROR = "view_error"
TEXTURES = "view_textures"

# ImGui key codes. DearPyGui 2 names the arrow keys but not '=' (ImGuiKey_Equal, where '+' lives).
KEY_EQUAL = 602
_KEYS = (
    (dpg.mvKey_Left, "left"), (dpg.mvKey_Right, "right"), (dpg.mvKey_Up, "up"), (dpg.mvKey_Down, "down"),
    (KEY_EQUAL, "plus"), (dpg.mvKey_Add, "plus"), (dpg.mvKey_Minus, "minus"), (dpg.mvKey_Subtract, "minus"),
    (dpg.mvKey_R, "r"),
)
_BUTTONS = ((dpg.mvMouseButton_Left, "left"), (dpg.mvMouseButton_Right, "right"),
            (dpg.mvMouseButton_Middle, "middle"))
_ERROR_COLOUR = (255, 110, 100)
ERROR_TIP = "view_error_tooltip"
# Where a message in the error line comes from. A newer good result of a source clears its message:
# "values" control values refused (a good value clears it), "request" the request they make with the
# camera, "camera" a camera move, "camera_draw" a camera drawn from the model, "render" a frame,
# "model" a model load, "general" anything else.
ERROR_SOURCES = ("values", "request", "camera", "camera_draw", "render", "model", "general")
# DearPyGui item types a person types into: input fields, and drags and sliders (ctrl+click or
# double-click turns them into a text field).
_TEXT_ENTRY_PREFIXES = ("mvInput", "mvDrag", "mvSlider")


def text_entry_active() -> bool:
    """True while a text field (of any panel) takes the keyboard. DearPyGui reports the focused
    item; ImGui keeps an input active for as long as it is being edited. The focused item may be
    the group around the field (a group is focused and active when one of its items is), so active
    containers are searched down to the active item."""
    item = dpg.get_focused_item()
    return bool(item) and dpg.does_item_exist(item) and _active_text_entry(item, depth=0)


def _active_text_entry(item, depth: int) -> bool:
    if not dpg.is_item_active(item):
        return False
    if dpg.get_item_type(item).rpartition("::")[2].startswith(_TEXT_ENTRY_PREFIXES):
        return True
    if depth >= 8:                                     # groups in groups: a few levels at most
        return False
    return any(_active_text_entry(child, depth + 1) for child in dpg.get_item_children(item, slot=1) or ())


class ErrorMessages:
    """The view's messages by source, newest last; the line shows the newest one still standing."""

    def __init__(self):
        self._by_source: Dict[str, str] = {}

    def set(self, text: Optional[str], source: Optional[str] = None) -> None:
        """A message for `source`, or None to clear it. Without a source: a message counts as
        "general", and clearing clears every source (a new model makes all old messages moot)."""
        if source is not None and source not in ERROR_SOURCES:
            raise ValueError(f"error source {source!r}: expected one of {', '.join(ERROR_SOURCES)}")
        if text is None or text == "":
            if source is None:
                self._by_source.clear()
            else:
                self._by_source.pop(source, None)
            return
        source = source or "general"
        self._by_source.pop(source, None)        # re-inserted: now the newest
        self._by_source[source] = str(text)

    @property
    def shown(self) -> str:
        return next(reversed(self._by_source.values()), "") if self._by_source else ""

    def all(self) -> Dict[str, str]:
        return dict(self._by_source)


_LONG_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?(?:/[^/\s:]+)+/(?=[^/\s:]+)")


def fit_line(text: str, width: float, measure) -> str:
    """`text` shortened to `width` pixels (measure(text) -> pixels). First the folders of paths go
    (".../broken.ckpt: not a checkpoint"); if that is not enough, the middle is cut out: an error
    names what failed at its start and why at its end. Text that fits is returned as it is."""
    if not text or measure(text) <= width:
        return text
    text = _LONG_PATH.sub(".../", text)
    if measure(text) <= width:
        return text

    def shortened(keep: int) -> str:
        head = keep // 3
        return text[:head] + "..." + text[len(text) - (keep - head):]
    lo, hi = 0, len(text) - 1
    while lo < hi:                               # the most characters kept that still fit
        mid = (lo + hi + 1) // 2
        if measure(shortened(mid)) <= width:
            lo = mid
        else:
            hi = mid - 1
    return shortened(lo)


MAX_TEXTURE = 512


def shrink_for_display(image: np.ndarray, limit: int) -> np.ndarray:
    """Halve (2x2 box average) while the image is larger than `limit` and its sides are even."""
    while max(image.shape[:2]) > limit and image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0:
        h, w = image.shape[:2]
        image = image.reshape(h // 2, 2, w // 2, 2, image.shape[2]).mean(axis=(1, 3), dtype=np.float32)
    return image


class ImageView:
    """The "View" window: the texture, an info line and an error line; mouse/keys -> camera moves."""

    def __init__(self, state: ViewerState, actions: ViewerActions):
        self.state, self.actions = state, actions
        self._texture: Optional[int] = None
        self._array: Optional[np.ndarray] = None      # the numpy buffer the raw texture reads from
        self._retired = []                            # textures replaced this frame, deleted next frame
        self._drag: Optional[Tuple[int, str, Tuple[float, float]]] = None   # (dpg button, name, last pos)
        self.display_size = (1, 1)                   # the image's size on screen, pixels
        self.wheel_steps_seen = 0
        self._was_down = {}
        self.errors = ErrorMessages()
        self._error_fitted = None                    # (text, width) the error line was last fitted to

    # -- building ------------------------------------------------------------------------------------
    def build(self, pos, size, window_id=0) -> None:
        dpg.add_texture_registry(tag=TEXTURES)
        self._new_texture(np.ones((64, 64, 4), np.float32) * np.array([0.12, 0.12, 0.12, 1.0], np.float32))
        with dpg.window(label="View", tag=window_id, pos=pos, width=size[0], height=size[1], no_close=True,
                        no_scrollbar=True, no_scroll_with_mouse=True, no_collapse=True):
            dpg.add_text("", tag=OVERLAY)
            # Always shown (empty when there is no error) and never wrapped: its line is reserved.
            dpg.add_text("", tag=ERROR, color=_ERROR_COLOUR)
            with dpg.tooltip(ERROR, tag=ERROR_TIP, show=False):
                dpg.add_text("", tag=f"{ERROR_TIP}_text", wrap=600)
            dpg.add_image(self._texture, tag=IMAGE, width=64, height=64)
        with dpg.handler_registry():
            dpg.add_mouse_wheel_handler(callback=self._on_wheel)

    def _new_texture(self, image: np.ndarray) -> None:
        """A raw texture reads straight from a numpy float32 RGBA buffer, so updates are a copy."""
        h, w = image.shape[:2]
        self._array = np.ascontiguousarray(image, dtype=np.float32).copy()
        old = self._texture
        self._texture = dpg.add_raw_texture(w, h, self._array, format=dpg.mvFormat_Float_rgba, parent=TEXTURES)
        if old is not None:
            dpg.configure_item(IMAGE, texture_tag=self._texture)
            self._retired.append(old)

    def retire_texture(self, texture) -> None:
        """Delete a texture at the next layout(), after no widget shows it any more."""
        if texture is not None:
            self._retired.append(texture)

    # -- per frame -----------------------------------------------------------------------------------
    def show_image(self, image: np.ndarray) -> None:
        # DearPyGui uploads a raw texture on every GUI frame; a 1024^2 float texture costs tens of ms
        # per frame in a software GL, and the view shows it at about 600 px anyway, so large frames
        # are box-filtered down to at most MAX_TEXTURE (once per frame received, not per GUI frame).
        image = shrink_for_display(image, max(MAX_TEXTURE, max(self.display_size)))
        if self._array is not None and self._array.shape == image.shape:
            np.copyto(self._array, image)
        else:
            self._new_texture(image)

    def set_info(self, text: str) -> None:
        dpg.set_value(OVERLAY, text)

    def set_error(self, text: Optional[str], source: Optional[str] = None) -> None:
        """Show `text` for `source` (see ERROR_SOURCES), or clear that source's message with None."""
        self.errors.set(text, source)               # the line is refitted at the next layout()

    def error_text(self) -> str:
        """The whole message the error line stands for (the line itself may be shortened)."""
        return self.errors.shown

    def _fit_error_line(self, width: float) -> None:
        text = self.errors.shown
        if self._error_fitted == (text, width):
            return
        self._error_fitted = (text, width)

        def measure(t):
            size = dpg.get_text_size(t)
            return size[0] if size else 7.0 * len(t)     # before the font is ready: a rough width
        line = fit_line(text, width, measure)
        dpg.set_value(ERROR, line)
        dpg.set_value(f"{ERROR_TIP}_text", text)
        dpg.configure_item(ERROR_TIP, show=line != text)

    def layout(self) -> None:
        """Fit the image, square, into the window below the text lines."""
        for tex in self._retired:
            if dpg.does_item_exist(tex):
                dpg.delete_item(tex)
        self._retired = []
        win_w, win_h = dpg.get_item_rect_size(WINDOW)
        if win_w <= 0 or win_h <= 0:
            return
        self._fit_error_line(win_w - 24)
        # Below the info line and the (reserved, one-line) error line; rects are from the last frame.
        top = int(dpg.get_item_rect_max(ERROR)[1] - dpg.get_item_pos(WINDOW)[1]) + 6
        top = max(top, 60)
        side = int(max(32, min(win_w - 16, win_h - top - 8)))
        h_img, w_img = self._array.shape[:2]
        w_disp, h_disp = (side, int(side * h_img / w_img)) if w_img >= h_img else (int(side * w_img / h_img), side)
        if (w_disp, h_disp) != self.display_size:
            dpg.configure_item(IMAGE, width=w_disp, height=h_disp)
            self.display_size = (w_disp, h_disp)
        dpg.set_item_pos(IMAGE, [max(8, (win_w - w_disp) // 2), top])

    def image_rect(self):
        """(x, y, w, h) of the image in viewport pixels (for tests and scripts)."""
        x, y = dpg.get_item_rect_min(IMAGE)
        w, h = dpg.get_item_rect_size(IMAGE)
        return [int(x), int(y), int(w), int(h)]

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    def poll_input(self) -> None:
        if self.state.pose is None:            # no model yet: nothing to move
            self._drag = None
            return
        move = self.actions.move_camera
        hovered = dpg.is_item_hovered(IMAGE)
        down = {button: dpg.is_mouse_button_down(button) for button, _ in _BUTTONS}
        if self._drag is None and hovered:
            for button, name in _BUTTONS:
                if down[button] and not self._was_down.get(button):     # pressed here, not dragged in
                    self._drag = (button, name, tuple(dpg.get_mouse_pos(local=False)))
                    break
        self._was_down = down
        if self._drag is not None:
            button, name, last = self._drag
            pos = tuple(dpg.get_mouse_pos(local=False))
            dx, dy = pos[0] - last[0], pos[1] - last[1]
            if dx or dy:
                move(lambda orbit: orbit.drag(dx, dy, name, self.display_size))
            self._drag = (button, name, pos) if dpg.is_mouse_button_down(button) else None
        if hovered and dpg.is_mouse_button_double_clicked(dpg.mvMouseButton_Left):
            move(lambda orbit: orbit.reset())
        if (hovered or dpg.is_item_focused(WINDOW)) and not text_entry_active():
            for key, name in _KEYS:
                if dpg.is_key_pressed(key):
                    move(lambda orbit, name=name: orbit.key(name))

    def _on_wheel(self, sender, steps) -> None:
        if self.state.pose is not None and dpg.is_item_hovered(IMAGE):
            self.wheel_steps_seen += 1
            self.actions.move_camera(lambda orbit: orbit.wheel(float(steps)))
