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

Depth and opacity frames are coloured here from their raw geometry (Frame.depth / Frame.opacity)
through the display values (viewer/depth_display.py: colormap, range, invert), with a legend under
the image, so a new colormap re-colours the frame on screen without a render. Under the image a
readout line says the depth and 3-D point under the pointer. A compare grid's cell labels
(frame.stats["cells"]) are drawn into the texture (white on a dark backdrop), not into the frame,
so screenshots and exports stay without them.
"""

from __future__ import annotations

import functools
import re
from typing import Dict, List, Optional, Tuple

import dearpygui.dearpygui as dpg
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trigan.viewer.depth_display import DisplayValues, Legend, Readout, coloured, readout_at, shows_geometry
from trigan.viewer.panels.interface import ViewerActions, ViewerState

WINDOW = "view_window"
IMAGE = "view_image"
OVERLAY = "view_overlay"
ERROR = "view_error"
TEXTURES = "view_textures"
# Under the image: the colour bar of a depth / opacity picture with its range, and the readout of
# what lies under the cursor (depth and 3-D point).
LEGEND_BAR, LEGEND_LOW, LEGEND_HIGH, LEGEND_TITLE = ("display_legend_bar", "display_legend_min",
                                                      "display_legend_max", "display_legend_title")
READOUT = "display_readout"
LEGEND_BAR_HEIGHT = 10
LEGEND_WIDTH = 256               # colours in the bar's texture
LINE_HEIGHT = 18                 # a text line of the built-in font, with its spacing
LABEL_SCREEN_PX = 13             # compare cell labels: their text this tall on screen

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
    # get_item_state, not is_item_active: a tooltip in a group is one of its children and has no
    # "active" state (is_item_active raises KeyError for it)
    if not dpg.get_item_state(item).get("active", False):
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


@functools.lru_cache(maxsize=8)
def _label_font(size: int):
    """Pillow's built-in scalable font at `size` pixels (read once per size)."""
    return ImageFont.load_default(size=size)


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
        self.display = DisplayValues()               # how depth / opacity frames are coloured
        self._frame = None                           # the frame on screen (re-coloured when the display changes)
        self.legend: Optional[Legend] = None         # the colour bar's meaning while one is shown
        self.readout = Readout("")
        self._readout_key = None                     # (mouse position, frame) the readout was made for
        self.labels: List[str] = []                  # compare cell labels drawn over the image
        self._legend_array = np.zeros((1, LEGEND_WIDTH, 4), np.float32)

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
            legend_texture = dpg.add_raw_texture(LEGEND_WIDTH, 1, self._legend_array, format=dpg.mvFormat_Float_rgba,
                                                 parent=TEXTURES)
            dpg.add_image(legend_texture, tag=LEGEND_BAR, width=64, height=LEGEND_BAR_HEIGHT, show=False)
            for tag in (LEGEND_LOW, LEGEND_TITLE, LEGEND_HIGH):
                dpg.add_text("", tag=tag, show=False)
            dpg.add_text("", tag=READOUT)
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
        self._upload(shrink_for_display(image, max(MAX_TEXTURE, max(self.display_size))))

    def _upload(self, image: np.ndarray) -> None:
        if self._array is not None and self._array.shape == image.shape:
            np.copyto(self._array, image)
        else:
            self._new_texture(image)

    def show_frame(self, frame) -> None:
        """A frame from the worker (viewer.render_request.Frame) on screen: depth and opacity through
        the display values (with their legend), anything else as rendered; compare cells labelled."""
        self._frame = frame
        self._readout_key = None                     # the pixel under the cursor may show something else now
        self._refresh()

    def set_display(self, **values) -> None:
        """New display values (DisplayValues names; a bad value raises a one-line TriganError and changes
        nothing). The frame on screen is re-coloured at once: no new render."""
        if (values.get("normalize") is False and self.display.normalize and "range_min" not in values
                and self.legend is not None and self.legend.quantity == "depth"):
            # normalise turned off: keep the range on screen (then edit it) rather than jump elsewhere
            values = dict(values, range_min=self.legend.low, range_max=self.legend.high)
        self.display = self.display.with_values(**values)
        self._refresh()

    def _refresh(self) -> None:
        frame = self._frame
        if frame is None:
            return
        legend = None
        image = frame.image
        if shows_geometry(frame) and not frame.error:
            image, legend = coloured(frame, self.display)
        self._show_legend(legend)
        cells = frame.stats.get("cells") if isinstance(frame.stats, dict) else None
        image = shrink_for_display(image, max(MAX_TEXTURE, max(self.display_size)))
        self.labels = []
        if cells:
            image = self._labelled(image, cells, frame.image.shape[1])
        self._upload(image)

    def _labelled(self, image: np.ndarray, cells, frame_width: int) -> np.ndarray:
        """`image` (the texture, possibly shrunk from frame_width) with each cell's label at its top left,
        white on a dark backdrop, sized to read LABEL_SCREEN_PX tall on screen and cut to the cell's width."""
        h, w = image.shape[:2]
        scale = w / max(frame_width, 1)
        shown_w = self.display_size[0] if self.display_size[0] > 1 else w     # before the first layout: 1:1
        font_px = int(min(64, max(8, round(LABEL_SCREEN_PX * w / shown_w))))
        font = _label_font(font_px)
        overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        pad = max(1, font_px // 4)
        for cell in cells:
            try:
                label = str(cell["label"])
                x, y, cw, _ = (float(v) * scale for v in cell["box"])
            except (KeyError, TypeError, ValueError):
                continue
            self.labels.append(label)
            text = fit_line(label, cw - 2 * pad, lambda t: draw.textlength(t, font=font))
            left, top, right, bottom = draw.textbbox((x + pad, y + pad), text, font=font)
            draw.rectangle((x, y, right + pad, bottom + pad), fill=(0, 0, 0, 200))
            draw.text((x + pad, y + pad), text, font=font, fill=(255, 255, 255, 255))
        layer = np.asarray(overlay, dtype=np.float32) / 255.0
        alpha = layer[..., 3:]
        out = np.array(image, dtype=np.float32, copy=True)
        out[..., :3] = out[..., :3] * (1 - alpha) + layer[..., :3] * alpha
        return out

    def _show_legend(self, legend: Optional[Legend]) -> None:
        self.legend = legend
        for tag in (LEGEND_BAR, LEGEND_LOW, LEGEND_TITLE, LEGEND_HIGH):
            dpg.configure_item(tag, show=legend is not None)
        if legend is None:
            return
        np.copyto(self._legend_array, legend.bar(LEGEND_WIDTH))
        digits = ".3f" if legend.quantity == "depth" else ".2f"
        dpg.set_value(LEGEND_LOW, format(legend.low, digits))
        dpg.set_value(LEGEND_HIGH, format(legend.high, digits))
        dpg.set_value(LEGEND_TITLE, legend.title)

    def texture_pixels(self) -> np.ndarray:
        """A copy of the RGBA pixels the image shows (after colouring, shrinking and labelling)."""
        return self._array.copy()

    def panel_state(self) -> dict:
        """For scripts and GUI tests: the display values, the legend shown (None without one), the
        readout under the cursor and the compare labels drawn."""
        return {"display": self.display.as_dict(), "legend": None if self.legend is None else self.legend.as_dict(),
                "readout": self.readout.as_dict(), "labels": list(self.labels)}

    def update_readout(self) -> None:
        """The readout line: depth and 3-D point of the pixel under the cursor (any mode; grid-aware)."""
        frame = self._frame
        pos = tuple(dpg.get_mouse_pos(local=False))
        key = (pos, id(frame))
        if key == self._readout_key:
            return
        self._readout_key = key
        readout = Readout("")
        if frame is not None and dpg.is_item_hovered(IMAGE):
            x, y, w, h = self.image_rect()
            rows, cols = frame.image.shape[:2]
            if w > 0 and h > 0:
                col = min(cols - 1, max(0, int((pos[0] - x) * cols / w)))
                row = min(rows - 1, max(0, int((pos[1] - y) * rows / h)))
                readout = readout_at(frame, row, col)
        self.readout = readout
        dpg.set_value(READOUT, readout.text)

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
        below = LINE_HEIGHT + (LEGEND_BAR_HEIGHT + 4 + LINE_HEIGHT if self.legend is not None else 0)
        side = int(max(32, min(win_w - 16, win_h - top - 8 - below)))
        h_img, w_img = self._array.shape[:2]
        w_disp, h_disp = (side, int(side * h_img / w_img)) if w_img >= h_img else (int(side * w_img / h_img), side)
        if (w_disp, h_disp) != self.display_size:
            dpg.configure_item(IMAGE, width=w_disp, height=h_disp)
            self.display_size = (w_disp, h_disp)
            if self.labels:
                self._refresh()          # the labels' letters are sized for the image's size on screen
        left = max(8, (win_w - w_disp) // 2)
        dpg.set_item_pos(IMAGE, [left, top])
        y = top + h_disp + 4
        if self.legend is not None:
            dpg.configure_item(LEGEND_BAR, width=w_disp)
            dpg.set_item_pos(LEGEND_BAR, [left, y])
            y += LEGEND_BAR_HEIGHT + 2
            self._place_legend_labels(left, y, w_disp)
            y += LINE_HEIGHT
        dpg.set_item_pos(READOUT, [left, y])

    def _place_legend_labels(self, left: int, y: int, width: int) -> None:
        """min under the bar's left end, max under its right end, the title between them."""
        def measure(text):
            size = dpg.get_text_size(text)
            return size[0] if size else 7.0 * len(text)
        low_w, high_w = measure(dpg.get_value(LEGEND_LOW)), measure(dpg.get_value(LEGEND_HIGH))
        # a narrow view shortens the title rather than write it over the numbers
        title = fit_line(self.legend.title, max(0.0, width - low_w - high_w - 24), measure)
        if dpg.get_value(LEGEND_TITLE) != title:
            dpg.set_value(LEGEND_TITLE, title)
        title_w = measure(title)
        dpg.set_item_pos(LEGEND_LOW, [left, y])
        dpg.set_item_pos(LEGEND_HIGH, [int(left + width - high_w), y])
        dpg.set_item_pos(LEGEND_TITLE, [int(left + (width - title_w) / 2), y])

    def image_rect(self):
        """(x, y, w, h) of the image in viewport pixels (for tests and scripts)."""
        x, y = dpg.get_item_rect_min(IMAGE)
        w, h = dpg.get_item_rect_size(IMAGE)
        return [int(x), int(y), int(w), int(h)]

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    def poll_input(self) -> None:
        self.update_readout()
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
