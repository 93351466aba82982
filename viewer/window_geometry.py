"""Where the viewer's window goes and how its panels share it.

Pure arithmetic, so it is tested without a display:

* `fit_window` picks the window's size and position from the screen's work area (the part not
  taken by panels and task bars) and the saved geometry, which is used only when it still fits:
  a window saved on a 1920x1200 monitor must not open half off a 1280x800 laptop screen;
* `tile_panels` splits the window into the Controls, View and Tasks columns above the status bar;
  narrow windows shrink the side columns (down to a minimum) before the View, so the image keeps a
  usable size. The side panels scroll when their content is taller than the window.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

DEFAULT_SIZE = (1400, 900)        # what the viewer asks for on a screen large enough
MIN_SIZE = (800, 560)             # below this the panels cannot be laid out usefully
DECORATION_ALLOWANCE = (16, 48)   # a window manager's border and title bar around the client area
CONTROLS_WIDTH, TASKS_WIDTH, STATUS_HEIGHT = 350, 440, 34
MIN_CONTROLS_WIDTH, MIN_TASKS_WIDTH, MIN_VIEW_WIDTH = 300, 330, 320


class Rect(NamedTuple):
    x: int
    y: int
    width: int
    height: int

    def contains(self, other: "Rect") -> bool:
        return (other.x >= self.x and other.y >= self.y and other.x + other.width <= self.x + self.width
                and other.y + other.height <= self.y + self.height)


def fit_window(work_area: Optional[Rect], saved_size=None, saved_pos=None) -> Rect:
    """The window's client rectangle. work_area None (unknown screen): the saved geometry, else the
    default at (40, 40). Otherwise the saved geometry if it lies inside the work area (allowing for
    the window manager's frame), else the saved (or default) size shrunk to the work area, centred."""
    want_w, want_h = (int(v) for v in (saved_size or DEFAULT_SIZE))
    if work_area is None:
        x, y = saved_pos if saved_pos is not None and None not in saved_pos else (40, 40)
        return Rect(int(x), int(y), max(MIN_SIZE[0], want_w), max(MIN_SIZE[1], want_h))
    room_w = work_area.width - DECORATION_ALLOWANCE[0]
    room_h = work_area.height - DECORATION_ALLOWANCE[1]
    if saved_size is not None and saved_pos is not None and None not in saved_pos:
        saved = Rect(int(saved_pos[0]), int(saved_pos[1]), want_w, want_h)
        framed = Rect(saved.x, saved.y, want_w + DECORATION_ALLOWANCE[0], want_h + DECORATION_ALLOWANCE[1])
        if work_area.contains(framed):
            return saved
    # Never smaller than MIN_SIZE, even on a tiny screen: the panels scroll there.
    w = max(MIN_SIZE[0], min(want_w, room_w))
    h = max(MIN_SIZE[1], min(want_h, room_h))
    # Centre the window with its frame (a window manager places the frame at the position asked).
    x = work_area.x + max(0, (work_area.width - w - DECORATION_ALLOWANCE[0]) // 2)
    y = work_area.y + max(0, (work_area.height - h - DECORATION_ALLOWANCE[1]) // 2)
    return Rect(x, y, w, h)


def tile_panels(width: int, height: int, scale: float = 1.0, status_height: int = STATUS_HEIGHT) -> Dict[str, Rect]:
    """Rectangles (inside the window) of the four panels for a client area of width x height. At a
    UI scale above 1 (larger text) the side columns widen with it, but the View keeps at least
    MIN_VIEW_WIDTH while the side columns can still give way (down to their unscaled minimums)."""
    scale = max(0.5, float(scale))
    body = max(100, height - status_height)
    controls, tasks = round(CONTROLS_WIDTH * scale), round(TASKS_WIDTH * scale)
    min_c = min(controls, max(MIN_CONTROLS_WIDTH, round(MIN_CONTROLS_WIDTH * scale)))
    min_t = min(tasks, max(MIN_TASKS_WIDTH, round(MIN_TASKS_WIDTH * scale)))
    for floor_c, floor_t in ((min_c, min_t), (min(controls, MIN_CONTROLS_WIDTH), min(tasks, MIN_TASKS_WIDTH))):
        spare = width - controls - tasks - MIN_VIEW_WIDTH
        if spare >= 0:
            break
        # Take what the View lacks from the side columns, in proportion to what each can give.
        give_c, give_t = controls - floor_c, tasks - floor_t
        if give_c + give_t <= 0:
            continue
        lack = min(-spare, give_c + give_t)
        cut_c = round(lack * give_c / (give_c + give_t))
        controls, tasks = controls - cut_c, tasks - (lack - cut_c)
    view = max(100, width - controls - tasks)
    return {
        "controls_window": Rect(0, 0, controls, body),
        "view_window": Rect(controls, 0, view, body),
        "tasks_window": Rect(controls + view, 0, max(100, width - controls - view), body),
        "status_window": Rect(0, body, width, height - body),
    }


__all__ = ["Rect", "fit_window", "tile_panels", "DEFAULT_SIZE", "MIN_SIZE", "STATUS_HEIGHT"]
